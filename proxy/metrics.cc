// Prometheus text rendering of the counters.
#include "proxy/metrics.h"

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace regcache::proxy {

namespace {

constexpr const char* kRouteNames[kRouteKinds] = {"base", "catalog", "tags",      "manifest",
                                                  "blob", "upload",  "referrers", "other"};
constexpr const char* kOutcomeNames[kCacheOutcomes] = {"hit", "miss", "stale", "revalidated",
                                                       "coalesced"};
// Status codes counted one by one; the last slot takes the rest.
constexpr int kStatuses[] = {200, 201, 202, 204, 206, 304, 400, 401, 403, 404,
                             405, 413, 416, 429, 431, 500, 502, 503, 504};
// Latency bucket bounds in seconds (+Inf is the last bucket).
constexpr double kBounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                              0.025,  0.05,    0.1,    0.25,  1,      5,     30};

// Distinct images the pull table holds. Past it, the least pulled entry makes room (below).
constexpr size_t kMaxImages = 512;

int64_t wallSeconds() { return static_cast<int64_t>(std::time(nullptr)); }

void appendLine(std::string& out, const char* format, auto... args) {
  char buf[512];
  int n = std::snprintf(buf, sizeof buf, format, args...);
  if (n > 0) out.append(buf, static_cast<size_t>(std::min<int>(n, sizeof buf - 1)));
}

}  // namespace

bool countsAsHit(CacheOutcome outcome) {
  return outcome == CacheOutcome::kHit || outcome == CacheOutcome::kRevalidated;
}

bool countsAsLookup(CacheOutcome outcome) { return outcome != CacheOutcome::kCoalesced; }

Metrics::Metrics() : Metrics(wallSeconds) {}

Metrics::Metrics(Clock clock)
    : clock_(std::move(clock)), started_(std::chrono::steady_clock::now()) {}

size_t Metrics::statusSlot(int status) {
  for (size_t i = 0; i < std::size(kStatuses); ++i) {
    if (kStatuses[i] == status) return i;
  }
  return kStatusSlots - 1;
}

void Metrics::recordRequest(RouteKind route, int status, double seconds) {
  RouteCounters& c = routes_[static_cast<size_t>(route)];
  c.by_status[statusSlot(status)].fetch_add(1, std::memory_order_relaxed);
  size_t bucket = 0;
  while (bucket < std::size(kBounds) && seconds > kBounds[bucket]) ++bucket;
  c.buckets[bucket].fetch_add(1, std::memory_order_relaxed);
  c.count.fetch_add(1, std::memory_order_relaxed);
  c.sum_micros.fetch_add(static_cast<uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

void Metrics::recordCache(bool manifest, CacheOutcome outcome) {
  cache_[manifest ? 1 : 0][static_cast<size_t>(outcome)].fetch_add(1, std::memory_order_relaxed);
  if (!countsAsLookup(outcome)) return;
  MinuteSlot& slot = currentSlot();
  (countsAsHit(outcome) ? slot.hits : slot.misses).fetch_add(1, std::memory_order_relaxed);
}

void Metrics::recordBytes(bool from_upstream, uint64_t bytes) {
  (from_upstream ? bytes_upstream_ : bytes_cache_).fetch_add(bytes, std::memory_order_relaxed);
  MinuteSlot& slot = currentSlot();
  (from_upstream ? slot.bytes_upstream : slot.bytes_cache)
      .fetch_add(bytes, std::memory_order_relaxed);
}

Metrics::MinuteSlot& Metrics::currentSlot() {
  int64_t minute = clock_() / 60;
  MinuteSlot& slot = history_[static_cast<size_t>(minute) % kHistoryMinutes];
  int64_t seen = slot.minute.load(std::memory_order_relaxed);
  if (seen < minute &&
      slot.minute.compare_exchange_strong(seen, minute, std::memory_order_relaxed)) {
    slot.hits.store(0, std::memory_order_relaxed);
    slot.misses.store(0, std::memory_order_relaxed);
    slot.bytes_cache.store(0, std::memory_order_relaxed);
    slot.bytes_upstream.store(0, std::memory_order_relaxed);
  }
  return slot;
}

std::vector<Metrics::Minute> Metrics::history() const {
  int64_t now_minute = clock_() / 60;
  std::vector<Minute> out;
  out.reserve(kHistoryMinutes);
  for (int64_t m = now_minute - static_cast<int64_t>(kHistoryMinutes) + 1; m <= now_minute; ++m) {
    const MinuteSlot& slot = history_[static_cast<size_t>(m) % kHistoryMinutes];
    Minute minute;
    minute.minute = m;
    if (slot.minute.load(std::memory_order_relaxed) == m) {
      minute.hits = slot.hits.load(std::memory_order_relaxed);
      minute.misses = slot.misses.load(std::memory_order_relaxed);
      minute.bytes_cache = slot.bytes_cache.load(std::memory_order_relaxed);
      minute.bytes_upstream = slot.bytes_upstream.load(std::memory_order_relaxed);
    }
    out.push_back(minute);
  }
  return out;
}

// The most pulled images, in bounded memory: the Space-Saving algorithm (Metwally et al.). A
// new image arriving at a full table takes the place of the least pulled one and inherits its
// count plus one. Counts of images that stay in the table are exact once they lead by more
// than the smallest count, which is what a top ten of a mirror's traffic looks like; a long
// tail of one-off tags costs one scan of the table per newcomer, not unbounded memory.
void Metrics::recordPull(std::string_view image) {
  std::lock_guard lock(pulls_mu_);
  if (auto it = pulls_.find(image); it != pulls_.end()) {
    ++it->second;
    return;
  }
  uint64_t inherited = 0;
  if (pulls_.size() >= kMaxImages) {
    auto least = std::min_element(pulls_.begin(), pulls_.end(),
                                  [](const auto& a, const auto& b) { return a.second < b.second; });
    inherited = least->second;
    pulls_.erase(least);
  }
  pulls_.emplace(std::string(image), inherited + 1);
}

std::vector<Metrics::ImageCount> Metrics::topImages(size_t n) const {
  std::vector<ImageCount> all;
  {
    std::lock_guard lock(pulls_mu_);
    all.reserve(pulls_.size());
    for (const auto& [image, pulls] : pulls_) all.push_back({image, pulls});
  }
  auto more = [](const ImageCount& a, const ImageCount& b) {
    return a.pulls != b.pulls ? a.pulls > b.pulls : a.image < b.image;
  };
  size_t keep = std::min(n, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(keep), all.end(), more);
  all.resize(keep);
  return all;
}

void Metrics::recordUpstreamError(std::string_view upstream, std::string_view kind) {
  std::lock_guard lock(mu_);
  ++upstream_errors_[{std::string(upstream), std::string(kind)}];
}

void Metrics::recordEviction(uint64_t items, uint64_t bytes) {
  evictions_.fetch_add(items, std::memory_order_relaxed);
  evicted_bytes_.fetch_add(bytes, std::memory_order_relaxed);
}

void Metrics::setGauges(Gauges gauges) { gauges_ = std::move(gauges); }

double Metrics::Summary::hitRatio() const {
  uint64_t lookups = hits + misses + stale + revalidated;
  return lookups == 0 ? 0.0 : static_cast<double>(hits + revalidated) / lookups;
}

Metrics::Summary Metrics::summary() const {
  Summary s;
  for (const auto& kind : cache_) {
    s.hits += kind[0].load();
    s.misses += kind[1].load();
    s.stale += kind[2].load();
    s.revalidated += kind[3].load();
    s.coalesced += kind[4].load();
  }
  s.bytes_from_cache = bytes_cache_.load();
  s.bytes_from_upstream = bytes_upstream_.load();
  s.evictions = evictions_.load();
  s.evicted_bytes = evicted_bytes_.load();
  for (const auto& route : routes_) s.requests += route.count.load();
  return s;
}

std::string Metrics::renderPrometheus() const {
  std::string out;
  out.reserve(16 * 1024);
  out +=
      "# HELP regcache_requests_total HTTP requests answered, by route and status.\n"
      "# TYPE regcache_requests_total counter\n";
  for (size_t r = 0; r < kRouteKinds; ++r) {
    for (size_t slot = 0; slot < kStatusSlots; ++slot) {
      uint64_t n = routes_[r].by_status[slot].load();
      if (n == 0) continue;
      if (slot < std::size(kStatuses)) {
        appendLine(out, "regcache_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                   kRouteNames[r], kStatuses[slot], static_cast<unsigned long long>(n));
      } else {
        appendLine(out, "regcache_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                   kRouteNames[r], static_cast<unsigned long long>(n));
      }
    }
  }

  out +=
      "# HELP regcache_request_duration_seconds Time to answer a request, by route.\n"
      "# TYPE regcache_request_duration_seconds histogram\n";
  for (size_t r = 0; r < kRouteKinds; ++r) {
    const RouteCounters& c = routes_[r];
    if (c.count.load() == 0) continue;
    uint64_t cumulative = 0;
    for (size_t b = 0; b < kBuckets; ++b) {
      cumulative += c.buckets[b].load();
      if (b < std::size(kBounds)) {
        appendLine(out, "regcache_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                   kRouteNames[r], kBounds[b], static_cast<unsigned long long>(cumulative));
      } else {
        appendLine(out, "regcache_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                   kRouteNames[r], static_cast<unsigned long long>(cumulative));
      }
    }
    appendLine(out, "regcache_request_duration_seconds_sum{route=\"%s\"} %.6f\n", kRouteNames[r],
               c.sum_micros.load() / 1e6);
    appendLine(out, "regcache_request_duration_seconds_count{route=\"%s\"} %llu\n", kRouteNames[r],
               static_cast<unsigned long long>(c.count.load()));
  }

  out +=
      "# HELP regcache_cache_requests_total Cache lookups, by kind and outcome.\n"
      "# TYPE regcache_cache_requests_total counter\n";
  for (size_t kind = 0; kind < 2; ++kind) {
    for (size_t o = 0; o < kCacheOutcomes; ++o) {
      appendLine(out, "regcache_cache_requests_total{kind=\"%s\",outcome=\"%s\"} %llu\n",
                 kind == 1 ? "manifest" : "blob", kOutcomeNames[o],
                 static_cast<unsigned long long>(cache_[kind][o].load()));
    }
  }

  out +=
      "# HELP regcache_served_bytes_total Body bytes sent to clients, by where they came from.\n"
      "# TYPE regcache_served_bytes_total counter\n";
  appendLine(out, "regcache_served_bytes_total{source=\"cache\"} %llu\n",
             static_cast<unsigned long long>(bytes_cache_.load()));
  appendLine(out, "regcache_served_bytes_total{source=\"upstream\"} %llu\n",
             static_cast<unsigned long long>(bytes_upstream_.load()));

  out +=
      "# HELP regcache_upstream_errors_total Upstream failures, by upstream and kind.\n"
      "# TYPE regcache_upstream_errors_total counter\n";
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, n] : upstream_errors_) {
      appendLine(out, "regcache_upstream_errors_total{upstream=\"%s\",kind=\"%s\"} %llu\n",
                 key.first.c_str(), key.second.c_str(), static_cast<unsigned long long>(n));
    }
  }

  out +=
      "# HELP regcache_evictions_total Cached items evicted to stay under max_cache_size.\n"
      "# TYPE regcache_evictions_total counter\n";
  appendLine(out, "regcache_evictions_total %llu\n",
             static_cast<unsigned long long>(evictions_.load()));
  out += "# TYPE regcache_evicted_bytes_total counter\n";
  appendLine(out, "regcache_evicted_bytes_total %llu\n",
             static_cast<unsigned long long>(evicted_bytes_.load()));

  auto gauge = [&out](const char* name, const char* help, uint64_t value) {
    appendLine(out, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help, name, name,
               static_cast<unsigned long long>(value));
  };
  gauge("regcache_fills_in_flight", "Blob fills from upstream in progress.",
        gauges_.fills_in_flight ? gauges_.fills_in_flight() : 0);
  gauge("regcache_connections", "Client connections open.",
        gauges_.connections ? gauges_.connections() : 0);
  gauge("regcache_disk_bytes_used", "Bytes of cached (upstream) content held.",
        gauges_.disk_bytes_used ? gauges_.disk_bytes_used() : 0);
  gauge("regcache_disk_bytes_bound", "max_cache_size.", gauges_.disk_bytes_bound);
  return out;
}

}  // namespace regcache::proxy
