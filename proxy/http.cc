// The HTTP/1.1 server's public pieces: headers, requests, reason phrases, and the Server that
// binds the port and runs one accepting loop per thread. Connections live in
// proxy/http_connection.cc.
#include "proxy/http.h"

#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "proxy/http_connection.h"
#include "proxy/rate_limit.h"
#include "proxy/tls.h"

namespace regcache::proxy::http {

namespace {

bool sameNameIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]);
    unsigned char y = static_cast<unsigned char>(b[i]);
    if (x != y && std::tolower(x) != std::tolower(y)) {
      return false;
    }
  }
  return true;
}

int hexValue(char ch) {
  if (ch >= '0' && ch <= '9') {
    return ch - '0';
  }
  if (ch >= 'a' && ch <= 'f') {
    return ch - 'a' + 10;
  }
  if (ch >= 'A' && ch <= 'F') {
    return ch - 'A' + 10;
  }
  return -1;
}

// %XX decoding. '+' stays '+': registry clients percent-encode, and digests never hold
// spaces.
std::string percentDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size()) {
      int high = hexValue(text[i + 1]);
      int low = hexValue(text[i + 2]);
      if (high >= 0 && low >= 0) {
        out += static_cast<char>(high * 16 + low);
        i += 2;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

}  // namespace

// =============================================================================================
// Headers and Request

const std::string* Headers::get(std::string_view name) const {
  for (const Header& header : list_) {
    if (sameNameIgnoreCase(header.name, name)) {
      return &header.value;
    }
  }
  return nullptr;
}

void Headers::add(std::string name, std::string value) {
  list_.push_back(Header{std::move(name), std::move(value)});
}

void Headers::set(std::string name, std::string value) {
  std::erase_if(list_, [&](const Header& header) { return sameNameIgnoreCase(header.name, name); });
  add(std::move(name), std::move(value));
}

std::optional<std::string> Request::queryParam(std::string_view name) const {
  std::string_view rest = query;
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string_view key = pair.substr(0, eq);
    if (percentDecode(key) == name) {
      return eq == std::string_view::npos ? std::string() : percentDecode(pair.substr(eq + 1));
    }
  }
  return std::nullopt;
}

// The path is decoded one segment at a time, so an encoded '/' cannot hide a "..": the router
// refuses encoded slashes in names anyway, and here "..%2f" is simply not a ".." segment.
Status checkTarget(std::string_view target) {
  for (char ch : target) {
    auto byte = static_cast<unsigned char>(ch);
    if (byte <= 0x20 || byte == 0x7f) {
      return invalidArgument("request target holds a control character or space");
    }
  }
  // Absolute-form (a proxy-style request) must name a plausible host before its path.
  if (!target.starts_with('/')) {
    size_t scheme = target.starts_with("http://") ? 7 : target.starts_with("https://") ? 8 : 0;
    size_t path_at = std::min(target.find_first_of("/?", scheme), target.size());
    std::string_view authority = target.substr(scheme, path_at - scheme);
    bool bracketed = authority.starts_with('[');
    if (scheme == 0 || authority.empty() ||
        bracketed != (authority.find(']') != std::string_view::npos) ||
        authority.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "0123456789.-_:[]") != std::string_view::npos) {
      return invalidArgument("request target is neither a path nor an absolute URL");
    }
    target.remove_prefix(path_at);
  }
  std::string_view path = target.substr(0, target.find('?'));
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    std::string_view segment = path.substr(start, slash == path.npos ? path.npos : slash - start);
    // Decoding allocates: only segments that hold an escape pay for it.
    std::string decoded;
    if (segment.find('%') != segment.npos) {
      decoded = percentDecode(segment);
      segment = decoded;
    }
    if (segment == "." || segment == "..") {
      return invalidArgument("request target holds a \".\" or \"..\" path segment");
    }
    if (segment.find('\\') != segment.npos || segment.find('\0') != segment.npos) {
      return invalidArgument("request target holds a backslash or NUL");
    }
    if (slash == path.npos) {
      break;
    }
    start = slash + 1;
  }
  return Status::ok();
}

std::string_view reasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Range Not Satisfiable";
    case 417:
      return "Expectation Failed";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Unknown";
  }
}

// =============================================================================================
// Server

namespace {

// How long accepting pauses after accept() fails (out of file descriptors, say), so the
// listener does not spin on a socket that stays readable.
constexpr timeval kAcceptRetry{0, 100 * 1000};

// Makes a listening socket. With `reuse_port`, several sockets share the port and the kernel
// spreads incoming connections across them.
Result<int> listenOn(const sockaddr* addr, socklen_t addr_len, bool reuse_port) {
  int fd = ::socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return ioError(std::string("socket: ") + std::strerror(errno));
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    int err = errno;
    ::close(fd);
    return ioError(std::string("SO_REUSEPORT: ") + std::strerror(err));
  }
  if (::bind(fd, addr, addr_len) != 0 || ::listen(fd, SOMAXCONN) != 0) {
    int err = errno;
    ::close(fd);
    return ioError(std::string("bind: ") + std::strerror(err));
  }
  return fd;
}

uint16_t boundPort(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  }
  return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

void setPort(sockaddr_storage& addr, uint16_t port) {
  if (addr.ss_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in*>(&addr)->sin_port = htons(port);
  }
}

}  // namespace

// One loop thread: its accepting socket, its connections.
struct Worker {
  // Connections open on this loop or on their way to it. Any thread reads it; the acceptor
  // that picks this loop adds one, the connection takes it off when it closes. Declared
  // before the loop: a hand-off still queued there when the loop goes releases its count.
  std::atomic<size_t> connections{0};
  const std::vector<std::unique_ptr<Worker>>* all = nullptr;  // every worker, this one too
  Loop loop;
  LoopContext context;
  evconnlistener* listener = nullptr;  // loop thread only once running
  event* accept_retry = nullptr;
  std::thread thread;

  static void onAccept(evconnlistener* listener, evutil_socket_t fd, sockaddr* peer, int len,
                       void* arg);
  static void onAcceptError(evconnlistener* listener, void* arg);
  static void onAcceptRetry(evutil_socket_t fd, short what, void* arg);
  // The worker a new connection should go to: this one unless another has fewer open.
  Worker* leastBusy();

  // Loop thread: stops accepting and closes every connection.
  void shutdown();
};

void Worker::onAccept(evconnlistener* /*listener*/, evutil_socket_t fd, sockaddr* peer, int len,
                      void* arg) {
  auto* worker = static_cast<Worker*>(arg);
  if (worker->context.open_connections->load() >= worker->context.options->max_connections) {
    ::close(fd);  // over the limit: refuse at once rather than queue
    return;
  }
  Worker* target = worker->leastBusy();
  ++target->connections;
  if (target == worker) {
    Connection::open(worker->context, fd, peer);
    return;
  }
  // The socket moves to the other loop. Should that loop stop before it runs this, the
  // holder's destructor closes the socket.
  struct Handoff {
    int fd = -1;
    sockaddr_storage peer{};
    Worker* target = nullptr;
    Handoff() = default;
    Handoff(const Handoff&) = delete;
    Handoff& operator=(const Handoff&) = delete;
    ~Handoff() {
      if (fd >= 0) {
        ::close(fd);
        --target->connections;
      }
    }
  };
  auto handoff = std::make_shared<Handoff>();
  handoff->fd = fd;
  handoff->target = target;
  std::memcpy(&handoff->peer, peer, std::min(static_cast<size_t>(len), sizeof handoff->peer));
  target->loop.post([handoff] {
    int handed = std::exchange(handoff->fd, -1);
    Connection::open(handoff->target->context, handed,
                     reinterpret_cast<const sockaddr*>(&handoff->peer));
  });
}

// SO_REUSEPORT spreads connections over the loops by a hash of their addresses, which for a
// few dozen long-lived keep-alive connections is often lopsided (10 and 6 of 16 as often as
// not), and the fuller loop's clients then wait on it while the other idles. So the loop that
// accepts keeps a connection only while no other loop has fewer; else it hands the socket
// over. Balancing by count suits a mirror's clients, whose connections carry alike loads; it
// costs one post per connection moved, nothing per request.
Worker* Worker::leastBusy() {
  Worker* best = this;
  size_t fewest = connections.load(std::memory_order_relaxed);
  for (const auto& other : *all) {
    size_t n = other->connections.load(std::memory_order_relaxed);
    if (n < fewest) {
      best = other.get();
      fewest = n;
    }
  }
  return best;
}

void Worker::onAcceptError(evconnlistener* listener, void* arg) {
  auto* worker = static_cast<Worker*>(arg);
  spdlog::warn("http.accept_failed error=\"{}\"", std::strerror(errno));
  evconnlistener_disable(listener);
  evtimer_add(worker->accept_retry, &kAcceptRetry);
}

void Worker::onAcceptRetry(evutil_socket_t /*fd*/, short /*what*/, void* arg) {
  auto* worker = static_cast<Worker*>(arg);
  if (worker->listener != nullptr) {
    evconnlistener_enable(worker->listener);
  }
}

void Worker::shutdown() {
  if (listener != nullptr) {
    evconnlistener_free(listener);
    listener = nullptr;
  }
  if (accept_retry != nullptr) {
    event_free(accept_retry);
    accept_retry = nullptr;
  }
  while (context.connections != nullptr) {
    context.connections->closeNow();
  }
}

struct Server::Impl {
  ServerOptions options;
  Service& service;
  std::atomic<size_t> open_connections{0};
  std::unique_ptr<TlsSlot> tls;               // null: plain HTTP
  std::unique_ptr<RateLimiter> rate_limiter;  // null: no limit
  std::mutex reload_mu;                       // one reloadTls() at a time
  std::vector<std::unique_ptr<Worker>> workers;
  uint16_t port = 0;

  std::mutex mu;
  std::condition_variable stopped_cv;
  bool started = false;   // guarded by mu
  bool stopping = false;  // guarded by mu
  std::mutex join_mu;     // serialises joining the threads

  Impl(ServerOptions o, Service& s) : options(std::move(o)), service(s) {}
  Status setUpLimitsAndTls();
  Status bindAll();
  void joinAll();
  bool onLoopThread() const;
};

Status Server::Impl::setUpLimitsAndTls() {
  if (options.rate_per_second > 0) {
    rate_limiter = std::make_unique<RateLimiter>(options.rate_per_second, options.rate_burst);
  }
  if (options.tls_cert.empty() && options.tls_key.empty()) {
    return Status::ok();
  }
  auto context = TlsContext::load(options.tls_cert, options.tls_key);
  if (!context) {
    return context.status();
  }
  spdlog::info("http.tls cert={} serial={}", options.tls_cert, (*context)->serial());
  tls = std::make_unique<TlsSlot>();
  tls->set(std::move(*context));
  return Status::ok();
}

Status Server::Impl::bindAll() {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  std::string host = options.host;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo* found = nullptr;
  std::string port_text = std::to_string(options.port);
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    return ioError("cannot resolve listen host " + options.host + ": " + gai_strerror(rc));
  }
  sockaddr_storage addr{};
  socklen_t addr_len = found->ai_addrlen;
  std::memcpy(&addr, found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);

  // One socket per loop on the same port. The first one, bound to port 0, learns the port
  // the others then share.
  bool reuse_port = workers.size() > 1;
  for (auto& worker : workers) {
    Result<int> fd = listenOn(reinterpret_cast<sockaddr*>(&addr), addr_len, reuse_port);
    if (!fd.isOk()) {
      return ioError("cannot listen on " + options.host + ":" + std::to_string(options.port) +
                     ": " + fd.status().message());
    }
    if (port == 0) {
      port = boundPort(*fd);
      setPort(addr, port);
    }
    worker->listener = evconnlistener_new(worker->loop.base(), &Worker::onAccept, worker.get(),
                                          LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, *fd);
    if (worker->listener == nullptr) {
      ::close(*fd);
      return ioError("cannot make a listener");
    }
    evconnlistener_set_error_cb(worker->listener, &Worker::onAcceptError);
    worker->accept_retry = evtimer_new(worker->loop.base(), &Worker::onAcceptRetry, worker.get());
  }
  return Status::ok();
}

void Server::Impl::joinAll() {
  std::lock_guard lock(join_mu);
  for (auto& worker : workers) {
    if (worker->thread.joinable()) {
      worker->thread.join();
    }
  }
}

bool Server::Impl::onLoopThread() const {
  for (const auto& worker : workers) {
    if (worker->loop.inLoopThread()) {
      return true;
    }
  }
  return false;
}

Server::Server(ServerOptions options, Service& service)
    : impl_(std::make_unique<Impl>(std::move(options), service)) {}

Server::~Server() {
  stop();
  impl_->joinAll();
  for (auto& worker : impl_->workers) {
    worker->shutdown();  // when start() failed half-way, nothing ran the loop's shutdown
  }
}

Status Server::start() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->started || impl_->stopping) {
      return Status(Code::kInternal, "server already started");
    }
    impl_->started = true;
  }
  size_t threads = impl_->options.threads;
  if (threads == 0) {
    threads = std::max(1u, std::thread::hardware_concurrency());
  }
  if (Status status = impl_->setUpLimitsAndTls(); !status) {
    return status;
  }
  // http-parser's own header limit is process-wide; keep it above ours so ours decides.
  http_parser_set_max_header_size(
      static_cast<uint32_t>(std::max<size_t>(80 * 1024, impl_->options.max_header_bytes + 1024)));

  spdlog::logger* access_log = spdlog::get("access").get();
  if (access_log == nullptr) {
    access_log = spdlog::default_logger_raw();
  }
  for (size_t i = 0; i < threads; ++i) {
    auto worker = std::make_unique<Worker>();
    worker->context.options = &impl_->options;
    worker->context.service = &impl_->service;
    worker->context.loop = &worker->loop;
    worker->context.access_log = access_log;
    worker->context.open_connections = &impl_->open_connections;
    worker->context.loop_connections = &worker->connections;
    worker->all = &impl_->workers;
    worker->context.tls = impl_->tls.get();
    worker->context.rate_limiter = impl_->rate_limiter.get();
    impl_->workers.push_back(std::move(worker));
  }
  if (Status status = impl_->bindAll(); !status.isOk()) {
    return status;
  }

  for (auto& worker : impl_->workers) {
    worker->thread = std::thread([w = worker.get()] { w->loop.run(); });
  }
  spdlog::info("http.listening host={} port={} threads={}", impl_->options.host, impl_->port,
               threads);
  return Status::ok();
}

uint16_t Server::port() const { return impl_->port; }

void Server::stopAccepting() {
  std::lock_guard lock(impl_->mu);
  if (impl_->stopping) return;
  for (auto& worker : impl_->workers) {
    worker->loop.post([w = worker.get()] {
      if (w->listener != nullptr) {
        evconnlistener_free(w->listener);
        w->listener = nullptr;
      }
    });
  }
}

void Server::stop() {
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->stopping) {
      impl_->stopping = true;
      for (auto& worker : impl_->workers) {
        worker->loop.post([w = worker.get()] {
          w->shutdown();
          // Stop on the next iteration: libevent closes freed bufferevents' sockets in
          // finalizers that run after this callback.
          static constexpr timeval kNow{0, 0};
          event_base_once(
              w->loop.base(), -1, EV_TIMEOUT,
              [](evutil_socket_t, short, void* arg) { static_cast<Loop*>(arg)->stop(); }, &w->loop,
              &kNow);
        });
      }
    }
  }
  impl_->stopped_cv.notify_all();
  // From a loop thread (a signal handler's callback), the threads are joined by wait() or
  // the destructor instead: a thread cannot join itself.
  if (!impl_->onLoopThread()) {
    impl_->joinAll();
  }
}

void Server::wait() {
  {
    std::unique_lock lock(impl_->mu);
    impl_->stopped_cv.wait(lock, [this] { return impl_->stopping; });
  }
  if (!impl_->onLoopThread()) {
    impl_->joinAll();
  }
}

size_t Server::connections() const { return impl_->open_connections.load(); }

Status Server::reloadTls() {
  std::lock_guard lock(impl_->reload_mu);
  if (impl_->tls == nullptr) {
    return invalidArgument("TLS is not configured");
  }
  auto context = TlsContext::load(impl_->options.tls_cert, impl_->options.tls_key);
  if (!context) {
    return context.status();
  }
  spdlog::info("http.tls_reloaded cert={} serial={}", impl_->options.tls_cert,
               (*context)->serial());
  impl_->tls->set(std::move(*context));
  return Status::ok();
}

std::string Server::tlsSerial() const {
  if (impl_->tls == nullptr) {
    return "";
  }
  return impl_->tls->get()->serial();
}

std::vector<Loop*> Server::loops() const {
  std::vector<Loop*> loops;
  for (const auto& worker : impl_->workers) {
    loops.push_back(&worker->loop);
  }
  return loops;
}

}  // namespace regcache::proxy::http
