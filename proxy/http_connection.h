// One client connection of the HTTP/1.1 server: parsing, dispatch, response writing and the
// connection's lifetime. Internal to the server (proxy/http.cc); nothing else includes it.
#pragma once

#include <event2/util.h>
#include <http_parser.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "proxy/http.h"

struct bufferevent;
struct event;
struct evbuffer;
struct sockaddr;

namespace spdlog {
class logger;
}

namespace regcache::proxy::http {

class Connection;
class RateLimiter;
class TlsContext;

// The TLS context new connections are made with. Server::reloadTls() swaps it; connections
// already open hold their own reference to the old SSL_CTX. Thread-safe.
class TlsSlot {
 public:
  std::shared_ptr<TlsContext> get() const {
    std::lock_guard lock(mu_);
    return context_;
  }
  void set(std::shared_ptr<TlsContext> context) {
    std::lock_guard lock(mu_);
    context_ = std::move(context);
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<TlsContext> context_;  // guarded by mu_
};

// What the connections of one loop share. Owned by the server; outlives its connections.
struct LoopContext {
  const ServerOptions* options = nullptr;
  Service* service = nullptr;
  Loop* loop = nullptr;
  spdlog::logger* access_log = nullptr;
  std::atomic<size_t>* open_connections = nullptr;  // across all loops
  std::atomic<size_t>* loop_connections = nullptr;  // on this loop, counting those handed over
  Connection* connections = nullptr;                // intrusive list; loop thread only
  TlsSlot* tls = nullptr;                           // null: plain HTTP
  RateLimiter* rate_limiter = nullptr;              // null: no per-client limit
};

class ExchangeImpl;

// A client connection. Lives on its loop's thread; deletes itself when closed.
//
// Requests are handled strictly one at a time: after a request message completes the parser
// is paused, and the input behind it (pipelined requests) waits in the bufferevent's input
// buffer, bounded by kMaxInput, until the response has been written out.
class Connection {
 public:
  // Takes ownership of the accepted, non-blocking socket `fd`, for which the acceptor has
  // already counted one in `*context.loop_connections` (released here if it cannot open, else
  // when the connection closes). Loop thread of `context`.
  static void open(LoopContext& context, int fd, const sockaddr* peer);

  // Aborts the current exchange and frees the connection now. Loop thread, outside of any of
  // this connection's callbacks (the server's shutdown).
  void closeNow();

  Connection* next() const { return next_; }

 private:
  friend class ExchangeImpl;
  class Busy;

  Connection(LoopContext& context, bufferevent* bev, const sockaddr* peer, bool tls);
  ~Connection();

  // libevent and http-parser callbacks.
  static void onReadable(bufferevent* bev, void* arg);
  static void onSocketReadable(evutil_socket_t fd, short events, void* arg);
  static void onWritable(bufferevent* bev, void* arg);
  static void onEvent(bufferevent* bev, short events, void* arg);
  static int onMessageBegin(http_parser* parser);
  static int onUrl(http_parser* parser, const char* at, size_t length);
  static int onHeaderField(http_parser* parser, const char* at, size_t length);
  static int onHeaderValue(http_parser* parser, const char* at, size_t length);
  static int onHeadersComplete(http_parser* parser);
  static int onBody(http_parser* parser, const char* at, size_t length);
  static int onMessageComplete(http_parser* parser);
  static const http_parser_settings kParserSettings;

  // Reading.
  void handleInput();
  // Plain TCP: reads what the socket has into the input (see read_event_). False at end of
  // stream or on an error, which it has dealt with.
  bool readSocket();
  // Turns reading the socket on or off: the read event (plain TCP) or the bufferevent's.
  void setReading(bool on);
  // Adds read_event_ with the current read timeout (re-adding restarts the timer).
  void addReadEvent();
  // Parses what the input holds (parseBuffered), then resumes reading if that made room.
  void parseInput();
  void parseBuffered();
  bool countHeaderBytes(size_t length);
  void commitHeader();
  void dispatchRequest();
  void stopReadingBody();
  void onParseError(http_errno error);
  void onEof();
  void onTimeout(short events);
  void enforceHeaderDeadline();
  bool admitRequest(ExchangeImpl& exchange);

  // Writing.
  void sendResponse(Response response);
  enum class Framing { kNone, kLength, kChunked, kUntilClose };
  void writeHead(int status, const Headers& headers, Framing framing, uint64_t length, bool closing,
                 std::string_view inline_body);
  bool addFile(const Response::File& file);
  void startSource(std::shared_ptr<BodySource> source, std::optional<uint64_t> length);
  void wakeSource();
  void pumpSource();
  void sendError(int status, std::string_view message, std::string_view code = "UNSUPPORTED");
  void maybeFinishResponse();
  void finishExchange();

  // Lifetime.
  void abortExchange();
  void startLingeringClose();
  void requestClose();
  void deferClose();
  void triggerWritable();
  // After anything is queued on the output: gets it written (see direct_write_).
  void scheduleWrite();
  void setCork(bool on);
  // From the write callback: writes what the socket takes now, and arms the write event for
  // the rest or disarms it. False on a write error.
  bool writeOut();
  void teardown();
  void setReadTimeout(std::chrono::milliseconds timeout);
  void detachExchange(ExchangeImpl& exchange, bool aborted);
  void logAccess(const ExchangeImpl* exchange, bool aborted);

  LoopContext& context_;
  bufferevent* bev_;
  Connection* prev_ = nullptr;  // in context_.connections
  Connection* next_ = nullptr;
  const uint64_t id_;
  const std::string peer_;
  const std::string ip_;  // peer_ without the port: the rate limiter's key
  const bool tls_;        // no sendfile: files are read into the buffer as it drains
  http_parser parser_;

  // The request being read. The strings keep their capacity from one request to the next.
  std::string method_;
  std::string url_;
  std::string field_;
  std::string value_;
  Headers headers_;
  size_t header_bytes_ = 0;
  bool in_value_ = false;
  bool header_overflow_ = false;
  bool target_overflow_ = false;
  bool headers_done_ = false;  // this request's headers are complete
  bool bad_header_ = false;    // a header name that is not an RFC 9110 token

  // The current exchange, from its headers until its response is written (or it aborts).
  std::shared_ptr<ExchangeImpl> exchange_;
  std::chrono::steady_clock::time_point started_;
  bool in_message_ = false;    // between message begin and message complete
  bool body_done_ = false;     // the whole request body has been parsed
  bool discard_body_ = false;  // stop reading: the response came early or onBody said so
  bool keep_alive_ = true;     // what the request allows
  bool http10_ = false;
  bool head_request_ = false;

  // The response being written.
  int status_ = 0;
  uint64_t body_bytes_ = 0;        // queued so far
  bool response_started_ = false;  // the head is queued
  bool response_queued_ = false;   // the head and the whole body are queued
  bool close_after_ = false;       // close once the output is written
  std::shared_ptr<BodySource> source_;
  std::optional<uint64_t> source_remaining_;
  bool source_chunked_ = false;
  bool source_waiting_ = false;  // kWait: nothing to pull until wake()
  bool source_failed_ = false;
  evbuffer* scratch_ = nullptr;  // a chunk being framed; made on first use
  bool pumping_ = false;
  bool pump_again_ = false;

  // Lifetime.
  int busy_ = 0;                  // nesting depth of callbacks into this connection
  bool close_requested_ = false;  // teardown when busy_ drops to zero
  bool broken_ = false;           // close from the next write callback (see deferClose)
  bool peer_eof_ = false;         // the client half-closed after a complete request
  bool lingering_ = false;        // our side is shut; discarding input until the client closes
  uint64_t linger_bytes_ = 0;
  std::chrono::steady_clock::time_point linger_deadline_{};
  std::chrono::milliseconds read_timeout_{-1};

  // Writing (plain TCP; TLS leaves it all to its bufferevent). The write event stays off while
  // the output is empty: a response is written from a deferred callback in the loop turn that
  // queued it, and only what the socket would not take arms the event. A bufferevent with
  // EV_WRITE always on arms and disarms the event around every response: two epoll_ctl calls
  // per request.
  bool direct_write_ = false;
  // Reading (plain TCP): our own persistent read event, with the read timeout on it, reading
  // into the bufferevent's input. The bufferevent's reader asks FIONREAD before each read: one
  // ioctl per request more than needed. TLS reads through its bufferevent.
  event* read_event_ = nullptr;
  bool reading_ = false;          // read_event_ is added
  bool input_full_ = false;       // reading stopped at kMaxInput until parsing makes room
  bool write_armed_ = false;      // EV_WRITE is on: libevent writes the rest
  bool write_scheduled_ = false;  // a deferred write callback is on its way
  bool corked_ = false;           // TCP_CORK is on for a big file body
};

// The Exchange handed to the Service: the request, its handler, and a way back to the
// connection while it lives.
class ExchangeImpl final : public Exchange {
 public:
  ExchangeImpl(Connection* connection, Loop& loop) : connection_(connection), loop_(loop) {}

  const Request& request() const override { return request_; }
  void respond(Response response) override;
  bool responded() const override { return responded_; }
  bool alive() const override { return connection_ != nullptr; }
  Loop& loop() override { return loop_; }
  void addLogField(std::string field) override;
  RequestNote& note() override { return note_; }

 private:
  friend class Connection;

  Connection* connection_;  // null once the exchange is finished or the client has gone
  Loop& loop_;
  Request request_;
  std::unique_ptr<Handler> handler_;
  std::string log_fields_;  // each field preceded by a space
  RequestNote note_;
  bool responded_ = false;
};

}  // namespace regcache::proxy::http
