// The status report: what /api/status answers and the status page (GET /, /ui/) shows. It is
// gathered from the counters (Metrics), the upstream exchanges and fills (PullThrough), the
// index's blob totals (StoreTotals, measured on the pool) and the config, then rendered as
// JSON. Nothing in it is a credential, a token or a client address.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/index.h"
#include "cache/usage.h"
#include "proxy/config.h"
#include "proxy/http.h"
#include "proxy/loop.h"
#include "proxy/metrics.h"
#include "proxy/upstream_health.h"
#include "upstream/fill.h"

namespace regcache::proxy {

// The index's blob totals (cached against pushed bytes), measured on the blocking pool by the
// same counting `regcache du` uses, at most every kMaxAgeSeconds and only while someone asks:
// never on the request path.
class StoreTotals {
 public:
  static constexpr int64_t kMaxAgeSeconds = 30;

  struct Snapshot {
    cache::StoreUsage usage;  // only the blob totals are filled (cache::measureBlobTotals)
    int64_t measured_at = 0;  // Unix seconds
  };

  // `index` and `pool` outlive the StoreTotals; the pool must be drained before it goes.
  StoreTotals(const cache::Index& index, BlockingPool& pool) : index_(index), pool_(pool) {}

  // The last measurement (nullopt before the first one lands). Queues a new one on the pool
  // when the last is older than kMaxAgeSeconds at `now` and none is running. Any thread.
  std::optional<Snapshot> get(int64_t now);

 private:
  const cache::Index& index_;
  BlockingPool& pool_;
  std::atomic<bool> measuring_{false};
  std::mutex mu_;
  std::optional<Snapshot> last_;  // guarded by mu_
  int64_t asked_at_ = 0;          // guarded by mu_: when the last measurement was queued
};

struct StatusReport {
  struct Upstream {
    std::string name;
    std::string url;
    bool is_default = false;
    std::optional<UpstreamHealth::State> health;  // nullopt: nothing exchanged yet
    bool token_cached = false;  // a bearer token is cached (its value is never reported)
    bool credentials = false;   // a username is configured
  };
  struct Disk {
    uint64_t used = 0;   // cached bytes held, as eviction counts them
    uint64_t bound = 0;  // max_cache_size
    std::optional<StoreTotals::Snapshot> totals;
    uint64_t evictions = 0;
    uint64_t evicted_bytes = 0;
  };

  std::string version;
  int64_t now = 0;  // Unix seconds
  int64_t uptime_seconds = 0;
  bool offline = false;
  uint64_t connections = 0;
  std::vector<Upstream> upstreams;
  Metrics::Summary cache;
  std::vector<Metrics::Minute> history;
  Disk disk;
  std::vector<upstream::FillTable::FillInfo> fills;
  std::vector<Metrics::ImageCount> top_images;
  std::vector<UpstreamHealth::Failure> errors;
};

// What a report is built from. Pointers are borrowed for the call.
struct StatusInputs {
  const Config* config = nullptr;
  const Metrics* metrics = nullptr;
  const UpstreamHealth* health = nullptr;
  std::function<bool(std::string_view upstream)> token_cached;  // optional
  std::vector<upstream::FillTable::FillInfo> fills;
  std::optional<StoreTotals::Snapshot> totals;
};

inline constexpr size_t kTopImages = 10;

// Gathers the report. Any thread; takes the locks of Metrics and UpstreamHealth briefly.
StatusReport buildStatusReport(StatusInputs inputs);

// The /api/status document (fields in README.md, "Status API").
std::string renderStatusJson(const StatusReport& report);

// The status page (proxy/status_page.html, embedded at build time) with its headers: a
// Content-Security-Policy that admits exactly the page's own inline script and style by hash.
http::Response statusPageResponse();
// The page's bytes, and the CSP it is served with (for tests).
std::string_view statusPageHtml();
const std::string& statusPagePolicy();

}  // namespace regcache::proxy
