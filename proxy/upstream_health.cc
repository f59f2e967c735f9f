// Upstream health: a small table under one mutex, touched once per upstream exchange.
#include "proxy/upstream_health.h"

namespace regcache::proxy {

namespace {

// Longest error message kept: upstream bodies can be long, the page shows one line.
constexpr size_t kMaxMessage = 300;

}  // namespace

std::string_view upstreamFailureKind(int upstream_status) {
  // No answer, or one cut short after a good head: the connection is what failed.
  if (upstream_status < 300) return "unreachable";
  if (upstream_status == 429) return "429";
  if (upstream_status == 401 || upstream_status == 403) return "401";
  if (upstream_status >= 500) return "5xx";
  return "status";
}

UpstreamHealth::UpstreamHealth(
    std::function<void(std::string_view upstream, std::string_view kind)> on_failure)
    : on_failure_(std::move(on_failure)) {}

void UpstreamHealth::recordSuccess(std::string_view upstream, int64_t now) {
  std::lock_guard lock(mu_);
  auto it = states_.try_emplace(std::string(upstream)).first;
  it->second.last_success = now;
  it->second.reachable = true;
}

void UpstreamHealth::recordFailure(std::string_view upstream, std::string_view kind,
                                   std::string_view message, int64_t now) {
  std::string text(message.substr(0, kMaxMessage));
  {
    std::lock_guard lock(mu_);
    State& state = states_.try_emplace(std::string(upstream)).first->second;
    state.last_failure = now;
    state.reachable = kind != "unreachable";
    state.last_error = text;
    recent_.push_back(Failure{now, std::string(upstream), std::string(kind), std::move(text)});
    if (recent_.size() > kRecentFailures) recent_.pop_front();
  }
  if (on_failure_) on_failure_(upstream, kind);
}

void UpstreamHealth::recordRateLimit(std::string_view upstream, std::string_view limit,
                                     std::string_view remaining) {
  if (limit.empty() && remaining.empty()) return;
  std::lock_guard lock(mu_);
  State& state = states_.try_emplace(std::string(upstream)).first->second;
  if (!limit.empty()) state.ratelimit_limit = std::string(limit.substr(0, 64));
  if (!remaining.empty()) state.ratelimit_remaining = std::string(remaining.substr(0, 64));
}

std::optional<UpstreamHealth::State> UpstreamHealth::state(std::string_view upstream) const {
  std::lock_guard lock(mu_);
  auto it = states_.find(upstream);
  if (it == states_.end()) return std::nullopt;
  return it->second;
}

std::vector<UpstreamHealth::Failure> UpstreamHealth::recentFailures() const {
  std::lock_guard lock(mu_);
  return {recent_.rbegin(), recent_.rend()};
}

}  // namespace regcache::proxy
