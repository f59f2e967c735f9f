// One HTTP/1.1 connection: streaming request parsing with http-parser, dispatch to the
// Service, and response writing (memory, sendfile, or a pulled BodySource) on a bufferevent.
#include "proxy/http_connection.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <ctime>

#include "proxy/rate_limit.h"
#include "proxy/tls.h"

namespace regcache::proxy::http {

namespace {

// Unparsed input held per connection before reading stops (the kernel then pushes back).
constexpr size_t kMaxInput = 1 << 20;
// A BodySource is pulled while the output holds less than this; the write callback fires
// when the output drains below it.
constexpr size_t kSourceWatermark = 256 << 10;
// Bodies up to this size are copied behind the head in one evbuffer_add; larger ones are
// added by reference, without a copy.
constexpr size_t kInlineBodyMax = 64 << 10;
// File bodies up to this size are read and sent with the head instead of by sendfile.
constexpr uint64_t kInlineFileMax = 16 << 10;
// libevent's per-callback read and write caps default to 16 KiB; larger writes let sendfile
// and writev move a blob in fewer calls.
constexpr ssize_t kMaxSingleRead = 256 << 10;
// The first read of a readable socket (plain TCP): room for any usual request whole.
constexpr size_t kFirstRead = 16 << 10;
constexpr ssize_t kMaxSingleWrite = 4 << 20;
// File bodies from this size go out corked (TCP_CORK): the head rides in the first full
// segment, and every sendfile fills whole segments.
constexpr uint64_t kCorkMin = 1 << 20;
// After our side is shut, how long and how much we keep reading so the client gets the
// response instead of a reset.
constexpr std::chrono::seconds kLingerTimeout{2};
constexpr uint64_t kMaxLingerBytes = 4 << 20;

// A file body over TLS is read into the output this much at a time, as it drains.
constexpr size_t kFileReadChunk = 256 << 10;

std::atomic<uint64_t> g_connection_ids{0};
std::atomic<uint64_t> g_request_ids{0};

std::string peerString(const sockaddr* addr) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    return std::string(ip) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
    return "[" + std::string(ip) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "unknown";
}

// The address part of peerString()'s "ip:port" or "[v6]:port".
std::string peerIp(std::string_view peer) {
  size_t colon = peer.rfind(':');
  std::string_view ip = colon == std::string_view::npos ? peer : peer.substr(0, colon);
  if (ip.size() >= 2 && ip.front() == '[' && ip.back() == ']') {
    ip = ip.substr(1, ip.size() - 2);
  }
  return std::string(ip);
}

bool isTokenChar(char ch) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) {
    return true;
  }
  return std::string_view("!#$%&'*+-.^_`|~").find(ch) != std::string_view::npos;
}

// Field values: visible characters, spaces, tabs and obs-text; no NUL or other controls.
bool isFieldValueChar(char ch) {
  auto byte = static_cast<unsigned char>(ch);
  return byte == '\t' || (byte >= 0x20 && byte != 0x7f);
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i] >= 'A' && a[i] <= 'Z' ? a[i] + 32 : a[i];
    char y = b[i] >= 'A' && b[i] <= 'Z' ? b[i] + 32 : b[i];
    if (x != y) {
      return false;
    }
  }
  return true;
}

// Headers the server owns: a handler's values for them are dropped.
bool isServerHeader(std::string_view name) {
  switch (name.size()) {
    case 4:
      return equalsIgnoreCase(name, "date");
    case 10:
      return equalsIgnoreCase(name, "connection");
    case 14:
      return equalsIgnoreCase(name, "content-length");
    case 17:
      return equalsIgnoreCase(name, "transfer-encoding");
    default:
      return false;
  }
}

// The Date header value, formatted at most once per second per thread. The time comes from
// libevent's per-iteration cache, so this costs no system call.
std::string_view httpDate(event_base* base) {
  thread_local time_t cached_second = -1;
  thread_local char text[64];
  thread_local size_t length = 0;
  timeval now{};
  event_base_gettimeofday_cached(base, &now);
  if (now.tv_sec != cached_second) {
    tm parts{};
    gmtime_r(&now.tv_sec, &parts);
    length = strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &parts);
    cached_second = now.tv_sec;
  }
  return {text, length};
}

void appendNumber(std::string& out, uint64_t value) {
  char digits[24];
  auto result = std::to_chars(digits, digits + sizeof digits, value);
  out.append(digits, result.ptr);
}

std::string jsonEscape(std::string_view text) {
  std::string out;
  for (char ch : text) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) >= 0x20) {
      out += ch;
    }
  }
  return out;
}

void closeFile(const std::optional<Response::File>& file) {
  if (file && file->fd >= 0) {
    ::close(file->fd);
  }
}

// A file body this small is read into `out` and goes out in the same write as the head, as
// one TCP segment: sendfile would cost a second send and a second segment, which on a 4 KiB
// blob is most of the response's cost. On success the fd is closed; on a short read it is
// left for the sendfile path, which reports the failure.
bool readSmallFile(const Response::File& file, std::string& out) {
  if (file.length > kInlineFileMax) {
    return false;
  }
  out.resize(static_cast<size_t>(file.length));
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(file.fd, out.data() + done, out.size() - done,
                        static_cast<off_t>(file.offset + done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      out.clear();
      return false;
    }
    done += static_cast<size_t>(n);
  }
  ::close(file.fd);
  return true;
}

// A file body for a connection that cannot use sendfile (TLS): read into the output a chunk at
// a time as the client drains it, so a 1 GiB blob needs no more memory than a small one.
class FileSource final : public BodySource {
 public:
  explicit FileSource(const Response::File& file)
      : fd_(file.fd), offset_(file.offset), end_(file.offset + file.length) {}
  ~FileSource() override { ::close(fd_); }
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;

  Pull pull(evbuffer* out, size_t max_bytes) override {
    if (offset_ >= end_) {
      return Pull::kDone;
    }
    size_t want =
        static_cast<size_t>(std::min<uint64_t>({max_bytes, kFileReadChunk, end_ - offset_}));
    evbuffer_iovec space;
    if (want == 0 || evbuffer_reserve_space(out, static_cast<ev_ssize_t>(want), &space, 1) < 1) {
      return Pull::kMore;
    }
    ssize_t n;
    do {
      n = ::pread(fd_, space.iov_base, want, static_cast<off_t>(offset_));
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      return Pull::kFailed;  // an error, or the file shrank under us
    }
    space.iov_len = static_cast<size_t>(n);
    evbuffer_commit_space(out, &space, 1);
    offset_ += static_cast<uint64_t>(n);
    return offset_ >= end_ ? Pull::kDone : Pull::kMore;
  }

 private:
  int fd_;
  uint64_t offset_;
  uint64_t end_;
};

}  // namespace

// Keeps the connection alive while a callback runs; the last one out tears it down if a
// close was requested meanwhile. Every entry point from libevent or from outside takes one.
class Connection::Busy {
 public:
  explicit Busy(Connection* connection) : connection_(connection) { ++connection_->busy_; }
  ~Busy() {
    if (--connection_->busy_ == 0 && connection_->close_requested_) {
      connection_->teardown();
    }
  }
  Busy(const Busy&) = delete;
  Busy& operator=(const Busy&) = delete;

 private:
  Connection* connection_;
};

const http_parser_settings Connection::kParserSettings = {
    .on_message_begin = &Connection::onMessageBegin,
    .on_url = &Connection::onUrl,
    .on_status = nullptr,
    .on_header_field = &Connection::onHeaderField,
    .on_header_value = &Connection::onHeaderValue,
    .on_headers_complete = &Connection::onHeadersComplete,
    .on_body = &Connection::onBody,
    .on_message_complete = &Connection::onMessageComplete,
    .on_chunk_header = nullptr,
    .on_chunk_complete = nullptr,
};

// =============================================================================================
// Exchange

void ExchangeImpl::respond(Response response) {
  if (responded_ || connection_ == nullptr) {
    closeFile(response.file);  // the fd is ours either way
    return;
  }
  responded_ = true;
  connection_->sendResponse(std::move(response));
}

void ExchangeImpl::addLogField(std::string field) {
  log_fields_ += ' ';
  log_fields_ += field;
}

// =============================================================================================
// Opening and closing

// Everything after this talks to the bufferevent alone, plain or TLS, except the lingering
// close (which must send TLS's close_notify first) and file bodies (no sendfile under TLS).
void Connection::open(LoopContext& context, int fd, const sockaddr* peer) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  bufferevent* bev = nullptr;
  if (context.tls == nullptr) {
    bev = bufferevent_socket_new(context.loop->base(), fd, BEV_OPT_CLOSE_ON_FREE);
  } else {
    // The SSL holds its own reference to the context: a reload does not pull it away.
    SSL* ssl = SSL_new(context.tls->get()->get());
    if (ssl != nullptr) {
      bev = bufferevent_openssl_socket_new(context.loop->base(), fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                           BEV_OPT_CLOSE_ON_FREE);
      if (bev == nullptr) {
        SSL_free(ssl);
      } else {
        // A client closing without close_notify is an end of stream, not an error.
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
      }
    }
  }
  if (bev == nullptr) {
    ::close(fd);
    --*context.loop_connections;
    return;
  }
  new Connection(context, bev, peer, context.tls != nullptr);  // freed by teardown()
}

Connection::Connection(LoopContext& context, bufferevent* bev, const sockaddr* peer, bool tls)
    : context_(context),
      bev_(bev),
      id_(++g_connection_ids),
      peer_(peerString(peer)),
      ip_(peerIp(peer_)),
      tls_(tls),
      direct_write_(!tls) {
  next_ = context_.connections;
  if (next_ != nullptr) {
    next_->prev_ = this;
  }
  context_.connections = this;
  ++*context_.open_connections;

  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  bufferevent_setcb(bev_, &Connection::onReadable, &Connection::onWritable, &Connection::onEvent,
                    this);
  bufferevent_setwatermark(bev_, EV_READ, 0, kMaxInput);
  bufferevent_setwatermark(bev_, EV_WRITE, kSourceWatermark, 0);
  bufferevent_set_max_single_read(bev_, kMaxSingleRead);
  bufferevent_set_max_single_write(bev_, kMaxSingleWrite);
  if (direct_write_) {
    bufferevent_disable(bev_, EV_READ | EV_WRITE);  // on from birth; write armed by writeOut
    // A socket bufferevent keeps its input's end frozen against all but its own reads, which
    // never run here: ours fill it.
    evbuffer_unfreeze(bufferevent_get_input(bev_), 0);
    read_event_ = event_new(context_.loop->base(), bufferevent_getfd(bev_), EV_READ | EV_PERSIST,
                            &Connection::onSocketReadable, this);
    // The bufferevent keeps the write timeout; the read timeout rides on read_event_.
    timeval write = toTimeval(context_.options->write_timeout);
    bufferevent_set_timeouts(bev_, nullptr, write.tv_sec > 0 ? &write : nullptr);
    setReadTimeout(context_.options->idle_timeout);
    setReading(true);
  } else {
    setReadTimeout(context_.options->idle_timeout);
    bufferevent_enable(bev_, EV_READ | EV_WRITE);
  }
}

Connection::~Connection() = default;

void Connection::closeNow() {
  Busy busy(this);
  requestClose();
}

void Connection::requestClose() {
  close_requested_ = true;
  if (busy_ == 0) {
    teardown();
  }
}

// Closes from a fresh write callback rather than now: the caller may be a handler or a body
// source that must not be destroyed under its own feet.
void Connection::deferClose() {
  broken_ = true;
  triggerWritable();
}

void Connection::triggerWritable() {
  bufferevent_trigger(bev_, EV_WRITE, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void Connection::setCork(bool on) {
  int value = on ? 1 : 0;
  setsockopt(bufferevent_getfd(bev_), IPPROTO_TCP, TCP_CORK, &value, sizeof value);
  corked_ = on;
}

void Connection::scheduleWrite() {
  if (!direct_write_ || write_armed_ || write_scheduled_) {
    return;  // the bufferevent writes, or a write is on its way
  }
  write_scheduled_ = true;
  triggerWritable();
}

bool Connection::writeOut() {
  evbuffer* output = bufferevent_get_output(bev_);
  if (!write_armed_ && evbuffer_get_length(output) > 0) {
    // A socket bufferevent keeps its output's start frozen against all but its own writes.
    evbuffer_unfreeze(output, 1);
    errno = 0;
    int written = evbuffer_write_atmost(output, bufferevent_getfd(bev_), kMaxSingleWrite);
    evbuffer_freeze(output, 1);
    if (written < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return false;
    }
  }
  bool pending = evbuffer_get_length(output) > 0;
  if (pending != write_armed_) {
    write_armed_ = pending;
    if (pending) {
      bufferevent_enable(bev_, EV_WRITE);
    } else {
      bufferevent_disable(bev_, EV_WRITE);
    }
  }
  return true;
}

void Connection::teardown() {
  abortExchange();
  source_.reset();

  if (prev_ != nullptr) {
    prev_->next_ = next_;
  } else {
    context_.connections = next_;
  }
  if (next_ != nullptr) {
    next_->prev_ = prev_;
  }
  --*context_.open_connections;
  --*context_.loop_connections;
  if (read_event_ != nullptr) {
    event_free(read_event_);  // before the bufferevent closes the socket
  }
  bufferevent_free(bev_);
  if (scratch_ != nullptr) {
    evbuffer_free(scratch_);
  }
  delete this;
}

// Half-closes our side and reads (discarding) until the client closes too. Closing outright
// with unread input in the socket would make the kernel send a reset, which can destroy the
// response the client has not read yet.
//
// Under TLS our side ends with close_notify first (the output is empty by now, so it goes out
// right behind the response), then the TCP half-close; reading on decrypts and discards.
// Lingering is bounded in total time, not per read, so a trickling client cannot stretch it.
void Connection::startLingeringClose() {
  lingering_ = true;
  evbuffer* input = bufferevent_get_input(bev_);
  evbuffer_drain(input, evbuffer_get_length(input));
  if (tls_) {
    SSL* ssl = bufferevent_openssl_get_ssl(bev_);
    if (ssl != nullptr && SSL_is_init_finished(ssl)) {
      SSL_shutdown(ssl);  // 0: sent, the peer's not yet seen; either way we stop writing
    }
  }
  ::shutdown(bufferevent_getfd(bev_), SHUT_WR);
  linger_deadline_ = std::chrono::steady_clock::now() + kLingerTimeout;
  input_full_ = false;
  setReadTimeout(kLingerTimeout);
  setReading(true);
}

void Connection::setReadTimeout(std::chrono::milliseconds timeout) {
  if (timeout == read_timeout_) {
    return;  // also saves re-adding the event to the timer heap
  }
  read_timeout_ = timeout;
  if (read_event_ == nullptr) {
    timeval read = toTimeval(timeout);
    timeval write = toTimeval(context_.options->write_timeout);
    bufferevent_set_timeouts(bev_, timeout.count() > 0 ? &read : nullptr,
                             write.tv_sec > 0 ? &write : nullptr);
    return;
  }
  if (reading_) {
    if (timeout.count() <= 0) {
      event_del(read_event_);  // event_add without a timeout would keep the old one
    }
    addReadEvent();  // the timer alone
  }
}

void Connection::addReadEvent() {
  timeval read = toTimeval(read_timeout_);
  event_add(read_event_, read_timeout_.count() > 0 ? &read : nullptr);
}

void Connection::setReading(bool on) {
  if (read_event_ == nullptr) {
    if (on) {
      bufferevent_enable(bev_, EV_READ);
    } else {
      bufferevent_disable(bev_, EV_READ);
    }
    return;
  }
  if (on == reading_) {
    return;
  }
  reading_ = on;
  if (!on) {
    event_del(read_event_);
    return;
  }
  addReadEvent();
}

// =============================================================================================
// libevent callbacks

void Connection::onReadable(bufferevent* /*bev*/, void* arg) {
  auto* connection = static_cast<Connection*>(arg);
  Busy busy(connection);
  if (!connection->close_requested_) {
    connection->handleInput();
  }
}

void Connection::onSocketReadable(evutil_socket_t /*fd*/, short events, void* arg) {
  auto* connection = static_cast<Connection*>(arg);
  Busy busy(connection);
  if (connection->close_requested_) {
    return;
  }
  if (events & EV_TIMEOUT) {
    connection->onTimeout(BEV_EVENT_READING);
  } else if (connection->readSocket()) {
    connection->handleInput();
  }
}

// Reads into the input what the socket holds, up to kMaxInput unparsed, without asking how
// much first: one read for a request that fits its first piece, more only for bodies.
bool Connection::readSocket() {
  evbuffer* input = bufferevent_get_input(bev_);
  size_t want = kFirstRead;
  ssize_t total = 0;
  while (true) {
    size_t held = evbuffer_get_length(input);
    if (held >= kMaxInput) {
      input_full_ = true;
      setReading(false);  // parseInput turns it on again as it makes room
      return true;
    }
    want = std::min(want, kMaxInput - held);
    evbuffer_iovec vecs[2];
    int n = evbuffer_reserve_space(input, static_cast<ev_ssize_t>(want), vecs, 2);
    if (n <= 0) {
      requestClose();
      return false;
    }
    ssize_t got = ::readv(bufferevent_getfd(bev_), reinterpret_cast<iovec*>(vecs), n);
    if (got <= 0) {
      evbuffer_commit_space(input, vecs, 0);
      if (got == 0) {
        setReading(false);  // the stream has ended: stop polling for it
        onEof();
        return false;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return total > 0;
      }
      requestClose();
      return false;
    }
    // Commit what arrived, spread over the reserved vectors in order.
    size_t left = static_cast<size_t>(got);
    for (int i = 0; i < n; ++i) {
      size_t len = std::min(left, vecs[i].iov_len);
      vecs[i].iov_len = len;
      left -= len;
    }
    evbuffer_commit_space(input, vecs, n);
    total += got;
    if (static_cast<size_t>(got) < want || total >= kMaxSingleRead) {
      return true;  // the socket had no more (or enough for one turn)
    }
    want = static_cast<size_t>(kMaxSingleRead);
  }
}

void Connection::handleInput() {
  if (lingering_) {
    evbuffer* input = bufferevent_get_input(bev_);
    linger_bytes_ += evbuffer_get_length(input);
    evbuffer_drain(input, evbuffer_get_length(input));
    if (linger_bytes_ > kMaxLingerBytes || std::chrono::steady_clock::now() >= linger_deadline_) {
      requestClose();
    }
    return;
  }
  parseInput();
  if (in_message_ && !headers_done_ && !close_requested_) {
    enforceHeaderDeadline();
  }
}

void Connection::onWritable(bufferevent* /*bev*/, void* arg) {
  auto* connection = static_cast<Connection*>(arg);
  Busy busy(connection);
  connection->write_scheduled_ = false;
  if (connection->close_requested_) {
    return;
  }
  if (connection->source_ != nullptr && !connection->response_queued_) {
    connection->pumpSource();
  }
  if (connection->broken_ || connection->source_failed_ ||
      (connection->direct_write_ && !connection->writeOut())) {
    connection->requestClose();
    return;
  }
  connection->maybeFinishResponse();
}

void Connection::onEvent(bufferevent* /*bev*/, short events, void* arg) {
  auto* connection = static_cast<Connection*>(arg);
  Busy busy(connection);
  if (connection->close_requested_) {
    return;
  }
  if (events & BEV_EVENT_ERROR) {
    connection->requestClose();
  } else if (events & BEV_EVENT_EOF) {
    connection->onEof();
  } else if (events & BEV_EVENT_TIMEOUT) {
    connection->onTimeout(events);
  }
}

void Connection::onEof() {
  if (lingering_ || in_message_ || (exchange_ == nullptr && !response_started_)) {
    requestClose();  // done, mid-request (onAbort), or idle
    return;
  }
  // A complete request and then a half-close: answer it (and any complete pipelined ones
  // behind it), then close.
  peer_eof_ = true;
}

// Headers arrive in pieces: the read timeout is cut to what is left of request_timeout since
// the request's first byte, so each new byte does not restart the clock (slowloris). Only
// requests whose headers span reads pay for the clock reading.
void Connection::enforceHeaderDeadline() {
  auto deadline = started_ + context_.options->request_timeout;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) {
    SPDLOG_DEBUG("http.header_timeout conn={} client={}", id_, peer_);
    requestClose();
    return;
  }
  setReadTimeout(left);
}

void Connection::onTimeout(short events) {
  if (events & BEV_EVENT_WRITING) {
    SPDLOG_DEBUG("http.write_timeout conn={} client={}", id_, peer_);
  } else if (!lingering_ && !in_message_ && (exchange_ != nullptr || response_started_)) {
    // No read timeout while a complete request is handled and answered. A bufferevent turns
    // reading off for the timeout: turn it on again, which restarts the timer (our own read
    // event persists, its timer restarted already).
    if (read_event_ == nullptr) {
      bufferevent_enable(bev_, EV_READ);
    }
    return;
  }
  // Reading: idle keep-alive, a stalled request, or the end of a lingering close.
  requestClose();
}

// =============================================================================================
// Reading requests

void Connection::parseInput() {
  parseBuffered();
  if (input_full_ && !close_requested_ && !discard_body_ && !lingering_ &&
      evbuffer_get_length(bufferevent_get_input(bev_)) < kMaxInput) {
    input_full_ = false;
    setReading(true);
  }
}

// Feeds buffered input to the parser, one evbuffer chain at a time, without copying. Stops
// when the parser pauses at the end of a request whose response is not written yet; the
// rest stays in the input buffer, and once that holds kMaxInput bytes reading stops.
void Connection::parseBuffered() {
  evbuffer* input = bufferevent_get_input(bev_);
  while (!close_requested_ && !discard_body_ && !lingering_) {
    if (HTTP_PARSER_ERRNO(&parser_) == HPE_PAUSED) {
      if (exchange_ != nullptr || response_started_) {
        return;  // resumed by finishExchange()
      }
      http_parser_pause(&parser_, 0);
    }
    if (parser_.upgrade) {
      return;  // what follows is not HTTP/1.1; the connection closes after the response
    }

    evbuffer_iovec chunk;
    if (evbuffer_peek(input, -1, nullptr, &chunk, 1) < 1 || chunk.iov_len == 0) {
      return;
    }
    size_t parsed = http_parser_execute(&parser_, &kParserSettings,
                                        static_cast<const char*>(chunk.iov_base), chunk.iov_len);
    evbuffer_drain(input, parsed);

    http_errno error = HTTP_PARSER_ERRNO(&parser_);
    if (error != HPE_OK && error != HPE_PAUSED) {
      onParseError(error);
      return;
    }
  }
}

int Connection::onMessageBegin(http_parser* parser) {
  auto* c = static_cast<Connection*>(parser->data);
  c->in_message_ = true;
  c->body_done_ = false;
  c->discard_body_ = false;
  c->method_.clear();
  c->url_.clear();
  c->field_.clear();
  c->value_.clear();
  c->headers_ = Headers();
  c->header_bytes_ = 0;
  c->in_value_ = false;
  c->headers_done_ = false;
  c->bad_header_ = false;
  // The read timer is left at the idle timeout: a request whose headers span reads gets the
  // header deadline once its first read is parsed (enforceHeaderDeadline), one with a body
  // the body timeout at its headers. Most arrive whole in one read and never touch the timer.
  c->started_ = std::chrono::steady_clock::now();
  return 0;
}

bool Connection::countHeaderBytes(size_t length) {
  header_bytes_ += length;
  if (header_bytes_ > context_.options->max_header_bytes) {
    header_overflow_ = true;
    return false;
  }
  return true;
}

int Connection::onUrl(http_parser* parser, const char* at, size_t length) {
  auto* c = static_cast<Connection*>(parser->data);
  if (c->url_.size() + length > c->context_.options->max_target_bytes) {
    c->target_overflow_ = true;
    return -1;
  }
  if (!c->countHeaderBytes(length)) {
    return -1;
  }
  c->url_.append(at, length);
  return 0;
}

int Connection::onHeaderField(http_parser* parser, const char* at, size_t length) {
  auto* c = static_cast<Connection*>(parser->data);
  // A new field also costs its ": " and CRLF, so many tiny headers add up as on the wire.
  size_t framing = c->in_value_ || c->field_.empty() ? 4 : 0;
  if (!c->countHeaderBytes(length + framing)) {
    return -1;
  }
  if (c->in_value_) {
    c->commitHeader();
  }
  c->field_.append(at, length);
  return 0;
}

int Connection::onHeaderValue(http_parser* parser, const char* at, size_t length) {
  auto* c = static_cast<Connection*>(parser->data);
  if (!c->countHeaderBytes(length)) {
    return -1;
  }
  c->in_value_ = true;
  c->value_.append(at, length);
  return 0;
}

void Connection::commitHeader() {
  // http-parser lets some bytes through that RFC 9110 does not: "Ho st", a NUL in a value.
  if (field_.empty() || !std::all_of(field_.begin(), field_.end(), isTokenChar) ||
      !std::all_of(value_.begin(), value_.end(), isFieldValueChar)) {
    bad_header_ = true;
  }
  while (!value_.empty() && (value_.back() == ' ' || value_.back() == '\t')) {
    value_.pop_back();
  }
  headers_.add(std::move(field_), std::move(value_));
  field_.clear();
  value_.clear();
  in_value_ = false;
}

int Connection::onHeadersComplete(http_parser* parser) {
  auto* c = static_cast<Connection*>(parser->data);
  if (c->in_value_ || !c->field_.empty()) {
    c->commitHeader();
  }
  c->headers_done_ = true;
  if (parser->uses_transfer_encoding && !(parser->flags & F_CHUNKED) && !parser->upgrade) {
    // A body whose length cannot be known (RFC 9112 6.3): http-parser refuses it only after
    // this callback, too late to keep it from the Service, whose answer would then be lost.
    c->sendError(400, "Transfer-Encoding must end with chunked");
    return -1;
  }
  c->dispatchRequest();
  if (!c->body_done_ && !c->discard_body_) {
    // From here the request_timeout bounds a stall in the body, not the whole of it.
    c->setReadTimeout(c->context_.options->request_timeout);
  }
  return c->close_requested_ ? -1 : 0;
}

// Builds the Request, makes the exchange current and hands it to the Service.
void Connection::dispatchRequest() {
  auto exchange = std::make_shared<ExchangeImpl>(this, *context_.loop);
  Request& request = exchange->request_;
  request.method = http_method_str(static_cast<http_method>(parser_.method));
  request.target = std::move(url_);
  // Absolute-form ("http://host/v2/", RFC 9112 3.2.2) names the same path as origin-form.
  size_t path_start = 0;
  if (!request.target.empty() && request.target[0] != '/') {
    size_t scheme_end = request.target.find("://");
    if (scheme_end != std::string::npos) {
      path_start =
          std::min(request.target.find_first_of("/?", scheme_end + 3), request.target.size());
    }
  }
  size_t question = request.target.find('?', path_start);
  request.path = request.target.substr(path_start, question - path_start);
  if (request.path.empty() && path_start > 0) {
    request.path = "/";
  }
  if (question != std::string::npos) {
    request.query = request.target.substr(question + 1);
  }
  request.headers = std::move(headers_);
  if (parser_.flags & F_CONTENTLENGTH) {
    request.content_length = parser_.content_length;
  }
  request.chunked = (parser_.flags & F_CHUNKED) != 0;
  request.id = ++g_request_ids;
  request.peer = peer_;

  keep_alive_ = http_should_keep_alive(&parser_) != 0 && parser_.upgrade == 0;
  http10_ = parser_.http_major == 1 && parser_.http_minor == 0;
  head_request_ = parser_.method == HTTP_HEAD;
  body_done_ = !request.chunked && request.content_length.value_or(0) == 0;
  exchange_ = exchange;
  status_ = 0;
  body_bytes_ = 0;

  if (!admitRequest(*exchange)) {
    return;
  }
  exchange->handler_ = context_.service->onRequest(exchange);

  // 100 Continue only when someone will read the body and no answer has gone out yet.
  if (exchange->handler_ != nullptr && !exchange->responded_ && !body_done_ && !http10_ &&
      exchange_ == exchange) {
    const std::string* expect = request.headers.get("expect");
    if (expect != nullptr && equalsIgnoreCase(*expect, "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      evbuffer_add(bufferevent_get_output(bev_), kContinue.data(), kContinue.size());
      scheduleWrite();
    }
  }
}

int Connection::onBody(http_parser* parser, const char* at, size_t length) {
  auto* c = static_cast<Connection*>(parser->data);
  if (c->close_requested_) {
    return -1;
  }
  if (c->discard_body_ || c->exchange_ == nullptr || c->exchange_->handler_ == nullptr) {
    return 0;
  }
  if (!c->exchange_->handler_->onBody(std::string_view(at, length))) {
    c->stopReadingBody();
  }
  return 0;
}

int Connection::onMessageComplete(http_parser* parser) {
  auto* c = static_cast<Connection*>(parser->data);
  c->in_message_ = false;
  c->body_done_ = true;
  http_parser_pause(parser, 1);
  if (c->close_requested_) {
    return 0;
  }

  // The handler may take its time (an upstream fetch), and the response too: the read timer
  // goes on at the idle timeout and onTimeout lets it pass while the exchange lasts. A zero
  // timeout would take the read event out of epoll (libevent deletes it) and the idle timeout
  // put it back: two epoll_ctl calls per request. Reading stays on to notice the client leaving.
  c->setReadTimeout(c->context_.options->idle_timeout);
  if (!c->discard_body_ && c->exchange_ != nullptr && c->exchange_->handler_ != nullptr) {
    c->exchange_->handler_->onEnd();
  }
  return 0;
}

// The rest of the body will not be read: the response went out early, or the handler asked.
void Connection::stopReadingBody() {
  discard_body_ = true;
  close_after_ = true;
  setReading(false);
}

// Refusals before the Service sees a request: a target no handler should have to defend
// against, and a client over its request rate. False when the request was answered here.
bool Connection::admitRequest(ExchangeImpl& exchange) {
  const Request& request = exchange.request_;
  if (parser_.http_major != 1 || parser_.http_minor > 1) {
    sendError(400, "unsupported HTTP version");
    return false;
  }
  if (bad_header_) {
    sendError(400, "malformed header field name");
    return false;
  }
  if (Status status = checkTarget(request.target); !status) {
    sendError(400, status.message(), "NAME_INVALID");
    return false;
  }
  if (context_.rate_limiter == nullptr) {
    return true;
  }
  RateLimiter::Decision decision =
      context_.rate_limiter->admit(ip_, std::chrono::steady_clock::now());
  if (decision.allowed) {
    return true;
  }
  Response response;
  response.status = 429;
  response.headers.add("Content-Type", "application/json");
  response.headers.add("Retry-After", std::to_string(decision.retry_after_seconds));
  response.body = R"({"errors":[{"code":"TOOMANYREQUESTS","message":"too many requests from )" +
                  ip_ + R"(; retry after )" + std::to_string(decision.retry_after_seconds) +
                  R"( s","detail":null}]})";
  exchange.respond(std::move(response));
  return false;
}

void Connection::onParseError(http_errno error) {
  if (close_requested_) {
    return;
  }
  if (target_overflow_) {
    target_overflow_ = false;
    sendError(414, "request target longer than " +
                       std::to_string(context_.options->max_target_bytes) + " bytes");
  } else if (header_overflow_ || error == HPE_HEADER_OVERFLOW) {
    sendError(431, "request header fields too large");
  } else {
    sendError(400, http_errno_description(error));
  }
}

// The server's own answer to a request it could not parse. Any handler is told the request
// aborted; the connection closes after the answer.
void Connection::sendError(int status, std::string_view message, std::string_view code) {
  if (response_queued_) {
    // A whole response is queued already (answered before the parser found the error): it
    // goes out, and the connection closes behind it.
    stopReadingBody();
    keep_alive_ = false;
    return;
  }
  if (response_started_) {
    requestClose();  // a response is half out: nothing sane to add to it
    return;
  }
  if (exchange_ != nullptr) {
    detachExchange(*exchange_, /*aborted=*/true);  // stays current: the log names the request
  }
  stopReadingBody();
  keep_alive_ = false;
  status_ = status;

  std::string body = R"({"errors":[{"code":")" + std::string(code) + R"(","message":")" +
                     jsonEscape(message) + R"(","detail":null}]})";
  Headers headers;
  headers.add("Content-Type", "application/json");
  writeHead(status, headers, Framing::kLength, body.size(), true, body);
  body_bytes_ = body.size();
  response_started_ = true;
  response_queued_ = true;
}

// =============================================================================================
// Writing responses

void Connection::sendResponse(Response response) {
  Busy busy(this);
  if (close_requested_ || response_started_) {
    closeFile(response.file);
    return;
  }
  if (!body_done_) {
    stopReadingBody();
  }
  status_ = response.status;
  response_started_ = true;

  // Framing: what the head announces.
  bool bodiless_status = status_ < 200 || status_ == 204 || status_ == 304;
  Framing framing = Framing::kLength;
  uint64_t length = response.body.size();
  if (bodiless_status) {
    framing = Framing::kNone;
  } else if (response.file) {
    length = response.file->length;
  } else if (response.source) {
    if (response.source_length) {
      length = *response.source_length;
    } else {
      framing = http10_ ? Framing::kUntilClose : Framing::kChunked;
    }
  }
  if (head_request_ && !bodiless_status) {
    if (response.head_length) {
      framing = Framing::kLength;
      length = *response.head_length;
    } else if (framing != Framing::kLength) {
      framing = Framing::kNone;  // length unknown: announce none
    }
  }
  if (framing == Framing::kUntilClose || !keep_alive_) {
    close_after_ = true;
  }

  bool no_body = head_request_ || bodiless_status;
  if (!no_body && response.file && readSmallFile(*response.file, response.body)) {
    response.file.reset();  // its bytes are in the body now, and the fd is closed
  }
  bool inline_body =
      !no_body && !response.file && !response.source && response.body.size() <= kInlineBodyMax;
  writeHead(status_, response.headers, framing, length, close_after_,
            inline_body ? std::string_view(response.body) : std::string_view());
  if (no_body) {
    closeFile(response.file);
    response_queued_ = true;
    return;
  }

  evbuffer* output = bufferevent_get_output(bev_);
  if (response.file && tls_) {
    startSource(std::make_shared<FileSource>(*response.file), response.file->length);
    return;
  }
  if (response.file) {
    if (response.file->length >= kCorkMin) {
      setCork(true);
    }
    if (!addFile(*response.file)) {
      deferClose();
      return;
    }
    body_bytes_ = response.file->length;
  } else if (response.source) {
    startSource(std::move(response.source), response.source_length);
    return;
  } else if (!inline_body) {
    // Large in-memory body: hand the string itself to the buffer, freed once written.
    auto* owned = new std::string(std::move(response.body));
    evbuffer_add_reference(
        output, owned->data(), owned->size(),
        [](const void*, size_t, void* arg) { delete static_cast<std::string*>(arg); }, owned);
    body_bytes_ = owned->size();
  } else {
    body_bytes_ = response.body.size();
  }
  response_queued_ = true;
}

// Status line and headers (and a small body) in one evbuffer_add, built in a per-thread
// string that keeps its capacity.
void Connection::writeHead(int status, const Headers& headers, Framing framing, uint64_t length,
                           bool closing, std::string_view inline_body) {
  thread_local std::string head;
  head.clear();
  head += "HTTP/1.1 ";
  appendNumber(head, static_cast<uint64_t>(status));
  head += ' ';
  head += reasonPhrase(status);
  head += "\r\n";
  for (const Header& header : headers.all()) {
    if (isServerHeader(header.name)) {
      continue;
    }
    head += header.name;
    head += ": ";
    head += header.value;
    head += "\r\n";
  }
  head += "Date: ";
  head += httpDate(context_.loop->base());
  head += "\r\n";
  if (framing == Framing::kLength) {
    head += "Content-Length: ";
    appendNumber(head, length);
    head += "\r\n";
  } else if (framing == Framing::kChunked) {
    head += "Transfer-Encoding: chunked\r\n";
  }
  if (closing) {
    head += "Connection: close\r\n";
  } else if (http10_) {
    head += "Connection: keep-alive\r\n";
  }
  head += "\r\n";
  head += inline_body;
  evbuffer_add(bufferevent_get_output(bev_), head.data(), head.size());
  scheduleWrite();  // the body, if any, is queued before the deferred write runs
}

// Queues a file range for sendfile. The segment owns the fd and closes it once written (or
// when the connection's buffer is freed).
bool Connection::addFile(const Response::File& file) {
  if (file.length == 0) {
    ::close(file.fd);
    return true;
  }
  evbuffer_file_segment* segment =
      evbuffer_file_segment_new(file.fd, static_cast<ev_off_t>(file.offset),
                                static_cast<ev_off_t>(file.length), EVBUF_FS_CLOSE_ON_FREE);
  if (segment == nullptr) {
    ::close(file.fd);
    return false;
  }
  int rc = evbuffer_add_file_segment(bufferevent_get_output(bev_), segment, 0,
                                     static_cast<ev_off_t>(file.length));
  evbuffer_file_segment_free(segment);  // the buffer holds its own reference
  return rc == 0;
}

void Connection::startSource(std::shared_ptr<BodySource> source, std::optional<uint64_t> length) {
  source_ = std::move(source);
  source_remaining_ = length;
  source_chunked_ = !length && !http10_;
  source_waiting_ = false;
  source_failed_ = false;

  std::weak_ptr<ExchangeImpl> weak = exchange_;
  source_->start([weak] {
    std::shared_ptr<ExchangeImpl> exchange = weak.lock();
    if (exchange != nullptr && exchange->connection_ != nullptr) {
      exchange->connection_->wakeSource();
    }
  });
  pumpSource();
  if (source_failed_ || response_queued_) {
    triggerWritable();  // finish or close from the write callback, not under the handler
  }
}

void Connection::wakeSource() {
  Busy busy(this);
  if (source_ == nullptr || close_requested_ || response_queued_) {
    return;
  }
  source_waiting_ = false;
  pumpSource();
  if (source_failed_ || response_queued_) {
    triggerWritable();  // the source is on the stack: close or finish later
  }
}

// Pulls from the body source while the output holds less than kSourceWatermark, framing each
// piece as a chunk when the length is unknown. Re-entrant calls (a source that wakes us from
// inside pull or start) are folded into the running loop.
void Connection::pumpSource() {
  if (pumping_) {
    pump_again_ = true;
    return;
  }
  pumping_ = true;
  evbuffer* output = bufferevent_get_output(bev_);
  bool stalled = false;
  do {
    pump_again_ = false;
    while (source_ != nullptr && !response_queued_ && !source_waiting_ && !source_failed_ &&
           !stalled) {
      size_t queued = evbuffer_get_length(output);
      if (queued >= kSourceWatermark) {
        break;  // the write callback brings us back
      }
      size_t room = kSourceWatermark - queued;
      if (source_remaining_) {
        if (*source_remaining_ == 0) {
          response_queued_ = true;
          break;
        }
        room = static_cast<size_t>(std::min<uint64_t>(room, *source_remaining_));
      }

      if (source_chunked_ && scratch_ == nullptr) {
        scratch_ = evbuffer_new();
      }
      evbuffer* into = source_chunked_ ? scratch_ : output;
      size_t before = evbuffer_get_length(into);
      BodySource::Pull pull = source_->pull(into, room);
      size_t got = evbuffer_get_length(into) - before;
      if (source_remaining_ && got > *source_remaining_) {
        source_failed_ = true;  // more than announced: never send a wrong body
        break;
      }
      if (source_chunked_ && got > 0) {
        char size_line[24];
        int n = snprintf(size_line, sizeof size_line, "%zx\r\n", got);
        evbuffer_add(output, size_line, static_cast<size_t>(n));
        evbuffer_add_buffer(output, scratch_);
        evbuffer_add(output, "\r\n", 2);
      }
      body_bytes_ += got;
      if (source_remaining_) {
        *source_remaining_ -= got;
      }

      switch (pull) {
        case BodySource::Pull::kMore:
          if (got == 0) {
            triggerWritable();  // no progress: retry from the loop rather than spin here
            stalled = true;
          }
          break;
        case BodySource::Pull::kWait:
          source_waiting_ = true;
          break;
        case BodySource::Pull::kDone:
          if (source_remaining_ && *source_remaining_ != 0) {
            source_failed_ = true;  // shorter than announced
          } else {
            if (source_chunked_) {
              evbuffer_add(output, "0\r\n\r\n", 5);
            }
            response_queued_ = true;
          }
          break;
        case BodySource::Pull::kFailed:
          source_failed_ = true;
          break;
      }
    }
  } while (pump_again_ && !source_failed_ && !stalled);
  pumping_ = false;
  if (evbuffer_get_length(output) > 0) {
    scheduleWrite();
  }
}

void Connection::maybeFinishResponse() {
  if (response_queued_ && evbuffer_get_length(bufferevent_get_output(bev_)) == 0) {
    finishExchange();
  }
}

// The response is written: log it, let the exchange go, and either close or move on to the
// next request already waiting in the input buffer.
void Connection::finishExchange() {
  if (corked_) {
    setCork(false);  // out goes the last partial segment
  }
  if (exchange_ != nullptr) {
    detachExchange(*exchange_, /*aborted=*/false);
    logAccess(exchange_.get(), false);
    exchange_.reset();
  } else {
    logAccess(nullptr, false);
  }
  source_.reset();
  response_started_ = false;
  response_queued_ = false;
  source_waiting_ = false;
  status_ = 0;
  body_bytes_ = 0;

  if (close_after_ || !keep_alive_) {
    startLingeringClose();
    return;
  }
  setReadTimeout(context_.options->idle_timeout);
  parseInput();
  if (in_message_ && !headers_done_ && !close_requested_) {
    enforceHeaderDeadline();  // a pipelined request that is not all here yet
  }
  if (peer_eof_ && exchange_ == nullptr && !response_started_ && !close_requested_) {
    requestClose();  // the client half-closed and every complete request is answered
  }
}

// Cuts the exchange loose from this connection and drops its handler (telling it first when
// the request aborted). Handlers often hold the exchange; dropping the handler breaks that
// cycle.
void Connection::detachExchange(ExchangeImpl& exchange, bool aborted) {
  exchange.connection_ = nullptr;
  std::unique_ptr<Handler> handler = std::move(exchange.handler_);
  if (aborted && handler != nullptr) {
    handler->onAbort();
  }
}

void Connection::abortExchange() {
  if (exchange_ == nullptr) {
    return;
  }
  std::shared_ptr<ExchangeImpl> exchange = std::move(exchange_);
  detachExchange(*exchange, /*aborted=*/true);
  logAccess(exchange.get(), true);
}

// ---------------------------------------------------------------------------------------------
// The access log as JSON (log_format = "json")

namespace {

// `s` as a JSON string literal. Bytes outside printable ASCII are escaped one by one, so a
// line is valid JSON whatever a client put in its request.
void appendJson(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(ch);
    } else if (c < 0x20 || c >= 0x7f) {
      out += "\\u00";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    } else {
      out.push_back(ch);
    }
  }
  out.push_back('"');
}

// One access line as a JSON object. `fields` are the handler's " key=value" pairs; each becomes
// a string member. Without a request (it never got past its headers) req, method and path are
// null.
std::string accessJson(const Request* request, uint64_t conn, std::string_view client, int status,
                       uint64_t bytes, double ms, bool aborted, std::string_view fields) {
  auto now = std::chrono::system_clock::now();
  std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char time[40];
  size_t n = std::strftime(time, sizeof time, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(time + n, sizeof time - n, ".%03dZ", static_cast<int>(millis.count()));

  std::string out = "{\"time\":\"";
  out += time;
  out += "\",\"level\":\"info\",\"event\":\"access\",\"req\":";
  out += request != nullptr ? std::to_string(request->id) : "null";
  out += ",\"conn\":" + std::to_string(conn) + ",\"client\":";
  appendJson(out, client);
  if (request != nullptr) {
    out += ",\"method\":";
    appendJson(out, request->method);
    out += ",\"path\":";  // never the query: it may carry a token
    appendJson(out, request->path);
  } else {
    out += ",\"method\":null,\"path\":null";
  }
  char ms_text[32];
  std::snprintf(ms_text, sizeof ms_text, "%.3f", ms);
  out += ",\"status\":" + std::to_string(status) + ",\"bytes\":" + std::to_string(bytes) +
         ",\"ms\":" + ms_text;
  if (aborted) out += ",\"aborted\":true";
  while (!fields.empty()) {
    size_t end = fields.find(' ', 1);
    std::string_view field = fields.substr(1, end == std::string_view::npos ? end : end - 1);
    fields.remove_prefix(end == std::string_view::npos ? fields.size() : end);
    size_t eq = field.find('=');
    if (field.empty() || eq == std::string_view::npos) continue;
    out.push_back(',');
    appendJson(out, field.substr(0, eq));
    out.push_back(':');
    appendJson(out, field.substr(eq + 1));
  }
  out.push_back('}');
  return out;
}

}  // namespace

void Connection::logAccess(const ExchangeImpl* exchange, bool aborted) {
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started_)
                  .count();
  uint64_t bytes = body_bytes_;
  if (aborted) {
    size_t unsent = evbuffer_get_length(bufferevent_get_output(bev_));
    bytes -= std::min<uint64_t>(bytes, unsent);
  }
  const Request* finished = exchange != nullptr ? &exchange->request_ : nullptr;
  Completion completion{status_, bytes, ms / 1000.0, aborted};
  if (exchange != nullptr) {
    completion.log_fields = exchange->log_fields_;
    completion.note = &exchange->note_;
  }
  context_.service->onFinished(finished, completion);

  spdlog::logger* log = context_.access_log;
  if (log == nullptr || !log->should_log(spdlog::level::info)) {
    return;
  }
  if (context_.options->access_log_json) {
    const Request* request = exchange != nullptr ? &exchange->request_ : nullptr;
    std::string_view fields = exchange != nullptr ? exchange->log_fields_ : std::string_view();
    log->info(accessJson(request, id_, peer_, status_, bytes, ms, aborted, fields));
    return;
  }
  std::string_view flag = aborted ? " aborted=true" : "";
  if (exchange == nullptr) {
    log->info("req=- conn={} client={} method=- path=\"-\" status={} bytes={} ms={:.3f}{}", id_,
              peer_, status_, bytes, ms, flag);
    return;
  }
  const Request& request = exchange->request_;
  log->info("req={} conn={} client={} method={} path=\"{}\" status={} bytes={} ms={:.3f}{}{}",
            request.id, id_, peer_, request.method, request.path, status_, bytes, ms, flag,
            exchange->log_fields_);
}

}  // namespace regcache::proxy::http
