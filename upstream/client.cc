// The upstream client: libcurl's multi interface on a libevent loop, and the state machine that
// takes one Request through registry auth, retries and redirects to one delivered response.
#include "upstream/client.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <random>

#include "proxy/loop.h"
#include "upstream/auth.h"
#include "upstream/client_impl.h"

namespace regcache::upstream {

namespace {

constexpr long kMaxRedirects = 5;
// libcurl's receive buffer, per transfer. Not larger for blobs: a fill's writes are sized by
// its own queue, and when a fill pauses the transfer libcurl reads one more buffer and keeps a
// copy of it in fresh heap until resume (at 1 MiB that was a page fault per 20 KiB received).
constexpr long kReceiveBufferSize = 128 * 1024;
// A 401's body is kept while its token is fetched, to be delivered if that fails.
constexpr size_t kMaxSavedBody = 64 * 1024;
constexpr std::chrono::milliseconds kMaxBackoff{30'000};

void initCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

bool retryableStatus(long status) {
  return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

// Failures worth another attempt: the network or the server, not our request or the
// certificate.
bool retryableCode(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY:
      return true;
    default:
      return false;
  }
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r' ||
                           text.back() == '\n')) {
    text.remove_suffix(1);
  }
  return text;
}

// Retry-After: delta-seconds or an HTTP-date. nullopt when neither.
std::optional<std::chrono::milliseconds> parseRetryAfter(const std::string& value) {
  std::string_view text = trim(value);
  if (text.empty()) {
    return std::nullopt;
  }
  if (std::all_of(text.begin(), text.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
    if (text.size() > 9) {
      return std::chrono::milliseconds::max();
    }
    return std::chrono::seconds(std::stol(std::string(text)));
  }
  time_t when = curl_getdate(std::string(text).c_str(), nullptr);
  if (when == -1) {
    return std::nullopt;
  }
  return std::chrono::seconds(std::max<time_t>(0, when - std::time(nullptr)));
}

std::string_view withoutQuery(std::string_view url) { return url.substr(0, url.find('?')); }

}  // namespace

// =============================================================================================
// ResponseHead

const std::string* ResponseHead::header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) {
      return &value;
    }
  }
  return nullptr;
}

std::optional<uint64_t> ResponseHead::contentLength() const {
  const std::string* value = header("content-length");
  if (value == nullptr || value->empty() || value->size() > 19 ||
      !std::all_of(value->begin(), value->end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
    return std::nullopt;
  }
  return std::stoull(*value);
}

// =============================================================================================
// Client::Impl: lifetime and re-entrancy

Client::Impl::Transfer::~Transfer() {
  if (timer != nullptr) {
    event_free(timer);
  }
}

Client::Impl::Impl(event_base* base, std::shared_ptr<TokenCache> tokens)
    : base_(base), tokens_(std::move(tokens)) {
  initCurlOnce();
  if (tokens_ == nullptr) {
    tokens_ = std::make_shared<TokenCache>();
  }
  timer_ = evtimer_new(base_, &Impl::onTimer, this);
  multi_ = curl_multi_init();
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &Impl::onSocketChange);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &Impl::onTimerChange);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
}

Client::Impl::~Impl() {
  for (auto& [id, t] : transfers_) {
    t->done = true;
    graveyard_.push_back(std::move(t));
  }
  transfers_.clear();
  reap();
  curl_multi_cleanup(multi_);
  for (auto& [fd, ev] : sockets_) {
    event_free(ev);
  }
  event_free(timer_);
}

void Client::Impl::unwound() {
  if (orphaned_) {
    delete this;
    return;
  }
  reap();
}

void Client::Impl::reap() {
  while (!graveyard_.empty()) {
    std::vector<std::unique_ptr<Transfer>> dead = std::move(graveyard_);
    graveyard_.clear();
    for (auto& t : dead) {
      detachEasy(t.get());
    }
  }
}

// The Client was destroyed inside one of our callbacks: stop everything now, free later.
void Client::Impl::orphan() {
  orphaned_ = true;
  std::vector<Transfer*> live;
  for (auto& [id, t] : transfers_) {
    live.push_back(t.get());
  }
  for (Transfer* t : live) {
    retire(t);
  }
}

// =============================================================================================
// The event loop glue: libcurl says which sockets and which timeout to watch, libevent tells
// libcurl when they fire. libcurl never runs inside its own callbacks here.

int Client::Impl::onSocketChange(CURL*, curl_socket_t fd, int what, void* arg, void*) {
  Impl* impl = static_cast<Impl*>(arg);
  auto it = impl->sockets_.find(fd);
  if (what == CURL_POLL_REMOVE) {
    if (it != impl->sockets_.end()) {
      event_free(it->second);
      impl->sockets_.erase(it);
    }
    return 0;
  }

  short events = EV_PERSIST;
  events |= (what & CURL_POLL_IN) ? EV_READ : 0;
  events |= (what & CURL_POLL_OUT) ? EV_WRITE : 0;
  if (it == impl->sockets_.end()) {
    it =
        impl->sockets_.emplace(fd, event_new(impl->base_, fd, events, &Impl::onSocket, impl)).first;
  } else {
    event_del(it->second);
    event_assign(it->second, impl->base_, fd, events, &Impl::onSocket, impl);
  }
  event_add(it->second, nullptr);
  return 0;
}

int Client::Impl::onTimerChange(CURLM*, long timeout_ms, void* arg) {
  Impl* impl = static_cast<Impl*>(arg);
  if (timeout_ms < 0) {
    evtimer_del(impl->timer_);
    return 0;
  }
  timeval tv = proxy::toTimeval(std::chrono::milliseconds(timeout_ms));
  evtimer_add(impl->timer_, &tv);
  return 0;
}

void Client::Impl::onSocket(evutil_socket_t fd, short events, void* arg) {
  Impl* impl = static_cast<Impl*>(arg);
  Scope scope(impl);
  int action = 0;
  action |= (events & EV_READ) ? CURL_CSELECT_IN : 0;
  action |= (events & EV_WRITE) ? CURL_CSELECT_OUT : 0;
  int running = 0;
  curl_multi_socket_action(impl->multi_, fd, action, &running);
  impl->checkDone();
}

void Client::Impl::onTimer(evutil_socket_t, short, void* arg) {
  Impl* impl = static_cast<Impl*>(arg);
  Scope scope(impl);
  int running = 0;
  curl_multi_socket_action(impl->multi_, CURL_SOCKET_TIMEOUT, 0, &running);
  impl->checkDone();
}

void Client::Impl::onTransferTimer(evutil_socket_t, short, void* arg) {
  Transfer* t = static_cast<Transfer*>(arg);
  Impl* impl = t->impl;
  Scope scope(impl);
  if (t->done) {
    return;
  }
  if (t->easy != nullptr) {
    impl->checkStall(t);
    return;
  }
  if (t->failure) {
    impl->finish(t, std::move(*t->failure));
    return;
  }
  impl->startAttempt(t, true);
}

void Client::Impl::checkDone() {
  int pending = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &pending)) {
    if (msg->msg != CURLMSG_DONE) {
      continue;
    }
    CURLcode code = msg->data.result;
    Transfer* t = nullptr;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &t);
    if (t != nullptr && !t->done) {
      onTransferDone(t, code);
    }
  }
}

// =============================================================================================
// Attempts

Client::Impl::Transfer* Client::Impl::newTransfer(const UpstreamOptions& upstream, Request request,
                                                  Callbacks callbacks, bool internal) {
  auto owned = std::make_unique<Transfer>();
  Transfer* t = owned.get();
  t->id = next_id_++;
  t->impl = this;
  t->upstream = &upstream;
  t->request = std::move(request);
  t->callbacks = std::move(callbacks);
  t->internal = internal;
  t->started = std::chrono::steady_clock::now();
  t->timer = evtimer_new(base_, &Impl::onTransferTimer, t);
  transfers_.emplace(t->id, std::move(owned));
  if (!internal) {
    ++user_active_;
  }
  return t;
}

Client::Impl::Transfer* Client::Impl::find(TransferId id) {
  auto it = transfers_.find(id);
  return it == transfers_.end() ? nullptr : it->second.get();
}

Client::TransferId Client::Impl::start(const UpstreamOptions& upstream, Request request,
                                       Callbacks callbacks) {
  Transfer* t = newTransfer(upstream, std::move(request), std::move(callbacks), false);
  t->url = upstream.base_url + t->request.path;
  if (!t->request.repository.empty()) {
    t->token_scope = "repository:" + t->request.repository + ":pull";
    if (std::optional<std::string> token = tokens_->get(upstream.name, t->token_scope)) {
      t->bearer = std::move(*token);
    }
  }
  startAttempt(t, true);
  return t->id;
}

void Client::Impl::startAttempt(Transfer* t, bool counts) {
  if (counts) {
    ++t->attempt;
  }
  t->head = ResponseHead();
  t->decided = false;
  t->next = Next::kDeliver;
  t->body.clear();
  t->errbuf[0] = '\0';
  t->paused = false;

  CURL* easy = curl_easy_init();
  if (easy == nullptr) {
    failSoon(t, Status(Code::kInternal, "curl_easy_init failed"));
    return;
  }
  t->easy = easy;
  configure(t, easy);
  CURLMcode rc = curl_multi_add_handle(multi_, easy);
  if (rc != CURLM_OK) {
    curl_easy_cleanup(easy);
    t->easy = nullptr;
    failSoon(t, Status(Code::kInternal, curl_multi_strerror(rc)));
    return;
  }
  if (t->request.streaming) {
    t->last_progress = std::chrono::steady_clock::now();
    armTimer(t, t->upstream->stall_timeout);
  }
  spdlog::debug("upstream.request upstream={} method={} path={} attempt={} auth={}",
                t->upstream->name, t->request.method, logPath(t), t->attempt,
                !t->bearer.empty() ? "bearer" : (t->use_basic ? "basic" : "none"));
}

// One attempt's easy handle. Credentials go only where libcurl allows: custom Authorization
// headers and CURLOPT_USERNAME are both dropped on a redirect to another host, port or scheme
// (CURLOPT_UNRESTRICTED_AUTH stays 0), so a blob's CDN never sees them.
void Client::Impl::configure(Transfer* t, CURL* easy) {
  const UpstreamOptions& up = *t->upstream;
  curl_easy_setopt(easy, CURLOPT_URL, t->url.c_str());
  curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->errbuf);
  curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(easy, CURLOPT_MAXREDIRS, kMaxRedirects);
  curl_easy_setopt(easy, CURLOPT_UNRESTRICTED_AUTH, 0L);
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_USERAGENT, "regcache");
  curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, kReceiveBufferSize);
  curl_easy_setopt(easy, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(up.connect_timeout.count()));
  if (t->request.streaming) {
    long stall_s = static_cast<long>((up.stall_timeout.count() + 999) / 1000);
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, std::max(1L, stall_s));
  } else {
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(up.request_timeout.count()));
  }
  if (t->request.method == "HEAD") {
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
  }
  if (!up.http_proxy.empty()) {
    curl_easy_setopt(easy, CURLOPT_PROXY, up.http_proxy.c_str());
  }
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, up.verify_tls ? 1L : 0L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, up.verify_tls ? 2L : 0L);
  if (!up.ca_file.empty()) {
    curl_easy_setopt(easy, CURLOPT_CAINFO, up.ca_file.c_str());
  }
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &Impl::onHeader);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, t);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Impl::onBody);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);

  curl_slist* list = nullptr;
  for (const auto& [name, value] : t->request.headers) {
    // "Name;" is libcurl's spelling of a header sent with an empty value.
    std::string line = value.empty() ? name + ";" : name + ": " + value;
    list = curl_slist_append(list, line.c_str());
  }
  if (!t->bearer.empty()) {
    list = curl_slist_append(list, ("Authorization: Bearer " + t->bearer).c_str());
  }
  t->header_list = list;
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list);
  if (t->use_basic) {
    curl_easy_setopt(easy, CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
    curl_easy_setopt(easy, CURLOPT_USERNAME, up.username.c_str());
    curl_easy_setopt(easy, CURLOPT_PASSWORD, up.password.c_str());
  }
}

void Client::Impl::detachEasy(Transfer* t) {
  if (t->easy != nullptr) {
    evtimer_del(t->timer);  // the stall watchdog
    curl_multi_remove_handle(multi_, t->easy);
    curl_easy_cleanup(t->easy);
    t->easy = nullptr;
  }
  if (t->header_list != nullptr) {
    curl_slist_free_all(t->header_list);
    t->header_list = nullptr;
  }
}

// Header lines of every response libcurl sees: a status line starts a new response (a
// redirect's, a 1xx's, then the final one), so only the last set survives.
size_t Client::Impl::onHeader(char* data, size_t size, size_t count, void* arg) {
  Transfer* t = static_cast<Transfer*>(arg);
  size_t length = size * count;
  if (t->done) {
    return 0;
  }
  t->last_progress = std::chrono::steady_clock::now();
  std::string_view line(data, length);
  if (line.substr(0, 5) == "HTTP/") {
    t->head.headers.clear();
    return length;
  }
  HeaderList& headers = t->head.headers;
  if (!line.empty() && (line.front() == ' ' || line.front() == '\t')) {
    if (!headers.empty() && !trim(line).empty()) {
      headers.back().second += ' ';  // obsolete line folding
      headers.back().second += trim(line);
    }
    return length;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    return length;  // the blank line ending the block
  }
  std::string name(trim(line.substr(0, colon)));
  for (char& ch : name) {
    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  headers.emplace_back(std::move(name), std::string(trim(line.substr(colon + 1))));
  return length;
}

size_t Client::Impl::onBody(char* data, size_t size, size_t count, void* arg) {
  Transfer* t = static_cast<Transfer*>(arg);
  size_t length = size * count;
  if (t->done) {
    return 0;  // cancelled: make libcurl stop; the handle is removed when the stack unwinds
  }
  if (t->paused) {
    // libcurl goes on with what it already read after a pause asked from inside on_data: it
    // keeps this and hands it over again after resume().
    return CURL_WRITEFUNC_PAUSE;
  }
  t->last_progress = std::chrono::steady_clock::now();
  return t->impl->onBodyBytes(t, std::string_view(data, length));
}

size_t Client::Impl::onBodyBytes(Transfer* t, std::string_view data) {
  if (!t->decided) {
    decide(t);
  }
  if (t->next == Next::kRetry) {
    return data.size();  // read and dropped, so that the connection stays usable
  }
  if (t->next == Next::kAuth) {
    size_t room = kMaxSavedBody - std::min(kMaxSavedBody, t->body.size());
    t->body.append(data.substr(0, room));
    return data.size();
  }
  if (!t->request.streaming) {
    t->body.append(data);
    return data.size();
  }

  if (!t->head_delivered) {
    t->head_delivered = true;
    if (t->callbacks.on_head) {
      t->callbacks.on_head(t->head);
    }
    if (t->done) {
      return 0;
    }
  }
  t->data_delivered = true;
  bool more = t->callbacks.on_data ? t->callbacks.on_data(data) : true;
  if (t->done) {
    return 0;
  }
  if (!more) {
    t->aborted = true;
    return 0;
  }
  return data.size();
}

// Classifies the response whose body is about to start (or which had none).
void Client::Impl::decide(Transfer* t) {
  t->decided = true;
  long status = 0;
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
  char* url = nullptr;
  curl_easy_getinfo(t->easy, CURLINFO_EFFECTIVE_URL, &url);
  t->head.status = static_cast<int>(status);
  t->head.final_url = url != nullptr ? url : t->url;

  t->next = Next::kDeliver;
  if (status == 401 && !t->internal && !t->challenged && answerable(t)) {
    t->next = Next::kAuth;
    return;
  }
  if (!retryableStatus(status) || t->attempt >= t->upstream->max_attempts) {
    return;
  }
  t->next = Next::kRetry;
  t->retry_delay = backoff(t);
  const std::string* retry_after = t->head.header("retry-after");
  if (status == 429 && retry_after != nullptr) {
    if (std::optional<std::chrono::milliseconds> delay = parseRetryAfter(*retry_after)) {
      t->retry_delay = std::min(*delay, t->upstream->max_retry_after);
    }
  }
}

void Client::Impl::onTransferDone(Transfer* t, CURLcode code) {
  if (code == CURLE_OK && !t->decided) {
    decide(t);
  }
  detachEasy(t);
  if (t->aborted) {
    finish(t, Status(Code::kUnavailable, "aborted"));
    return;
  }
  if (code != CURLE_OK) {
    onFailure(t, code);
    return;
  }
  switch (t->next) {
    case Next::kDeliver:
      deliverFinal(t);
      return;
    case Next::kRetry:
      scheduleRetry(t, t->retry_delay, "status " + std::to_string(t->head.status));
      return;
    case Next::kAuth:
      authenticate(t);
      return;
  }
}

void Client::Impl::onFailure(Transfer* t, CURLcode code) {
  // The error buffer says more ("Failed to connect to host port 443 after 3 ms: ...").
  std::string reason =
      t->errbuf[0] != '\0' ? std::string(trim(t->errbuf)) : curl_easy_strerror(code);
  if (t->data_delivered || !retryableCode(code) || t->attempt >= t->upstream->max_attempts) {
    finish(t, Status(Code::kUnavailable, std::move(reason)));
    return;
  }
  scheduleRetry(t, backoff(t), reason);
}

// =============================================================================================
// Delivery, retries and the end of a transfer

void Client::Impl::deliverFinal(Transfer* t) {
  if (!t->head_delivered) {
    t->head_delivered = true;
    if (t->callbacks.on_head) {
      t->callbacks.on_head(t->head);
    }
    if (t->done) {
      return;
    }
  }
  if (!t->body.empty() && t->callbacks.on_data) {
    bool more = t->callbacks.on_data(t->body);
    if (t->done) {
      return;
    }
    if (!more) {
      finish(t, Status(Code::kUnavailable, "aborted"));
      return;
    }
  }
  finish(t, Status::ok());
}

void Client::Impl::finish(Transfer* t, Status status) {
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - t->started);
  spdlog::debug("upstream.done upstream={} method={} path={} status={} attempts={} ok={} ms={}",
                t->upstream->name, t->request.method, logPath(t), t->head.status, t->attempt,
                status.isOk(), elapsed.count());
  std::function<void(Status)> on_done = std::move(t->callbacks.on_done);
  retire(t);
  if (on_done) {
    on_done(std::move(status));
  }
}

// Marks a transfer done and parks it for reap(); its token request goes with it.
void Client::Impl::retire(Transfer* t) {
  auto it = transfers_.find(t->id);
  if (it == transfers_.end()) {
    return;
  }
  t->done = true;
  evtimer_del(t->timer);
  graveyard_.push_back(std::move(it->second));
  transfers_.erase(it);
  if (!t->internal) {
    --user_active_;
  }
  if (t->token_child != 0) {
    if (Transfer* child = find(t->token_child)) {
      retire(child);
    }
  }
}

void Client::Impl::cancel(TransferId id) {
  if (Transfer* t = find(id); t != nullptr && !t->internal) {
    spdlog::debug("upstream.cancel upstream={} path={}", t->upstream->name, logPath(t));
    retire(t);
  }
}

void Client::Impl::pause(TransferId id) {
  Transfer* t = find(id);
  if (t == nullptr || t->done || t->paused || t->easy == nullptr) {
    return;
  }
  t->paused = true;
  curl_easy_pause(t->easy, CURLPAUSE_RECV);
}

void Client::Impl::resume(TransferId id) {
  Transfer* t = find(id);
  if (t == nullptr || t->done || !t->paused) {
    return;
  }
  t->paused = false;
  t->last_progress = std::chrono::steady_clock::now();
  if (t->easy != nullptr) {
    // Bytes libcurl held while paused are delivered from inside this call; the transfer may
    // also end here.
    curl_easy_pause(t->easy, CURLPAUSE_CONT);
    checkDone();
  }
}

void Client::Impl::scheduleRetry(Transfer* t, std::chrono::milliseconds delay,
                                 const std::string& reason) {
  spdlog::warn("upstream.retry upstream={} path={} attempt={} reason=\"{}\" delay_ms={}",
               t->upstream->name, logPath(t), t->attempt, reason, delay.count());
  armTimer(t, delay);
}

// A failure found while starting: reported from the loop, never from inside start().
void Client::Impl::failSoon(Transfer* t, Status status) {
  t->failure = std::move(status);
  armTimer(t, std::chrono::milliseconds(0));
}

void Client::Impl::armTimer(Transfer* t, std::chrono::milliseconds delay) {
  timeval tv = proxy::toTimeval(delay);
  evtimer_add(t->timer, &tv);
}

// Exponential backoff with "equal jitter": half the doubled delay fixed, half random, so that
// clients that failed together do not come back together.
std::chrono::milliseconds Client::Impl::backoff(const Transfer* t) {
  int doublings = std::clamp(t->attempt - 1, 0, 20);
  int64_t base = std::max<int64_t>(1, t->upstream->backoff_base.count());
  int64_t delay = std::min<int64_t>(base << doublings, kMaxBackoff.count());
  std::uniform_int_distribution<int64_t> jitter(0, delay / 2);
  return std::chrono::milliseconds(delay - delay / 2 + jitter(rng_));
}

// libcurl's own low-speed check (kept as a backstop) averages over a 5 s window, so a stall
// would be seen only after stall_timeout plus up to 5 s. This watchdog is exact: it wakes at
// last_progress + stall_timeout and either re-arms for the remainder or ends the attempt.
void Client::Impl::checkStall(Transfer* t) {
  auto stall = t->upstream->stall_timeout;
  if (t->paused) {
    armTimer(t, stall);  // the caller is behind, not the upstream
    return;
  }
  auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - t->last_progress);
  if (idle < stall) {
    armTimer(t, stall - idle);
    return;
  }
  detachEasy(t);
  std::snprintf(t->errbuf, sizeof t->errbuf, "no data for %lld ms",
                static_cast<long long>(idle.count()));
  onFailure(t, CURLE_OPERATION_TIMEDOUT);
}

// The registry path (or the token realm) without its query: a CDN's signed query or a token
// request's parameters have no place in logs.
std::string_view Client::Impl::logPath(const Transfer* t) {
  return withoutQuery(t->internal ? std::string_view(t->url) : std::string_view(t->request.path));
}

// =============================================================================================
// Client

Client::Client(event_base* base, std::shared_ptr<TokenCache> tokens)
    : impl_(std::make_unique<Impl>(base, std::move(tokens))) {}

Client::~Client() {
  if (impl_->depth_ > 0) {
    impl_->orphan();
    (void)impl_.release();  // deleted by the outermost Scope as it unwinds
  }
}

Client::TransferId Client::start(const UpstreamOptions& upstream, Request request,
                                 Callbacks callbacks) {
  Impl::Scope scope(impl_.get());
  return impl_->start(upstream, std::move(request), std::move(callbacks));
}

void Client::cancel(TransferId id) {
  Impl::Scope scope(impl_.get());
  impl_->cancel(id);
}

void Client::pause(TransferId id) {
  Impl::Scope scope(impl_.get());
  impl_->pause(id);
}

void Client::resume(TransferId id) {
  Impl::Scope scope(impl_.get());
  impl_->resume(id);
}

size_t Client::active() const { return impl_->user_active_; }

}  // namespace regcache::upstream
