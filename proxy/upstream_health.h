// What the last exchanges with each upstream said: reachable or not, the last error, the rate
// limit Docker Hub announced, and a short ring of recent failures, for the status page.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace regcache::proxy {

class UpstreamHealth {
 public:
  // One upstream's last known state. Times are Unix seconds; 0 means never.
  struct State {
    int64_t last_success = 0;
    int64_t last_failure = 0;
    std::string last_error;  // upstream's or the transport's words; never a credential
    // The latest `ratelimit-limit` / `ratelimit-remaining` response headers (Docker Hub's
    // "100;w=21600" form), empty when none was seen.
    std::string ratelimit_limit;
    std::string ratelimit_remaining;
    // The last exchange that ended got an HTTP answer (a 429 or 5xx is an answer too:
    // last_failure newer than last_success tells a degraded upstream from a healthy one).
    bool reachable = false;
  };

  struct Failure {
    int64_t time = 0;
    std::string upstream;
    std::string kind;  // "unreachable", "5xx", "429", "401", "corrupt", "status"
    std::string message;
  };
  static constexpr size_t kRecentFailures = 20;

  // `on_failure` (optional) also hears each failure: the Prometheus counter. Called with no
  // lock held.
  explicit UpstreamHealth(
      std::function<void(std::string_view upstream, std::string_view kind)> on_failure = nullptr);

  // Set once before any traffic (not thread-safe against the record calls).
  void setFailureCounter(std::function<void(std::string_view, std::string_view)> on_failure) {
    on_failure_ = std::move(on_failure);
  }

  // An exchange with `upstream` got an answer that says it works (any status that is the
  // upstream's to give: 200, 404). Any thread.
  void recordSuccess(std::string_view upstream, int64_t now);
  // An exchange failed. `kind` as in Failure. Any thread.
  void recordFailure(std::string_view upstream, std::string_view kind, std::string_view message,
                     int64_t now);
  // Rate-limit headers from a response; empty values leave the last ones. Any thread.
  void recordRateLimit(std::string_view upstream, std::string_view limit,
                       std::string_view remaining);

  // The state of `upstream`, or nullopt when nothing was exchanged with it yet.
  std::optional<State> state(std::string_view upstream) const;
  // The last kRecentFailures failures, newest first.
  std::vector<Failure> recentFailures() const;

 private:
  std::function<void(std::string_view, std::string_view)> on_failure_;
  mutable std::mutex mu_;
  std::map<std::string, State, std::less<>> states_;  // guarded by mu_
  std::deque<Failure> recent_;                        // guarded by mu_; newest at the back
};

// The failure kind for an upstream HTTP status (0: no answer at all; 2xx: a body cut short).
std::string_view upstreamFailureKind(int upstream_status);

}  // namespace regcache::proxy
