// Token buckets per client address, sharded for the loops.
#include "proxy/rate_limit.h"

#include <algorithm>
#include <cmath>
#include <functional>

namespace regcache::proxy::http {

bool TokenBucket::take(double rate, double burst, Clock::time_point now,
                       std::chrono::duration<double>* retry_after) {
  if (now > updated_) {
    double elapsed = std::chrono::duration<double>(now - updated_).count();
    tokens_ = std::min(burst, tokens_ + elapsed * rate);
    updated_ = now;
  }
  if (tokens_ >= 1.0) {
    tokens_ -= 1.0;
    return true;
  }
  if (retry_after != nullptr) {
    *retry_after = std::chrono::duration<double>((1.0 - tokens_) / rate);
  }
  return false;
}

bool TokenBucket::full(double rate, double burst, Clock::time_point now) const {
  double elapsed = now > updated_ ? std::chrono::duration<double>(now - updated_).count() : 0;
  return tokens_ + elapsed * rate >= burst;
}

RateLimiter::RateLimiter(double requests_per_second, double burst, size_t max_clients)
    : rate_(requests_per_second),
      burst_(std::max(1.0, burst)),
      max_per_shard_(std::max<size_t>(1, max_clients / kShards)),
      shards_(kShards) {}

RateLimiter::Decision RateLimiter::admit(std::string_view ip, Clock::time_point now) {
  Shard& shard = shards_[std::hash<std::string_view>()(ip) % kShards];
  std::lock_guard lock(shard.mu);
  if (now - shard.last_sweep >= kSweepInterval || shard.buckets.size() >= max_per_shard_) {
    sweep(shard, now);
  }
  auto it = shard.buckets.find(std::string(ip));
  if (it == shard.buckets.end()) {
    it = shard.buckets.emplace(std::string(ip), TokenBucket(burst_, now)).first;
  }
  std::chrono::duration<double> wait{};
  if (it->second.take(rate_, burst_, now, &wait)) {
    return Decision{};
  }
  auto seconds = static_cast<uint32_t>(std::ceil(wait.count()));
  return Decision{false, std::max<uint32_t>(1, seconds)};
}

// Drops the buckets of clients idle long enough to have refilled; when the shard is still at
// its bound, drops every bucket.
void RateLimiter::sweep(Shard& shard, Clock::time_point now) {
  shard.last_sweep = now;
  std::erase_if(shard.buckets,
                [&](const auto& entry) { return entry.second.full(rate_, burst_, now); });
  if (shard.buckets.size() >= max_per_shard_) {
    shard.buckets.clear();
  }
}

size_t RateLimiter::clients() const {
  size_t total = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mu);
    total += shard.buckets.size();
  }
  return total;
}

}  // namespace regcache::proxy::http
