// Fuzzes the HTTP/1.1 server's request path: the bytes a client sends go through a real
// Connection (http-parser callbacks, dispatch, response writing, keep-alive and lingering
// close) on a local event loop, over a socketpair, with a small Service that answers in each
// of the ways the registry's handlers do (at once, after the body, later from the loop,
// mid-body, with a streamed body).
//
// Input: the first byte is how many bytes the client writes per loop turn (0: all at once),
// so requests also arrive split at every possible point; the rest is what the client sends,
// after which it half-closes. The target then checks that the connection closes, that every
// request is finished exactly once, that each request the Service saw obeys the parser's
// guarantees, and that the bytes the client got back are a sequence of well-formed responses,
// each answer where it belongs and nothing after a `Connection: close`.
#include <event2/buffer.h>
#include <event2/event.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/http.h"
#include "proxy/http_connection.h"
#include "proxy/loop.h"
#include "tests/fuzz/fuzz_check.h"

namespace regcache::proxy::http {
namespace {

// =============================================================================================
// The Service, and what it promised to send

// One response the Service handed to a live exchange: it must reach the client.
struct Sent {
  bool head = false;
  int status = 0;
  std::string body;
};

struct Run {
  std::vector<Sent> sent;         // indexed by the X-Fuzz-Request value
  size_t requests = 0;            // onRequest calls
  std::set<uint64_t> dispatched;  // Request::id of each request onRequest saw
  std::set<uint64_t> finished;    // Request::id of each request onFinished named
};
Run g_run;

bool hasByte(std::string_view s, std::string_view bytes) {
  return s.find_first_of(bytes) != std::string_view::npos;
}

// What http-parser and the connection guarantee about every dispatched request.
void checkRequest(const Request& request) {
  FUZZ_CHECK(!request.method.empty());
  FUZZ_CHECK(!hasByte(request.target, std::string_view("\r\n\0 ", 4)));
  FUZZ_CHECK(request.path.find('?') == std::string::npos);
  FUZZ_CHECK(request.target.ends_with(request.query));
  for (const Header& header : request.headers.all()) {
    FUZZ_CHECK(!header.name.empty() && !hasByte(header.name, std::string_view(":\r\n\0", 4)));
    FUZZ_CHECK(!hasByte(header.value, "\r\n"));
    FUZZ_CHECK(!header.value.ends_with(' ') && !header.value.ends_with('\t'));
  }
  FUZZ_CHECK(!(request.chunked && request.content_length.has_value()));
}

// Responds, and records what the client must then receive (`body`, when a source makes it).
void respondTracked(Exchange& exchange, size_t id, Response response,
                    std::optional<std::string> body = std::nullopt) {
  if (exchange.alive() && !exchange.responded()) {
    g_run.sent.resize(std::max(g_run.sent.size(), id + 1));
    g_run.sent[id] =
        Sent{exchange.request().isHead(), response.status, body.value_or(response.body)};
  }
  response.headers.add("X-Fuzz-Request", std::to_string(id));
  exchange.respond(std::move(response));
}

// Streams a body in small pieces of unknown total length (chunked on the wire).
class PiecewiseSource final : public BodySource {
 public:
  explicit PiecewiseSource(std::string body) : body_(std::move(body)) {}
  Pull pull(evbuffer* out, size_t max_bytes) override;

 private:
  std::string body_;
  size_t offset_ = 0;
};

class FuzzHandler final : public Handler {
 public:
  FuzzHandler(std::shared_ptr<Exchange> exchange, size_t id)
      : exchange_(std::move(exchange)), id_(id) {}

  bool onBody(std::string_view data) override {
    body_bytes_ += data.size();
    const Request& request = exchange_->request();
    FUZZ_CHECK(!request.content_length || body_bytes_ <= *request.content_length);
    if (request.path.starts_with("/stop")) {
      respondTracked(*exchange_, id_, Response{.status = 413, .body = "enough"});
      return false;
    }
    return true;
  }

  void onEnd() override;

 private:
  std::shared_ptr<Exchange> exchange_;
  size_t id_;
  uint64_t body_bytes_ = 0;
};

void FuzzHandler::onEnd() {
  const Request& request = exchange_->request();
  FUZZ_CHECK(request.chunked || body_bytes_ == request.content_length.value_or(0));
  std::string summary = request.method + " " + request.path + " " + std::to_string(body_bytes_);

  if (request.path.starts_with("/later")) {
    std::weak_ptr<Exchange> weak = exchange_;
    size_t id = id_;
    exchange_->loop().post([weak, id, summary] {
      if (std::shared_ptr<Exchange> exchange = weak.lock()) {
        respondTracked(*exchange, id, Response{.status = 202, .body = summary});
      }
    });
    return;
  }
  if (request.path.starts_with("/source")) {
    Response response{.status = 200};
    std::string body = summary + summary + summary;
    response.source = std::make_shared<PiecewiseSource>(body);
    respondTracked(*exchange_, id_, std::move(response), body);
    return;
  }
  int status = request.path.starts_with("/empty") ? 204 : 200;
  respondTracked(*exchange_, id_, Response{.status = status, .body = status == 204 ? "" : summary});
}

BodySource::Pull PiecewiseSource::pull(evbuffer* out, size_t max_bytes) {
  size_t n = std::min({max_bytes, body_.size() - offset_, size_t{7}});
  evbuffer_add(out, body_.data() + offset_, n);
  offset_ += n;
  return offset_ == body_.size() ? Pull::kDone : Pull::kMore;
}

class FuzzService final : public Service {
 public:
  std::unique_ptr<Handler> onRequest(std::shared_ptr<Exchange> exchange) override {
    const Request& request = exchange->request();
    checkRequest(request);
    size_t id = g_run.requests++;
    g_run.dispatched.insert(request.id);
    if (request.path.starts_with("/early")) {
      respondTracked(*exchange, id, Response{.status = 201, .body = "early"});
      return nullptr;
    }
    return std::make_unique<FuzzHandler>(std::move(exchange), id);
  }

  void onFinished(const Request* request, const Completion& completion) override {
    if (request != nullptr) {
      FUZZ_CHECK(g_run.finished.insert(request->id).second);  // at most once
    }
    FUZZ_CHECK(completion.status == 0 || (completion.status >= 100 && completion.status < 600));
  }
};

// =============================================================================================
// Checking what the client received

size_t parseNumber(std::string_view text, int base) {
  size_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  FUZZ_CHECK(error == std::errc() && end == text.data() + text.size() && !text.empty());
  return value;
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
  }
  return out;
}

struct Head {
  int status = 0;
  std::optional<size_t> content_length;
  bool chunked = false;
  bool close = false;
  std::optional<size_t> fuzz_request;
};

// Reads a status line and headers at `pos`; every byte of the head must be there.
Head readHead(std::string_view out, size_t& pos) {
  size_t end = out.find("\r\n\r\n", pos);
  FUZZ_CHECK(end != std::string_view::npos);
  std::string_view head = out.substr(pos, end + 2 - pos);
  pos = end + 4;

  size_t line_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, line_end);
  FUZZ_CHECK(status_line.starts_with("HTTP/1.1 ") && status_line.size() > 13);
  FUZZ_CHECK(status_line[12] == ' ');
  Head result;
  result.status = static_cast<int>(parseNumber(status_line.substr(9, 3), 10));
  FUZZ_CHECK(status_line.substr(13) == reasonPhrase(result.status));

  bool has_date = false;
  for (size_t at = line_end + 2; at < head.size();) {
    size_t next = head.find("\r\n", at);
    std::string_view line = head.substr(at, next - at);
    at = next + 2;
    size_t colon = line.find(": ");
    FUZZ_CHECK(colon != std::string_view::npos && colon > 0);
    std::string name = lowercase(line.substr(0, colon));
    std::string_view value = line.substr(colon + 2);
    if (name == "content-length") {
      FUZZ_CHECK(!result.content_length);
      result.content_length = parseNumber(value, 10);
    } else if (name == "transfer-encoding") {
      FUZZ_CHECK(value == "chunked");
      result.chunked = true;
    } else if (name == "connection") {
      result.close = value == "close";
    } else if (name == "x-fuzz-request") {
      result.fuzz_request = parseNumber(value, 10);
    } else if (name == "date") {
      has_date = true;
    }
  }
  FUZZ_CHECK(has_date || result.status == 100);
  FUZZ_CHECK(!(result.chunked && result.content_length));
  return result;
}

std::string readChunked(std::string_view out, size_t& pos) {
  std::string body;
  while (true) {
    size_t line_end = out.find("\r\n", pos);
    FUZZ_CHECK(line_end != std::string_view::npos);
    size_t size = parseNumber(out.substr(pos, line_end - pos), 16);
    pos = line_end + 2;
    if (size == 0) {
      FUZZ_CHECK(out.substr(pos, 2) == "\r\n");
      pos += 2;
      return body;
    }
    FUZZ_CHECK(out.size() - pos >= size + 2 && out.substr(pos + size, 2) == "\r\n");
    body.append(out.substr(pos, size));
    pos += size + 2;
  }
}

// The responses in `out`, in order: every answer the Service sent while its exchange was live
// appears once, in request order, with the body it was given.
void checkResponses(std::string_view out) {
  size_t pos = 0;
  size_t next_sent = 0;
  bool closed = false;
  while (pos < out.size()) {
    FUZZ_CHECK(!closed);  // nothing may follow a response that said Connection: close
    Head head = readHead(out, pos);
    if (head.status == 100) {
      FUZZ_CHECK(!head.content_length && !head.chunked && !head.fuzz_request);
      continue;
    }
    closed = head.close;
    if (!head.fuzz_request) {
      // The server's own answer: a request it could not parse or refused before the Service
      // saw it. A parse error closes the connection.
      FUZZ_CHECK(head.status == 400 || head.status == 414 || head.status == 431 ||
                 head.status == 429);
      FUZZ_CHECK(head.content_length && (head.close || head.status == 429));
      FUZZ_CHECK(out.size() - pos >= *head.content_length);
      pos += *head.content_length;
      continue;
    }

    size_t id = *head.fuzz_request;
    for (; next_sent < id; ++next_sent) {
      FUZZ_CHECK(next_sent >= g_run.sent.size() || g_run.sent[next_sent].status == 0);
    }
    FUZZ_CHECK(id < g_run.sent.size() && g_run.sent[id].status == head.status);
    const Sent& sent = g_run.sent[id];
    next_sent = id + 1;
    bool bodiless = sent.head || head.status == 204;
    if (head.status == 204) {
      FUZZ_CHECK(!head.content_length && !head.chunked);
    }
    if (bodiless) {
      FUZZ_CHECK(!head.content_length || *head.content_length == sent.body.size());
      continue;
    }
    std::string body;
    if (head.chunked) {
      body = readChunked(out, pos);
    } else {
      FUZZ_CHECK(head.content_length.has_value() || head.close);
      size_t length = head.content_length.value_or(out.size() - pos);
      FUZZ_CHECK(out.size() - pos >= length);
      body = std::string(out.substr(pos, length));
      pos += length;
    }
    FUZZ_CHECK(body == sent.body);
  }
  for (; next_sent < g_run.sent.size(); ++next_sent) {
    FUZZ_CHECK(g_run.sent[next_sent].status == 0);  // answered, but never sent
  }
}

// =============================================================================================
// Driving one connection

struct Harness {
  Loop loop;
  ServerOptions options;
  FuzzService service;
  std::atomic<size_t> open_connections{0};
  std::atomic<size_t> loop_connections{0};
  LoopContext context;

  Harness() {
    options.max_header_bytes = 4096;  // reachable by small inputs
    context.options = &options;
    context.service = &service;
    context.loop = &loop;
    context.open_connections = &open_connections;
    context.loop_connections = &loop_connections;
  }
};

// Turns of the loop without progress after which the connection counts as stuck: with the
// client half-closed and every handler answering from the loop, nothing is left to wait for.
constexpr int kMaxIdleTurns = 200;

// Appends what the server has written to `received`. True at end of stream (or a reset).
bool readAvailable(int client, std::string& received, bool& progress) {
  char buffer[16384];
  while (true) {
    ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
    if (n > 0) {
      received.append(buffer, static_cast<size_t>(n));
      progress = true;
    } else if (n == 0) {
      return true;
    } else {
      return errno != EAGAIN && errno != EINTR;
    }
  }
}

void runConnection(Harness& harness, std::string_view input, size_t step) {
  int fds[2];
  FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
  sockaddr_un peer{};
  peer.sun_family = AF_UNIX;
  ++harness.loop_connections;  // as the acceptor counts it
  Connection::open(harness.context, fds[0], reinterpret_cast<const sockaddr*>(&peer));
  int client = fds[1];

  std::string received;
  size_t written = 0;
  bool shut = false;
  int idle = 0;
  while (client >= 0 || harness.open_connections > 0) {
    bool progress = false;
    if (client >= 0 && written < input.size()) {
      size_t n = std::min(step, input.size() - written);
      ssize_t sent = ::send(client, input.data() + written, n, MSG_NOSIGNAL);
      if (sent > 0) {
        written += static_cast<size_t>(sent);
        progress = true;
      } else if (errno == EPIPE || errno == ECONNRESET) {
        written = input.size();  // the server has closed; the rest is never read
      }
    } else if (client >= 0 && !shut) {
      ::shutdown(client, SHUT_WR);
      shut = true;
      progress = true;
    }

    event_base_loop(harness.loop.base(), EVLOOP_NONBLOCK);

    if (client >= 0 && readAvailable(client, received, progress)) {
      ::close(client);  // the server is done: close fully, ending a lingering close at once
      client = -1;
      progress = true;
    }
    idle = progress ? 0 : idle + 1;
    FUZZ_CHECK(idle < kMaxIdleTurns);  // the connection is stuck
  }
  if (std::getenv("HTTP_FUZZ_DUMP") != nullptr) {  // to see what a replayed input got back
    std::fwrite(received.data(), 1, received.size(), stderr);
  }
  checkResponses(received);
}

}  // namespace
}  // namespace regcache::proxy::http

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace regcache::proxy::http;
  static Harness* harness = new Harness();  // lives for the process: the loop is reused
  if (size == 0) {
    return 0;
  }
  size_t step = data[0] == 0 ? size : data[0];
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

  g_run = Run();
  runConnection(*harness, input, step);
  // Every request the Service saw was finished (the server may also finish requests it
  // refused itself before the Service saw them).
  for (uint64_t id : g_run.dispatched) {
    FUZZ_CHECK(g_run.finished.count(id) == 1);
  }
  return 0;
}
