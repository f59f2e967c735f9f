// Client auth: who a request comes from (htpasswd users with bcrypt passwords, sent as HTTP
// Basic credentials) and whether that identity may do what the request asks.
//
// bcrypt costs tens of milliseconds by design, so it never runs on a loop thread: a request
// whose credentials are not in the short-lived cache of successful verifications waits for the
// blocking pool, and its body (if any arrives meanwhile) is held until the verdict.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cache/status.h"
#include "proxy/config.h"
#include "proxy/http.h"
#include "proxy/loop.h"

namespace regcache::proxy {

// user -> bcrypt hash, as an htpasswd file lists them.
using HtpasswdEntries = std::unordered_map<std::string, std::string>;

// Parses htpasswd text: one "user:hash" per line; blank lines and lines starting with '#' are
// skipped, a trailing '\r' is ignored. Only bcrypt hashes ($2y$, $2b$, $2a$, as `htpasswd -B`
// makes them) are accepted: an MD5 or SHA-1 entry would otherwise lock its user out without a
// word. kInvalidArgument "source:line: what" for a bad line or a user listed twice.
Result<HtpasswdEntries> parseHtpasswd(std::string_view text, std::string_view source);

// Reads and parses an htpasswd file. kIo when it cannot be read.
Result<HtpasswdEntries> loadHtpasswd(const std::filesystem::path& file);

// True when `password` matches the bcrypt `hash` (libcrypt's crypt_rn, compared in constant
// time). Blocking for as long as the hash's cost says: never call it on a loop thread.
// Thread-safe.
bool verifyBcrypt(std::string_view password, const std::string& hash);

struct BasicCredentials {
  std::string user;
  std::string password;
};

// Parses an Authorization header value "Basic <base64 of user:password>" (scheme name in any
// case). nullopt for another scheme or a malformed value.
std::optional<BasicCredentials> parseBasicCredentials(std::string_view header);

// True when namespace `ns` covers `repository`: "*" covers everything, otherwise `ns` must be
// the whole repository name or a prefix of it that ends at a '/' ("team" covers "team/app" and
// "team", never "teamx/app").
bool namespaceCovers(std::string_view ns, std::string_view repository);

// Successful verifications, remembered for `ttl` so that a client's next requests cost a hash
// lookup instead of a bcrypt. Keys hold a SHA-256 of the password, never the password. At most
// `capacity` entries: when full, expired entries go first, then arbitrary ones. Thread-safe.
class VerifiedCache {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  VerifiedCache(size_t capacity, std::chrono::seconds ttl, Clock clock);

  // The cache key for these credentials.
  static std::string keyFor(const BasicCredentials& credentials);

  bool contains(const std::string& key);
  void insert(std::string key);
  void clear();
  size_t size() const;

 private:
  const size_t capacity_;
  const std::chrono::seconds ttl_;
  const Clock clock_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> expiry_;  // guarded by mu_
};

// The auth policy of a running server: the htpasswd users, anonymous_pull and the write
// permissions of [[auth.allow]]. Shared by every loop; thread-safe.
//
// Policy, as admit() applies it:
// - /metrics, /healthz and /readyz are open to everyone.
// - Credentials that are offered and wrong (or not Basic) get 401 with the Basic challenge,
//   whatever the request; empty Basic credentials count as none (containers/image sends
//   "Basic Og==" when it was challenged and has no login).
// - Reads (GET, HEAD) without credentials pass when anonymous_pull is true, else 401. /v2/
//   follows the same rule, so an anonymous mirror answers Docker's probe with 200.
// - Writes (every other method) need a valid user, else 401; and a user may write only into
//   repositories its [[auth.allow]] namespaces cover, else 403 DENIED.
class ClientAuth {
 public:
  struct Options {
    std::filesystem::path htpasswd;
    bool anonymous_pull = true;
    std::vector<AuthAllow> allow;
    std::chrono::seconds cache_ttl{300};
    size_t cache_capacity = 4096;
    VerifiedCache::Clock clock;  // empty: std::chrono::steady_clock::now
  };

  // The options of `config` (which must have htpasswd set).
  static Options optionsFrom(const Config& config);

  // Reads the htpasswd file: the error of loadHtpasswd when it cannot. `pool` runs the bcrypt
  // verifications and must outlive the ClientAuth.
  static Result<std::unique_ptr<ClientAuth>> open(Options options, BlockingPool& pool);

  // Re-reads the htpasswd file (SIGHUP). On success the new users take effect for the next
  // verification and every cached verification is forgotten (a changed or removed password
  // stops working at once); on error the old users stay and the error is returned. Any thread.
  Status reload();

  // Checks `credentials` and calls `done(valid)` on `loop`: within this call when they are
  // cached, otherwise later, after a bcrypt on the pool. `done` must check that what it
  // touches still exists. Any thread may call; `done` runs on `loop`.
  void verify(Loop& loop, const BasicCredentials& credentials, std::function<void(bool)> done);

  // True when `user` may push to and delete from `repository`.
  bool mayWrite(std::string_view user, std::string_view repository) const;

  using HandlerPtr = std::unique_ptr<http::Handler>;
  using Proceed = std::function<HandlerPtr(const std::shared_ptr<http::Exchange>&)>;

  // Applies the policy above to `ex`. Refused: answers it (401 with the challenge, or 403) and
  // returns nullptr. Admitted: returns what `proceed(ex)` returns, now or, when a bcrypt is
  // needed, through a handler that holds the request body until the verdict. A verified user is
  // added to the access log as `user=<name>`. Loop thread of `ex`.
  HandlerPtr admit(const std::shared_ptr<http::Exchange>& ex, Proceed proceed);

  // Verifications waiting for or running on the pool now (tests, metrics).
  size_t verifying() const { return verifying_.load(); }

 private:
  ClientAuth(Options options, BlockingPool& pool, std::shared_ptr<const HtpasswdEntries> users);

  std::shared_ptr<const HtpasswdEntries> users() const;
  // After a verdict: answers or proceeds.
  HandlerPtr decide(const std::shared_ptr<http::Exchange>& ex,
                    const std::optional<std::string>& user, const Proceed& proceed);

  const Options options_;
  BlockingPool& pool_;
  VerifiedCache verified_;
  std::atomic<size_t> verifying_{0};
  mutable std::mutex mu_;
  std::shared_ptr<const HtpasswdEntries> users_;  // guarded by mu_; swapped whole by reload()
  uint64_t generation_ = 0;  // guarded by mu_; bumped by reload() so late verdicts are not cached
};

}  // namespace regcache::proxy
