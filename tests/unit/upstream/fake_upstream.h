// Test fixtures for the upstream client: a fake registry on loopback (the project's own HTTP
// server answering from a lambda, remembering every request it saw), and a driver that runs
// a libevent loop on the test thread until a condition holds or a deadline passes.
#pragma once

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/http.h"
#include "upstream/client.h"

namespace regcache::upstream::testing {

namespace http = regcache::proxy::http;

// A request as the fake upstream saw it.
struct Seen {
  std::string method;
  std::string path;
  std::string query;
  std::map<std::string, std::string> headers;  // names lowercased
  std::string peer;                            // "ip:port": the same port means the same connection
  std::chrono::steady_clock::time_point at;
  proxy::Loop* loop = nullptr;  // the server loop that answers; valid while the server runs

  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
  bool has(const std::string& name) const { return headers.count(name) != 0; }
};

// A registry on `host`, port 0, one loop thread. `route` runs on that thread and answers each
// request; `base_url` is this server's own "http://host:port".
class FakeUpstream {
 public:
  using Route = std::function<http::Response(const Seen& request, const std::string& base_url)>;

  explicit FakeUpstream(Route route, std::string host = "127.0.0.1")
      : service_(this),
        route_(std::move(route)),
        host_(std::move(host)),
        server_(options(host_), service_) {
    started_ = server_.start().isOk();
    base_url_ = "http://" + host_ + ":" + std::to_string(server_.port());
  }
  ~FakeUpstream() { server_.stop(); }

  bool started() const { return started_; }
  const std::string& url() const { return base_url_; }
  uint16_t port() const { return server_.port(); }

  std::vector<Seen> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }
  // How many requests had this path.
  size_t count(std::string_view path) const {
    std::lock_guard<std::mutex> lock(mu_);
    size_t n = 0;
    for (const Seen& s : seen_) {
      n += s.path == path ? 1 : 0;
    }
    return n;
  }

 private:
  class Service : public http::Service {
   public:
    explicit Service(FakeUpstream* owner) : owner_(owner) {}
    std::unique_ptr<http::Handler> onRequest(std::shared_ptr<http::Exchange> exchange) override {
      owner_->onRequest(*exchange);
      return nullptr;
    }

   private:
    FakeUpstream* owner_;
  };

  static http::ServerOptions options(const std::string& host) {
    http::ServerOptions o;
    o.host = host;
    o.port = 0;
    o.threads = 1;
    return o;
  }

  void onRequest(http::Exchange& exchange) {
    const http::Request& request = exchange.request();
    Seen seen;
    seen.method = request.method;
    seen.path = request.path;
    seen.query = request.query;
    seen.peer = request.peer;
    seen.at = std::chrono::steady_clock::now();
    seen.loop = &exchange.loop();
    for (const http::Header& h : request.headers.all()) {
      std::string name = h.name;
      for (char& ch : name) {
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      }
      seen.headers[name] = h.value;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      seen_.push_back(seen);
    }
    exchange.respond(route_(seen, base_url_));
  }

  Service service_;
  Route route_;
  std::string host_;
  http::Server server_;
  bool started_ = false;
  std::string base_url_;
  mutable std::mutex mu_;
  std::vector<Seen> seen_;  // guarded by mu_
};

inline http::Response respond(int status, std::string body = "",
                              std::vector<std::pair<std::string, std::string>> headers = {}) {
  http::Response response;
  response.status = status;
  for (auto& [name, value] : headers) {
    response.headers.add(name, value);
  }
  response.body = std::move(body);
  return response;
}

// A libevent loop on the test thread. Destroy every Client on it before it.
class TestLoop {
 public:
  TestLoop() : base_(event_base_new()) {}
  ~TestLoop() { event_base_free(base_); }
  TestLoop(const TestLoop&) = delete;
  TestLoop& operator=(const TestLoop&) = delete;

  event_base* base() const { return base_; }

  // Runs the loop until `done()` holds or `limit` passes; returns done(). A 10 ms tick keeps
  // each turn short so that the condition is checked often.
  bool runUntil(const std::function<bool()>& done,
                std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    event* tick = event_new(
        base_, -1, EV_PERSIST, [](evutil_socket_t, short, void*) {}, nullptr);
    timeval tv{0, 10'000};
    event_add(tick, &tv);
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      event_base_loop(base_, EVLOOP_ONCE);
    }
    event_free(tick);
    return done();
  }

  // Runs the loop for `span`, to show that nothing more happens.
  void runFor(std::chrono::milliseconds span) {
    runUntil([] { return false; }, span);
  }

 private:
  event_base* base_;
};

// What a transfer reported.
struct Outcome {
  int heads = 0;
  int dones = 0;
  ResponseHead head;
  std::string body;
  std::optional<Status> status;

  bool finished() const { return dones > 0; }

  Callbacks callbacks() {
    Callbacks c;
    c.on_head = [this](const ResponseHead& h) {
      ++heads;
      head = h;
    };
    c.on_data = [this](std::string_view data) {
      body.append(data);
      return true;
    };
    c.on_done = [this](Status s) {
      ++dones;
      status = std::move(s);
    };
    return c;
  }
};

// A loopback port nothing listens on (bound, then closed).
inline uint16_t unusedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Options for a fake upstream: fast backoff, short timeouts.
inline UpstreamOptions fastOptions(const std::string& base_url) {
  UpstreamOptions o;
  o.name = "fake";
  o.base_url = base_url;
  o.connect_timeout = std::chrono::milliseconds(2000);
  o.request_timeout = std::chrono::milliseconds(5000);
  o.stall_timeout = std::chrono::milliseconds(5000);
  o.max_attempts = 3;
  o.backoff_base = std::chrono::milliseconds(5);
  return o;
}

inline Request get(std::string path, std::string repository = "") {
  Request r;
  r.path = std::move(path);
  r.repository = std::move(repository);
  return r;
}

}  // namespace regcache::upstream::testing
