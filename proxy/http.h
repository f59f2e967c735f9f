// The HTTP/1.1 server: requests parsed as they stream in (http-parser), bodies handed to the
// handler piece by piece, responses written in request order on each connection.
//
// Threading: the Server runs one Loop per thread, each accepting connections on the same port.
// Every callback into the Service and its Handlers runs on the loop thread that owns the
// connection; a Handler may finish its response later from that same loop (see Exchange).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/status.h"
#include "proxy/loop.h"

struct evbuffer;

namespace regcache::proxy::http {

struct Header {
  std::string name;
  std::string value;
};

// Header list that keeps order; lookups ignore the case of names.
class Headers {
 public:
  // First value of `name`, or nullptr.
  const std::string* get(std::string_view name) const;
  bool has(std::string_view name) const { return get(name) != nullptr; }
  void add(std::string name, std::string value);
  // Replaces every value of `name` with one.
  void set(std::string name, std::string value);
  const std::vector<Header>& all() const { return list_; }

 private:
  std::vector<Header> list_;
};

struct Request {
  std::string method;  // "GET", "HEAD", ... as sent (http-parser validates the token)
  std::string target;  // the raw request-target
  std::string path;    // target up to '?', still percent-encoded
  std::string query;   // after '?', without it; raw
  Headers headers;
  std::optional<uint64_t> content_length;
  bool chunked = false;  // Transfer-Encoding: chunked
  uint64_t id = 0;       // process-unique request id, also in the access log
  std::string peer;      // client address "ip:port"

  bool isHead() const { return method == "HEAD"; }
  // The percent-decoded value of query parameter `name`, or nullopt.
  std::optional<std::string> queryParam(std::string_view name) const;
};

// A response body produced over time (a blob being filled from upstream). Lives on the loop
// thread of its exchange.
class BodySource {
 public:
  virtual ~BodySource() = default;
  enum class Pull { kMore, kWait, kDone, kFailed };
  // Appends up to `max_bytes` to `out`. kMore: call again when the client drains; kWait: no
  // data now, the source calls the `wake` it was given by start() when there is; kDone: the
  // body is complete; kFailed: abort the transfer (the connection is closed, so the client
  // sees a truncated body, never a wrong one).
  virtual Pull pull(evbuffer* out, size_t max_bytes) = 0;
  // Called once before the first pull; `wake` is valid until the source is destroyed and
  // must be called on the loop thread.
  virtual void start(std::function<void()> wake) { (void)wake; }
};

struct Response {
  int status = 200;
  Headers headers;  // Content-Length, Date and Connection are set by the server

  // The body is exactly one of these, or none:
  std::string body;  // in memory
  struct File {
    int fd = -1;  // owned by the server once the response is sent (closed after)
    uint64_t offset = 0;
    uint64_t length = 0;
  };
  std::optional<File> file;  // sent with sendfile
  std::shared_ptr<BodySource> source;
  // With `source`, the Content-Length to send when known; otherwise chunked encoding is used.
  std::optional<uint64_t> source_length;

  // For HEAD: the Content-Length to announce. The server never sends a body for HEAD, and
  // uses body/file/source_length for Content-Length when this is unset.
  std::optional<uint64_t> head_length;
};

// What a service noted about a request while handling it, handed back in its Completion so that
// Service::onFinished need not work it out again from the request.
struct RequestNote {
  int kind = -1;       // the service's own classification of the request; -1: none noted
  std::string detail;  // anything else the service wants back
};

class Exchange;

// The server's handle on one request. Shared so that asynchronous work can keep a weak
// reference and find out whether the client is still there.
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  virtual ~Exchange() = default;
  virtual const Request& request() const = 0;
  // Sends the response. At most once; later calls are ignored. When called before the whole
  // request body arrived, the server closes the connection after the response (the rest of
  // the body is not read). Loop thread only. A Response::File's fd is the server's from this
  // call on, even when the call is ignored.
  virtual void respond(Response response) = 0;
  virtual bool responded() const = 0;
  // False once the client has gone.
  virtual bool alive() const = 0;
  virtual Loop& loop() = 0;
  // Extra `key=value` fields for this request's access log line (the cache outcome, say).
  virtual void addLogField(std::string field) = 0;
  // The service's note on this request, given back to onFinished.
  virtual RequestNote& note() = 0;
};

// Receives one request's body and finishes it. Created by Service::onRequest.
class Handler {
 public:
  virtual ~Handler() = default;
  // A piece of the body (already de-chunked). Return false to stop reading the body: the
  // handler must then have responded (or respond soon); the connection closes afterwards.
  virtual bool onBody(std::string_view data) {
    (void)data;
    return true;
  }
  // The body is complete (called immediately for requests without a body). The handler must
  // make sure the exchange gets a response, now or later.
  virtual void onEnd() = 0;
  // The client went away before the response was finished. No respond() will be sent.
  virtual void onAbort() {}
};

// How one request ended, for the service's metrics.
struct Completion {
  int status = 0;               // 0 when no response was started
  uint64_t bytes = 0;           // body bytes written to the client
  double seconds = 0;           // from the first byte of the request to the last of the response
  bool aborted = false;         // the client went away (or the transfer failed) before the end
  std::string_view log_fields;  // what the handler added with addLogField
  const RequestNote* note = nullptr;  // the exchange's note; nullptr without an exchange
};

// The application. Must be thread-safe: every loop calls it.
class Service {
 public:
  virtual ~Service() = default;
  // Called once per request when it is over (answered, or aborted), on its loop. `request` is
  // nullptr for a request that never got as far as its headers.
  virtual void onFinished(const Request* request, const Completion& completion) {
    (void)request;
    (void)completion;
  }
  // Called when a request's headers are complete. May respond at once (then returns nullptr
  // or a handler that ignores the body). A handler returned for a request with
  // `Expect: 100-continue` makes the server send `100 Continue` unless it already responded.
  virtual std::unique_ptr<Handler> onRequest(std::shared_ptr<Exchange> exchange) = 0;
};

struct ServerOptions {
  std::string host = "0.0.0.0";
  uint16_t port = 5000;                    // 0: any free port; Server::port() tells which
  size_t threads = 0;                      // 0: one per core
  size_t max_header_bytes = 64 * 1024;     // request line and headers; over it: 431
  size_t max_target_bytes = 8 * 1024;      // the request-target alone; over it: 414
  std::chrono::seconds idle_timeout{120};  // keep-alive connection with no request
  // Headers must be complete this long after the request's first byte (a total deadline, so
  // a client trickling bytes cannot hold a connection); a body is cut when no byte of it
  // arrives for this long.
  std::chrono::seconds request_timeout{30};
  std::chrono::seconds write_timeout{300};  // client not reading our response
  size_t max_connections = 10000;           // over it, new connections are closed at once
  // Access log lines as one JSON object each (log_format = "json") instead of key=value text.
  bool access_log_json = false;

  // TLS: PEM certificate chain and key files; both empty serves plain HTTP.
  std::string tls_cert;
  std::string tls_key;

  // Per client IP: requests per second refilling a bucket of `rate_burst`; 0 is no limit.
  // Over it: 429 TOOMANYREQUESTS with Retry-After.
  double rate_per_second = 0;
  double rate_burst = 100;
};

class Server {
 public:
  Server(ServerOptions options, Service& service);
  ~Server();

  // Binds and starts the loop threads. kIo with the reason when the address cannot be bound.
  Status start();
  uint16_t port() const;
  // Stops accepting, closes connections, joins the threads. Idempotent.
  void stop();
  // Stops accepting new connections; open ones go on being served (a graceful stop's first
  // step). Thread-safe; idempotent.
  void stopAccepting();
  // Blocks until stop() is called from another thread or a signal handler's loop callback.
  void wait();

  // The loops, to post work or run timers on.
  std::vector<Loop*> loops() const;
  // Client connections open now, across every loop.
  size_t connections() const;

  // Loads the TLS certificate and key files again into a new context that new connections
  // use from then on; connections already open keep the context they started with. On error
  // (kInvalidArgument naming the file) the old context stays in use. kInvalidArgument too
  // when the server was started without TLS. Thread-safe; reads files, so not on a loop.
  Status reloadTls();
  // The serial number (hex) of the certificate new connections are offered; empty without
  // TLS. Thread-safe.
  std::string tlsSerial() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Builds the status line reason phrase ("OK", "Not Found", ...).
std::string_view reasonPhrase(int status);

// Checks a request-target before any handler sees it: kInvalidArgument when it holds a NUL,
// a space or control character, a backslash, or a "." or ".." path segment, raw or
// percent-encoded. (Length is checked while parsing: see ServerOptions::max_target_bytes.)
Status checkTarget(std::string_view target);

}  // namespace regcache::proxy::http
