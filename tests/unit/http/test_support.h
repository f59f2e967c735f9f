// Test helpers for the HTTP server: a blocking raw-socket client with timeouts, and a Service
// made of a lambda.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "proxy/http.h"

namespace regcache::proxy::http::testing {

struct ParsedResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;

  bool has(const std::string& name) const { return headers.count(name) != 0; }
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// A blocking client on one connection. Every read gives up after the timeout.
class TestClient {
 public:
  explicit TestClient(uint16_t port, int timeout_ms = 5000) : timeout_ms_(timeout_ms) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~TestClient() { close(); }
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  bool connected() const { return connected_; }

  bool send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) {
          continue;
        }
        return false;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  void close() {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

  // Reads exactly one response (HEAD: headers only). nullopt on timeout, close or garbage.
  std::optional<ParsedResponse> readResponse(bool head = false) {
    size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) {
        return std::nullopt;
      }
    }
    ParsedResponse response;
    std::string head_text = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);
    if (head_text.size() < 12 || head_text.compare(0, 9, "HTTP/1.1 ") != 0) {
      return std::nullopt;
    }
    response.status = std::stoi(head_text.substr(9, 3));
    size_t pos = head_text.find("\r\n");
    while (pos != std::string::npos) {
      size_t next = head_text.find("\r\n", pos + 2);
      std::string line =
          head_text.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
      size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        for (char& ch : name) {
          ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        }
        size_t start = line.find_first_not_of(' ', colon + 1);
        response.headers[name] = start == std::string::npos ? "" : line.substr(start);
      }
      pos = next;
    }
    if (head || response.status < 200 || response.status == 204 || response.status == 304) {
      return response;
    }
    if (response.has("content-length")) {
      size_t length = std::stoull(response.header("content-length"));
      if (!readBytes(length, response.body)) {
        return std::nullopt;
      }
    } else if (response.header("transfer-encoding") == "chunked") {
      if (!readChunked(response.body)) {
        return std::nullopt;
      }
    } else {
      while (fill()) {
      }
      response.body = std::move(buffer_);
      buffer_.clear();
    }
    return response;
  }

  // Raw bytes, for checking exact wire output like "100 Continue".
  std::optional<std::string> readExactly(size_t n) {
    std::string out;
    if (!readBytes(n, out)) {
      return std::nullopt;
    }
    return out;
  }

  // True when the server closes the connection within `ms` (buffered data is discarded).
  bool waitClosed(int ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) > 0) {
        char scratch[65536];
        ssize_t n = ::recv(fd_, scratch, sizeof scratch, 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
          return true;
        }
      }
    }
    return false;
  }

  int fd() const { return fd_; }

 private:
  bool fill() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms_) <= 0) {
      return false;
    }
    char scratch[65536];
    ssize_t n = ::recv(fd_, scratch, sizeof scratch, 0);
    if (n <= 0) {
      return false;
    }
    buffer_.append(scratch, static_cast<size_t>(n));
    return true;
  }

  bool readBytes(size_t n, std::string& out) {
    while (buffer_.size() < n) {
      if (!fill()) {
        return false;
      }
    }
    out.append(buffer_, 0, n);
    buffer_.erase(0, n);
    return true;
  }

  bool readLine(std::string& line) {
    size_t end;
    while ((end = buffer_.find("\r\n")) == std::string::npos) {
      if (!fill()) {
        return false;
      }
    }
    line = buffer_.substr(0, end);
    buffer_.erase(0, end + 2);
    return true;
  }

  bool readChunked(std::string& body) {
    for (;;) {
      std::string line;
      if (!readLine(line)) {
        return false;
      }
      size_t size = std::stoull(line, nullptr, 16);
      if (size == 0) {
        return readLine(line);  // the empty line after the last chunk (no trailers sent)
      }
      if (!readBytes(size, body) || !readLine(line)) {
        return false;
      }
    }
  }

  int fd_ = -1;
  int timeout_ms_;
  bool connected_ = false;
  std::string buffer_;
};

// A Service whose onRequest is a lambda. The lambda runs on the loop threads.
class LambdaService : public Service {
 public:
  using Fn = std::function<std::unique_ptr<Handler>(std::shared_ptr<Exchange>)>;
  explicit LambdaService(Fn fn) : fn_(std::move(fn)) {}
  std::unique_ptr<Handler> onRequest(std::shared_ptr<Exchange> exchange) override {
    return fn_(std::move(exchange));
  }

 private:
  Fn fn_;
};

// A Handler made of lambdas; unset ones do the default.
class LambdaHandler : public Handler {
 public:
  std::function<bool(std::string_view)> on_body;
  std::function<void()> on_end;
  std::function<void()> on_abort;

  bool onBody(std::string_view data) override { return on_body ? on_body(data) : true; }
  void onEnd() override {
    if (on_end) {
      on_end();
    }
  }
  void onAbort() override {
    if (on_abort) {
      on_abort();
    }
  }
};

inline Response textResponse(int status, std::string body) {
  Response response;
  response.status = status;
  response.headers.add("Content-Type", "text/plain");
  response.body = std::move(body);
  return response;
}

// A server on 127.0.0.1 with an ephemeral port, running `fn` for every request.
struct TestServer {
  explicit TestServer(LambdaService::Fn fn, ServerOptions options = {})
      : service(std::move(fn)), server(withTestDefaults(std::move(options)), service) {
    started = server.start().isOk();
  }

  static ServerOptions withTestDefaults(ServerOptions options) {
    options.host = "127.0.0.1";
    options.port = 0;
    if (options.threads == 0) {
      options.threads = 2;
    }
    return options;
  }

  LambdaService service;
  Server server;
  bool started = false;
};

// Polls `done` for up to `ms`; for events the test cannot wait on directly.
inline bool eventually(const std::function<bool()>& done, int ms = 3000) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

}  // namespace regcache::proxy::http::testing
