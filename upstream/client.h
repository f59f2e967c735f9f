// The upstream registry client: libcurl's multi interface driven by one libevent loop, with
// registry auth (Bearer token flow and Basic), retries with backoff, 429 Retry-After, and
// redirects that never carry credentials to another host.
//
// Threading: a Client belongs to one event_base and is used only on that loop's thread. The
// TokenCache is shared by every loop's Client and is thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cache/status.h"

struct event_base;

namespace regcache::upstream {

// How to reach one upstream registry.
struct UpstreamOptions {
  std::string name;        // "docker.io": for logs and the token cache key
  std::string base_url;    // "https://registry-1.docker.io", no trailing '/'
  std::string username;    // empty: anonymous
  std::string password;    // already read from password_file by the caller
  std::string http_proxy;  // empty: libcurl's environment (HTTPS_PROXY, NO_PROXY)
  std::chrono::milliseconds connect_timeout{10'000};
  // Whole-request bound for non-streaming requests (manifests, HEAD, tokens).
  std::chrono::milliseconds request_timeout{30'000};
  // Streaming requests (blobs) fail when no byte arrives for this long.
  std::chrono::milliseconds stall_timeout{30'000};
  int max_attempts = 4;                               // first try included
  std::chrono::milliseconds backoff_base{200};        // doubled per retry, with jitter
  std::chrono::milliseconds max_retry_after{30'000};  // longest 429 Retry-After honoured
  bool verify_tls = true;
  // CA bundle for this upstream (a private registry's CA), used instead of the system's;
  // empty: the system's.
  std::string ca_file;
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method = "GET";  // GET or HEAD
  std::string path;            // "/v2/library/alpine/manifests/latest" (query allowed)
  // The repository on the upstream, for the token scope "repository:<it>:pull".
  std::string repository;
  HeaderList headers;  // Accept, Range, ...
  // Streaming: the body goes to on_data as it arrives and the request is not retried once a
  // body byte was delivered (the caller resumes with Range). Non-streaming bodies are also
  // given to on_data, but only for the final attempt.
  bool streaming = false;
};

struct ResponseHead {
  int status = 0;
  HeaderList headers;     // names lowercased, in order
  std::string final_url;  // after redirects
  // First value of `lower_name`, or nullptr.
  const std::string* header(std::string_view lower_name) const;
  std::optional<uint64_t> contentLength() const;
};

// What a transfer reports, in this order: on_head once (the final response, after auth,
// redirects and retries), on_data zero or more times, on_done exactly once. A 4xx/5xx answer
// that survives the retries is delivered like any response, with on_done ok: the caller
// decides. on_done is non-ok (kUnavailable, with the reason) only when no complete response
// arrived: connect failure, reset, timeout, TLS error, or a body cut short; on_head may or
// may not have been called before. Callbacks run on the Client's loop; none runs after
// cancel() or after the Client is destroyed.
struct Callbacks {
  std::function<void(const ResponseHead&)> on_head;
  // Return false to abort the transfer (on_done then gets kUnavailable "aborted").
  std::function<bool(std::string_view)> on_data;
  std::function<void(Status)> on_done;
};

// Bearer tokens per (upstream, scope), kept until shortly before they expire. Thread-safe.
class TokenCache {
 public:
  explicit TokenCache(
      std::function<std::chrono::steady_clock::time_point()> clock = std::chrono::steady_clock::now)
      : clock_(std::move(clock)) {}
  std::optional<std::string> get(std::string_view upstream, std::string_view scope);
  void put(std::string_view upstream, std::string_view scope, std::string token,
           std::chrono::seconds expires_in);
  // Whether an unexpired token for any scope of `upstream` is held (the status page's "token
  // state"; the token itself never leaves this cache).
  bool holdsToken(std::string_view upstream);

 private:
  struct Entry {
    std::string token;
    std::chrono::steady_clock::time_point expires;
  };
  std::function<std::chrono::steady_clock::time_point()> clock_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> tokens_;  // guarded by mu_; key "upstream\nscope"
};

// A parsed WWW-Authenticate challenge.
struct Challenge {
  std::string scheme;  // "bearer" or "basic", lowercased
  std::string realm;
  std::string service;
  std::string scope;
};
// Parses a WWW-Authenticate value (RFC 9110 auth-params, quoted or token values).
// kInvalidArgument when malformed.
Result<Challenge> parseChallenge(std::string_view header);

class Client {
 public:
  using TransferId = uint64_t;

  // `tokens` may be shared by the Clients of every loop; null gives this Client its own.
  Client(event_base* base, std::shared_ptr<TokenCache> tokens);
  // Cancels every transfer without calling its callbacks.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Starts a request against `upstream` (which must outlive the transfer). Loop thread only.
  TransferId start(const UpstreamOptions& upstream, Request request, Callbacks callbacks);
  // Stops a transfer; none of its callbacks runs afterwards. Unknown ids are ignored.
  void cancel(TransferId id);
  // Flow control for a streaming transfer's body. pause() may be called from inside its
  // on_data (the bytes just given count as taken): no more on_data until resume(), and the
  // stall timeout does not run meanwhile. resume() must not be called from inside one of the
  // Client's callbacks (it may deliver held bytes at once); post it to the loop. Unknown or
  // finished ids are ignored.
  void pause(TransferId id);
  void resume(TransferId id);
  // Transfers in flight (for metrics and tests).
  size_t active() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace regcache::upstream
