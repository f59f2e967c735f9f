// The status report: gathered from the live counters, rendered as JSON, and the page that
// reads it.
#include "proxy/status.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <chrono>
#include <cstdio>

#include "proxy/errors.h"

namespace regcache::proxy {

// The page's bytes: status_page.cc, generated at build time from proxy/status_page.html
// (cmake/embed_file.cmake).
extern const unsigned char kStatusPage[];
extern const size_t kStatusPageSize;

// ---------------------------------------------------------------------------------------------
// StoreTotals

std::optional<StoreTotals::Snapshot> StoreTotals::get(int64_t now) {
  std::lock_guard lock(mu_);
  bool stale = !last_ || now - last_->measured_at >= kMaxAgeSeconds;
  if (stale && now - asked_at_ >= kMaxAgeSeconds && !measuring_.exchange(true)) {
    asked_at_ = now;
    pool_.submit([this, now] {
      auto usage = cache::measureBlobTotals(index_);
      if (usage) {
        std::lock_guard lock(mu_);
        last_ = Snapshot{std::move(*usage), now};
      }
      measuring_.store(false);
    });
  }
  return last_;
}

// ---------------------------------------------------------------------------------------------
// Building the report

namespace {

StatusReport::Disk diskOf(const Metrics& metrics, const Config& config,
                          const std::optional<StoreTotals::Snapshot>& totals) {
  const Metrics::Gauges& gauges = metrics.gauges();
  Metrics::Summary summary = metrics.summary();
  StatusReport::Disk disk;
  disk.bound = config.max_cache_size;
  disk.totals = totals;
  // The housekeeper's running count when serve wired it; the index's totals otherwise.
  if (gauges.disk_bytes_used) {
    disk.used = gauges.disk_bytes_used();
  } else if (totals) {
    disk.used = totals->usage.cached_bytes;
  }
  disk.evictions = summary.evictions;
  disk.evicted_bytes = summary.evicted_bytes;
  return disk;
}

}  // namespace

StatusReport buildStatusReport(StatusInputs inputs) {
  const Config& config = *inputs.config;
  const Metrics& metrics = *inputs.metrics;
  StatusReport report;
  report.version = REGCACHE_VERSION;
  report.now = metrics.now();
  report.uptime_seconds = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::steady_clock::now() - metrics.started())
                              .count();
  report.offline = config.offline;
  const Metrics::Gauges& gauges = metrics.gauges();
  report.connections = gauges.connections ? gauges.connections() : 0;

  for (const UpstreamConfig& u : config.upstreams) {
    StatusReport::Upstream up;
    up.name = u.name;
    up.url = u.url;
    up.is_default = u.is_default;
    if (inputs.health) up.health = inputs.health->state(u.name);
    up.token_cached = inputs.token_cached && inputs.token_cached(u.name);
    up.credentials = !u.username.empty();
    report.upstreams.push_back(std::move(up));
  }

  report.cache = metrics.summary();
  report.history = metrics.history();
  report.disk = diskOf(metrics, config, inputs.totals);
  report.fills = std::move(inputs.fills);
  report.top_images = metrics.topImages(kTopImages);
  if (inputs.health) report.errors = inputs.health->recentFailures();
  return report;
}

// ---------------------------------------------------------------------------------------------
// JSON

namespace {

std::string n(uint64_t v) { return std::to_string(v); }
std::string n(int64_t v) { return std::to_string(v); }

// A Unix time, or null for "never" (0).
std::string timeOrNull(int64_t t) { return t == 0 ? "null" : std::to_string(t); }

void appendStringOrNull(std::string& out, std::string_view s) {
  if (s.empty()) {
    out += "null";
  } else {
    appendJsonString(out, s);
  }
}

const char* fillState(upstream::Fill::State state) {
  switch (state) {
    case upstream::Fill::State::kStarting:
      return "starting";
    case upstream::Fill::State::kStreaming:
      return "streaming";
    case upstream::Fill::State::kVerifying:
      return "verifying";
    case upstream::Fill::State::kDone:
      return "done";
    case upstream::Fill::State::kFailed:
      return "failed";
  }
  return "unknown";
}

void appendUpstream(std::string& out, const StatusReport::Upstream& u) {
  out += "{\"name\":";
  appendJsonString(out, u.name);
  out += ",\"url\":";
  appendJsonString(out, u.url);
  out += std::string(",\"default\":") + (u.is_default ? "true" : "false");
  const UpstreamHealth::State* h = u.health ? &*u.health : nullptr;
  out += ",\"reachable\":" + std::string(!h ? "null" : h->reachable ? "true" : "false");
  out += ",\"last_success\":" + timeOrNull(h ? h->last_success : 0);
  out += ",\"last_failure\":" + timeOrNull(h ? h->last_failure : 0);
  out += ",\"last_error\":";
  appendStringOrNull(out, h ? std::string_view(h->last_error) : std::string_view());
  out += std::string(",\"token\":\"") + (u.token_cached ? "cached" : "none") + "\"";
  out += std::string(",\"credentials\":") + (u.credentials ? "true" : "false");
  out += ",\"ratelimit\":{\"limit\":";
  appendStringOrNull(out, h ? std::string_view(h->ratelimit_limit) : std::string_view());
  out += ",\"remaining\":";
  appendStringOrNull(out, h ? std::string_view(h->ratelimit_remaining) : std::string_view());
  out += "}}";
}

void appendCache(std::string& out, const Metrics::Summary& s) {
  char ratio[32];
  std::snprintf(ratio, sizeof ratio, "%.4f", s.hitRatio());
  out += ",\"cache\":{\"hits\":" + n(s.hits) + ",\"misses\":" + n(s.misses) +
         ",\"stale\":" + n(s.stale) + ",\"revalidated\":" + n(s.revalidated) +
         ",\"coalesced\":" + n(s.coalesced) + ",\"hit_ratio\":" + ratio +
         ",\"bytes_from_cache\":" + n(s.bytes_from_cache) +
         ",\"bytes_from_upstream\":" + n(s.bytes_from_upstream) + "}";
}

void appendHistory(std::string& out, const std::vector<Metrics::Minute>& history) {
  out += ",\"history\":[";
  for (size_t i = 0; i < history.size(); ++i) {
    const Metrics::Minute& m = history[i];
    out += (i ? ",{\"minute\":" : "{\"minute\":") + n(m.minute * 60) + ",\"hits\":" + n(m.hits) +
           ",\"misses\":" + n(m.misses) + ",\"bytes_cache\":" + n(m.bytes_cache) +
           ",\"bytes_upstream\":" + n(m.bytes_upstream) + "}";
  }
  out += "]";
}

void appendDisk(std::string& out, const StatusReport::Disk& d) {
  out += ",\"disk\":{\"used\":" + n(d.used) + ",\"bound\":" + n(d.bound);
  if (d.totals) {
    const cache::StoreUsage& u = d.totals->usage;
    out += ",\"cached_bytes\":" + n(u.cached_bytes) + ",\"pushed_bytes\":" + n(u.pushed_bytes) +
           ",\"cached_blobs\":" + n(u.cached_blobs) + ",\"pushed_blobs\":" + n(u.pushed_blobs) +
           ",\"measured_at\":" + n(d.totals->measured_at);
  } else {
    out +=
        ",\"cached_bytes\":null,\"pushed_bytes\":null,\"cached_blobs\":null,"
        "\"pushed_blobs\":null,\"measured_at\":null";
  }
  out += ",\"evictions\":" + n(d.evictions) + ",\"evicted_bytes\":" + n(d.evicted_bytes) + "}";
}

void appendFills(std::string& out, const std::vector<upstream::FillTable::FillInfo>& fills) {
  out += ",\"fills\":{\"in_flight\":" + n(static_cast<uint64_t>(fills.size())) + ",\"list\":[";
  for (size_t i = 0; i < fills.size(); ++i) {
    const upstream::FillTable::FillInfo& f = fills[i];
    out += i ? ",{\"digest\":" : "{\"digest\":";
    appendJsonString(out, f.digest);
    out += ",\"upstream\":";
    appendJsonString(out, f.upstream);
    out += ",\"repository\":";
    appendJsonString(out, f.repository);
    out += std::string(",\"state\":\"") + fillState(f.progress.state) + "\"";
    out += ",\"written\":" + n(f.progress.written) +
           ",\"size\":" + (f.progress.size ? n(*f.progress.size) : std::string("null")) +
           ",\"clients\":" + n(static_cast<uint64_t>(f.clients)) + "}";
  }
  out += "]}";
}

void appendTopImages(std::string& out, const std::vector<Metrics::ImageCount>& images) {
  out += ",\"top_images\":[";
  for (size_t i = 0; i < images.size(); ++i) {
    out += i ? ",{\"image\":" : "{\"image\":";
    appendJsonString(out, images[i].image);
    out += ",\"pulls\":" + n(images[i].pulls) + "}";
  }
  out += "]";
}

void appendErrors(std::string& out, const std::vector<UpstreamHealth::Failure>& errors) {
  out += ",\"errors\":[";
  for (size_t i = 0; i < errors.size(); ++i) {
    const UpstreamHealth::Failure& e = errors[i];
    out += (i ? ",{\"time\":" : "{\"time\":") + n(e.time) + ",\"upstream\":";
    appendJsonString(out, e.upstream);
    out += ",\"kind\":";
    appendJsonString(out, e.kind);
    out += ",\"message\":";
    appendJsonString(out, e.message);
    out += "}";
  }
  out += "]";
}

}  // namespace

std::string renderStatusJson(const StatusReport& r) {
  std::string out;
  out.reserve(8192);
  out += "{\"version\":";
  appendJsonString(out, r.version);
  out += ",\"time\":" + n(r.now) + ",\"uptime_seconds\":" + n(r.uptime_seconds) +
         ",\"offline\":" + (r.offline ? "true" : "false") + ",\"requests\":" + n(r.cache.requests) +
         ",\"connections\":" + n(r.connections) + ",\"upstreams\":[";
  for (size_t i = 0; i < r.upstreams.size(); ++i) {
    if (i > 0) out += ",";
    appendUpstream(out, r.upstreams[i]);
  }
  out += "]";
  appendCache(out, r.cache);
  appendHistory(out, r.history);
  appendDisk(out, r.disk);
  appendFills(out, r.fills);
  appendTopImages(out, r.top_images);
  appendErrors(out, r.errors);
  out += "}";
  return out;
}

// ---------------------------------------------------------------------------------------------
// The page

namespace {

// 'sha256-<base64>' of the text between the first `open` tag and `close` in `html`: what CSP
// level 2 matches an inline <script> or <style> against.
std::string inlineHash(std::string_view html, std::string_view open, std::string_view close) {
  size_t start = html.find(open);
  size_t end = start == std::string_view::npos ? start : html.find(close, start);
  if (end == std::string_view::npos) return "'none'";
  std::string_view text = html.substr(start + open.size(), end - start - open.size());
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  unsigned char encoded[4 * ((SHA256_DIGEST_LENGTH + 2) / 3) + 1];
  EVP_EncodeBlock(encoded, digest, SHA256_DIGEST_LENGTH);
  return "'sha256-" + std::string(reinterpret_cast<const char*>(encoded)) + "'";
}

}  // namespace

std::string_view statusPageHtml() {
  return {reinterpret_cast<const char*>(kStatusPage), kStatusPageSize};
}

// No 'unsafe-inline': the one inline script and the one inline style are admitted by their
// hashes, so an injected tag would not run. The script may fetch only from this origin.
const std::string& statusPagePolicy() {
  static const std::string policy =
      "default-src 'none'; script-src " + inlineHash(statusPageHtml(), "<script>", "</script>") +
      "; style-src " + inlineHash(statusPageHtml(), "<style>", "</style>") +
      "; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
      "frame-ancestors 'none'";
  return policy;
}

http::Response statusPageResponse() {
  http::Response response;
  response.headers.add("Content-Type", "text/html; charset=utf-8");
  response.headers.add("Content-Security-Policy", statusPagePolicy());
  response.headers.add("Cache-Control", "no-cache");
  response.headers.add("X-Content-Type-Options", "nosniff");
  response.headers.add("Referrer-Policy", "no-referrer");
  response.body = std::string(statusPageHtml());
  return response;
}

}  // namespace regcache::proxy
