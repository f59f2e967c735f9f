// Per-client request rate limiting: a token bucket per client IP address.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace regcache::proxy::http {

// One client's bucket: holds up to `burst` tokens, refilled at `rate` tokens per second; each
// request takes one. Plain value; the caller serialises access.
class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  TokenBucket(double burst, Clock::time_point now) : tokens_(burst), updated_(now) {}

  // Refills for the time since the last call, then takes a token when there is one. When
  // there is none, `retry_after` (if given) is how long until there will be.
  bool take(double rate, double burst, Clock::time_point now,
            std::chrono::duration<double>* retry_after = nullptr);
  // Whether the bucket would be full at `now`: such a bucket says nothing a new one would not.
  bool full(double rate, double burst, Clock::time_point now) const;

 private:
  double tokens_;
  Clock::time_point updated_;
};

// Token buckets for every client, keyed by IP address.
//
// Thread-safe and cheap under contention: the buckets are split across shards by a hash of
// the address, each with its own mutex, so the loops rarely meet on one lock. Memory is
// bounded: a shard drops buckets that have refilled (idle clients) every `kSweepInterval`,
// and when it still holds `max_clients / shards` it drops them all (those clients start with
// a full bucket again: generous, but memory stays bounded whatever the clients do).
class RateLimiter {
 public:
  using Clock = TokenBucket::Clock;

  // `requests_per_second` > 0; `burst` >= 1.
  RateLimiter(double requests_per_second, double burst, size_t max_clients = 65536);

  struct Decision {
    bool allowed = true;
    uint32_t retry_after_seconds = 0;  // when refused: whole seconds, at least 1
  };
  Decision admit(std::string_view ip, Clock::time_point now);

  // Buckets held now, across the shards (tests).
  size_t clients() const;

 private:
  static constexpr size_t kShards = 16;
  static constexpr auto kSweepInterval = std::chrono::seconds(10);

  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, TokenBucket> buckets;  // guarded by mu
    Clock::time_point last_sweep{};                        // guarded by mu
  };
  void sweep(Shard& shard, Clock::time_point now);

  const double rate_;
  const double burst_;
  const size_t max_per_shard_;
  std::vector<Shard> shards_;
};

}  // namespace regcache::proxy::http
