// Counters for what the mirror does, rendered as Prometheus text (/metrics) and summed up for
// the status JSON (/api/status). Every counter is a relaxed atomic: recording one costs an
// uncontended increment on the request path. Beside the totals: the last hour minute by minute,
// and the most pulled images.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace regcache::proxy {

// The routes requests are counted under.
enum class RouteKind { kBase, kCatalog, kTags, kManifest, kBlob, kUpload, kReferrers, kOther };
inline constexpr size_t kRouteKinds = 8;

// How a cache lookup went.
enum class CacheOutcome { kHit, kMiss, kStale, kRevalidated, kCoalesced };
inline constexpr size_t kCacheOutcomes = 5;

// Whether an outcome counts as a hit, and whether it was a lookup at all (coalesced requests
// joined someone else's and are neither). The one definition the hit ratio, the history and
// `regcache du` (through /api/status) share.
bool countsAsHit(CacheOutcome outcome);
bool countsAsLookup(CacheOutcome outcome);

class Metrics {
 public:
  // Seconds since the Unix epoch; injected by tests to move through minutes without sleeping.
  using Clock = std::function<int64_t()>;

  Metrics();
  explicit Metrics(Clock clock);

  // A request whose headers arrived, and one that is over (answered or aborted). The
  // difference is what a graceful stop waits for. Any thread.
  void requestStarted() { in_flight_.fetch_add(1, std::memory_order_relaxed); }
  void requestEnded() { in_flight_.fetch_sub(1, std::memory_order_relaxed); }
  int64_t inFlight() const { return in_flight_.load(std::memory_order_relaxed); }

  // One finished request. Any thread.
  void recordRequest(RouteKind route, int status, double seconds);
  void recordCache(bool manifest, CacheOutcome outcome);
  void recordBytes(bool from_upstream, uint64_t bytes);
  // An upstream failure of `kind` ("unreachable", "5xx", "429", "401", "404", "corrupt").
  void recordUpstreamError(std::string_view upstream, std::string_view kind);
  void recordEviction(uint64_t items, uint64_t bytes);
  // A manifest GET by tag that was answered 200; `image` is "<repository key>:<tag>". Counted
  // in a bounded table (see TopImages in metrics.cc). Any thread.
  void recordPull(std::string_view image);

  // Gauges read when rendering.
  struct Gauges {
    std::function<uint64_t()> fills_in_flight;
    std::function<uint64_t()> connections;
    std::function<uint64_t()> disk_bytes_used;
    uint64_t disk_bytes_bound = 0;
  };
  void setGauges(Gauges gauges);

  // Prometheus text exposition format 0.0.4.
  std::string renderPrometheus() const;

  struct Summary {
    uint64_t hits = 0, misses = 0, stale = 0, revalidated = 0, coalesced = 0;
    uint64_t bytes_from_cache = 0, bytes_from_upstream = 0;
    uint64_t evictions = 0, evicted_bytes = 0;
    uint64_t requests = 0;
    double hitRatio() const;
  };
  Summary summary() const;
  const Gauges& gauges() const { return gauges_; }
  std::chrono::steady_clock::time_point started() const { return started_; }
  int64_t now() const { return clock_(); }

  // One minute of the last hour. `minute` is the Unix time / 60 it covers.
  struct Minute {
    int64_t minute = 0;
    uint64_t hits = 0, misses = 0, bytes_cache = 0, bytes_upstream = 0;
  };
  // The last kHistoryMinutes minutes, oldest first, ending with the current one; minutes
  // without traffic are zero.
  std::vector<Minute> history() const;
  static constexpr size_t kHistoryMinutes = 60;

  struct ImageCount {
    std::string image;
    uint64_t pulls = 0;
  };
  // The `n` most pulled images, most first (ties by name).
  std::vector<ImageCount> topImages(size_t n) const;

 private:
  static constexpr size_t kStatusSlots = 20;
  static constexpr size_t kBuckets = 15;  // including +Inf
  static size_t statusSlot(int status);

  struct RouteCounters {
    std::array<std::atomic<uint64_t>, kStatusSlots> by_status{};
    std::array<std::atomic<uint64_t>, kBuckets> buckets{};
    std::atomic<uint64_t> count{0};
    std::atomic<uint64_t> sum_micros{0};
  };

  // A slot of the minute ring. A writer that finds an older minute in its slot claims it with
  // a compare-exchange and zeroes it: increments racing that reset at the turn of a minute may
  // be lost, which a one-minute chart point tolerates and a lock on every request would not.
  struct MinuteSlot {
    std::atomic<int64_t> minute{-1};
    std::atomic<uint64_t> hits{0}, misses{0}, bytes_cache{0}, bytes_upstream{0};
  };
  MinuteSlot& currentSlot();

  Clock clock_;
  std::chrono::steady_clock::time_point started_;
  std::array<MinuteSlot, kHistoryMinutes> history_;
  std::array<RouteCounters, kRouteKinds> routes_;
  std::array<std::array<std::atomic<uint64_t>, kCacheOutcomes>, 2> cache_{};  // [manifest]
  std::atomic<uint64_t> bytes_cache_{0};
  std::atomic<uint64_t> bytes_upstream_{0};
  std::atomic<uint64_t> evictions_{0};
  std::atomic<uint64_t> evicted_bytes_{0};
  std::atomic<int64_t> in_flight_{0};
  Gauges gauges_;

  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, uint64_t> upstream_errors_;  // guarded by mu_

  mutable std::mutex pulls_mu_;
  std::map<std::string, uint64_t, std::less<>> pulls_;  // guarded by pulls_mu_
};

}  // namespace regcache::proxy
