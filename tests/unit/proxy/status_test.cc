// The status report (/api/status): after a scripted run of requests, fills and upstream
// exchanges, its numbers are what happened; the hour's history turns by the minute.
#include "proxy/status.h"

#include <simdjson.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "cache/usage.h"
#include "proxy/registry.h"
#include "tests/unit/cache/store_fixture.h"

namespace regcache::proxy {
namespace {

using cache::testing::StoreFixture;

Config testConfig(const std::filesystem::path& secret_file) {
  Config config = defaultConfig();
  config.max_cache_size = 1ull << 30;
  config.upstreams.clear();
  UpstreamConfig hub;
  hub.name = "docker.io";
  hub.url = "http://127.0.0.1:9";
  hub.is_default = true;
  hub.username = "robot";
  hub.password_file = secret_file.string();
  config.upstreams.push_back(hub);
  UpstreamConfig ghcr;
  ghcr.name = "ghcr.io";
  ghcr.url = "http://127.0.0.1:10";
  config.upstreams.push_back(ghcr);
  return config;
}

// One finished request, as the server reports it to Registry::onFinished, with the note
// the Registry left on it while routing (notePull: the image a manifest GET by tag pulls).
void finish(Registry& registry, std::string method, std::string path, int status, uint64_t bytes,
            std::string_view log_fields, std::string pulled = {}) {
  http::Request request;
  request.method = std::move(method);
  request.path = std::move(path);
  request.target = request.path;
  http::RequestNote note;
  note.detail = std::move(pulled);
  http::Completion completion;
  completion.status = status;
  completion.bytes = bytes;
  completion.log_fields = log_fields;
  completion.note = &note;
  registry.onFinished(&request, completion);
}

simdjson::dom::element parse(simdjson::dom::parser& parser, const std::string& json) {
  simdjson::dom::element doc;
  REQUIRE(parser.parse(json).get(doc) == simdjson::SUCCESS);
  return doc;
}

uint64_t u64(simdjson::dom::element e) { return e.get_uint64().value(); }
std::string str(simdjson::dom::element e) { return std::string(e.get_string().value()); }

const std::string kBlob = "sha256:" + std::string(64, 'a');

}  // namespace

TEST_CASE("Status: the JSON after a scripted pull matches what happened", "[proxy][status]") {
  StoreFixture fx;
  StoreFixture::writeFile(fx.root() / "secret", "hunter2-password\n");
  Config config = testConfig(fx.root() / "secret");
  BlockingPool pool(1);
  Registry registry(config, fx.index(), fx.store(), pool);

  // A pull of alpine:3.19 (a miss: manifest and a blob from upstream), a second client joining
  // the blob's fill, then two pulls from the cache; one revalidation that ended stale.
  const std::string manifest = "/v2/library/alpine/manifests/3.19";
  const std::string blob = "/v2/library/alpine/blobs/" + kBlob;
  const std::string alpine = "docker.io/library/alpine:3.19";
  finish(registry, "GET", manifest, 200, 500, "cache=miss", alpine);
  finish(registry, "GET", blob, 200, 4000, "cache=miss");
  finish(registry, "GET", blob, 200, 4000, "cache=coalesced");
  for (int i = 0; i < 2; ++i) {
    finish(registry, "GET", manifest, 200, 500, "cache=hit", alpine);
    finish(registry, "GET", blob, 200, 4000, "cache=hit");
  }
  finish(registry, "GET", "/v2/ghcr.io/org/app/manifests/v1", 200, 300,
         "cache=revalidate cache=stale", "ghcr.io/org/app:v1");
  // Not pulls: a HEAD, a manifest by digest (notePull notes neither), a 404.
  finish(registry, "HEAD", manifest, 200, 0, "cache=hit");
  finish(registry, "GET", "/v2/library/alpine/manifests/" + kBlob, 200, 500, "cache=hit");
  finish(registry, "GET", "/v2/library/nope/manifests/1", 404, 100, "", "docker.io/library/nope:1");

  UpstreamHealth& health = registry.pullThrough().health();
  health.recordRateLimit("docker.io", "100;w=21600", "97;w=21600");
  health.recordSuccess("docker.io", 1000);
  health.recordFailure("ghcr.io", "5xx", "upstream answered 503", 1010);

  StatusInputs inputs;
  inputs.config = &config;
  inputs.metrics = &registry.metrics();
  inputs.health = &health;
  inputs.token_cached = [](std::string_view upstream) { return upstream == "docker.io"; };
  upstream::FillTable::FillInfo fill;
  fill.digest = kBlob;
  fill.upstream = "docker.io";
  fill.repository = "library/alpine";
  fill.progress.state = upstream::Fill::State::kStreaming;
  fill.progress.size = 10000;
  fill.progress.written = 2500;
  fill.clients = 3;
  inputs.fills.push_back(fill);
  std::string json = renderStatusJson(buildStatusReport(std::move(inputs)));

  simdjson::dom::parser parser;
  auto doc = parse(parser, json);
  auto cache = doc["cache"];
  CHECK(u64(cache["hits"]) == 6);  // the HEAD and the by-digest GET were lookups too
  CHECK(u64(cache["misses"]) == 2);
  CHECK(u64(cache["coalesced"]) == 1);
  CHECK(u64(cache["stale"]) == 1);
  CHECK(cache["hit_ratio"].get_double().value() == Approx(6.0 / 9).margin(1e-4));
  CHECK(u64(cache["bytes_from_upstream"]) == 500 + 4000 + 4000);
  CHECK(u64(cache["bytes_from_cache"]) == 2 * 500 + 2 * 4000 + 300 + 500);
  CHECK(u64(doc["requests"]) == 11);

  auto top = doc["top_images"].get_array().value();
  REQUIRE(top.size() == 2);
  CHECK(str(top.at(0)["image"]) == "docker.io/library/alpine:3.19");
  CHECK(u64(top.at(0)["pulls"]) == 3);
  CHECK(str(top.at(1)["image"]) == "ghcr.io/org/app:v1");

  auto hub = doc["upstreams"].at(0);
  CHECK(str(hub["name"]) == "docker.io");
  CHECK(hub["reachable"].get_bool().value());
  CHECK(str(hub["token"]) == "cached");
  CHECK(hub["credentials"].get_bool().value());
  CHECK(str(hub["ratelimit"]["remaining"]) == "97;w=21600");
  auto ghcr = doc["upstreams"].at(1);
  CHECK(ghcr["reachable"].get_bool().value());  // a 503 is an answer
  CHECK(u64(ghcr["last_failure"]) == 1010);
  CHECK(str(ghcr["last_error"]) == "upstream answered 503");
  CHECK(str(ghcr["token"]) == "none");

  auto errors = doc["errors"].get_array().value();
  REQUIRE(errors.size() == 1);
  CHECK(str(errors.at(0)["kind"]) == "5xx");

  auto fills = doc["fills"];
  CHECK(u64(fills["in_flight"]) == 1);
  auto f = fills["list"].at(0);
  CHECK(str(f["state"]) == "streaming");
  CHECK(u64(f["written"]) == 2500);
  CHECK(u64(f["size"]) == 10000);
  CHECK(u64(f["clients"]) == 3);

  CHECK(u64(doc["disk"]["bound"]) == 1ull << 30);
  CHECK(doc["disk"]["cached_bytes"].is_null());  // not measured yet: never on the request path
  CHECK(doc["history"].get_array().value().size() == Metrics::kHistoryMinutes);
  CHECK(json.find("hunter2") == std::string::npos);
  CHECK(json.find("robot") == std::string::npos);
}

TEST_CASE("notePull: a manifest GET by tag names its image, nothing else does", "[proxy][status]") {
  StoreFixture fx;
  StoreFixture::writeFile(fx.root() / "secret", "x\n");
  Config config = testConfig(fx.root() / "secret");
  auto note = [&](std::string method, std::string path, std::string ns = {}) {
    http::Request request;
    request.method = std::move(method);
    request.path = std::move(path);
    auto route = parseRoute(request.path);
    REQUIRE(route);
    auto repo = resolveRepository(config, route->name, ns);
    REQUIRE(repo);
    http::RequestNote out;
    notePull(out, *route, request, *repo);
    return out.detail;
  };
  CHECK(note("GET", "/v2/library/alpine/manifests/3.19") == "docker.io/library/alpine:3.19");
  CHECK(note("GET", "/v2/org/app/manifests/v1", "ghcr.io") == "ghcr.io/org/app:v1");
  CHECK(note("HEAD", "/v2/library/alpine/manifests/3.19").empty());
  CHECK(note("GET", "/v2/library/alpine/manifests/" + kBlob).empty());
  CHECK(note("GET", "/v2/library/alpine/blobs/" + kBlob).empty());
}

TEST_CASE("Status: upstream failures feed the Prometheus counter and a ring of 20",
          "[proxy][status]") {
  StoreFixture fx;
  Config config = testConfig(fx.root() / "none");
  BlockingPool pool(1);
  Registry registry(config, fx.index(), fx.store(), pool);
  UpstreamHealth& health = registry.pullThrough().health();
  for (int i = 0; i < 25; ++i) {
    health.recordFailure("docker.io", "unreachable", "connect #" + std::to_string(i), 100 + i);
  }
  auto recent = health.recentFailures();
  REQUIRE(recent.size() == UpstreamHealth::kRecentFailures);
  CHECK(recent.front().message == "connect #24");
  CHECK(recent.back().message == "connect #5");
  CHECK_FALSE(health.state("docker.io")->reachable);
  CHECK(registry.metrics().renderPrometheus().find(
            "regcache_upstream_errors_total{upstream=\"docker.io\",kind=\"unreachable\"} 25") !=
        std::string::npos);
}

TEST_CASE("Metrics: the hour's history turns by the minute on an injected clock",
          "[proxy][status]") {
  int64_t now = 1'700'000'000 / 60 * 60;  // the start of a minute
  Metrics metrics([&now] { return now; });

  metrics.recordCache(true, CacheOutcome::kHit);
  metrics.recordBytes(false, 100);
  metrics.recordCache(false, CacheOutcome::kMiss);
  metrics.recordBytes(true, 5000);
  metrics.recordCache(false, CacheOutcome::kCoalesced);  // neither hit nor miss
  now += 59;
  metrics.recordCache(true, CacheOutcome::kRevalidated);  // same minute: a hit

  auto history = metrics.history();
  REQUIRE(history.size() == 60);
  CHECK(history.back().minute == now / 60);
  CHECK(history.back().hits == 2);
  CHECK(history.back().misses == 1);
  CHECK(history.back().bytes_cache == 100);
  CHECK(history.back().bytes_upstream == 5000);

  now += 1;  // the next minute
  metrics.recordCache(true, CacheOutcome::kStale);
  history = metrics.history();
  CHECK(history[58].hits == 2);
  CHECK(history.back().hits == 0);
  CHECK(history.back().misses == 1);

  // An hour later the first minute's slot is reused: its old counts are gone, not added to.
  now += 59 * 60;
  metrics.recordCache(true, CacheOutcome::kHit);
  history = metrics.history();
  CHECK(history.back().hits == 1);
  CHECK(history.back().misses == 0);
  CHECK(history.front().misses == 1);  // the minute after the first, 59 minutes ago
  now += 2 * 3600;                     // a quiet two hours: every minute reads zero
  for (const auto& minute : metrics.history()) CHECK(minute.hits + minute.misses == 0);
}

TEST_CASE("Metrics: the most pulled images survive a long tail of one-off tags",
          "[proxy][status]") {
  Metrics metrics([] { return int64_t{0}; });
  for (int i = 0; i < 50; ++i) metrics.recordPull("docker.io/library/alpine:3.19");
  for (int i = 0; i < 20; ++i) metrics.recordPull("docker.io/library/nginx:1");
  for (int i = 0; i < 2000; ++i) metrics.recordPull("ci/build:" + std::to_string(i));
  for (int i = 0; i < 5; ++i) metrics.recordPull("docker.io/library/nginx:1");

  auto top = metrics.topImages(10);
  REQUIRE(top.size() == 10);
  CHECK(top[0].image == "docker.io/library/alpine:3.19");
  CHECK(top[0].pulls == 50);
  CHECK(top[1].image == "docker.io/library/nginx:1");
  CHECK(top[1].pulls == 25);
}

TEST_CASE("StoreTotals: measured on the pool, agreeing with regcache du's count",
          "[proxy][status]") {
  StoreFixture fx;
  fx.putBlob("cached layer", "docker.io/library/alpine", cache::kBlobCached);
  fx.putBlob("another cached layer", "docker.io/library/alpine", cache::kBlobCached);
  fx.putBlob("pushed", "local/app", cache::kBlobPushed);
  auto pool = std::make_unique<BlockingPool>(1);
  StoreTotals totals(fx.index(), *pool);

  CHECK_FALSE(totals.get(1000).has_value());  // queued, not measured on the caller's thread
  pool.reset();                               // drains the measurement
  auto snapshot = totals.get(1010);
  REQUIRE(snapshot.has_value());
  CHECK(snapshot->measured_at == 1000);

  auto du = cache::measureUsage(fx.index(), fx.store(), {"docker.io"});
  REQUIRE(du.isOk());
  CHECK(snapshot->usage.cached_bytes == du->cached_bytes);
  CHECK(snapshot->usage.pushed_bytes == du->pushed_bytes);
  CHECK(snapshot->usage.cached_blobs == 2);
  CHECK(snapshot->usage.pushed_bytes == 6);
}

TEST_CASE("Status page: embedded, and its policy admits exactly its own script and style",
          "[proxy][status]") {
  std::string_view html = statusPageHtml();
  REQUIRE(html.starts_with("<!doctype html>"));
  CHECK(html.find("<script>") == html.rfind("<script>"));  // one of each: one hash each
  CHECK(html.find("<style>") == html.rfind("<style>"));
  // Nothing is fetched from elsewhere (the SVG namespace URI is a name, not a fetch).
  CHECK(html.find("src=") == std::string_view::npos);
  CHECK(html.find("href=\"http") == std::string_view::npos);
  CHECK(html.find("url(") == std::string_view::npos);
  CHECK(html.find("@import") == std::string_view::npos);

  const std::string& policy = statusPagePolicy();
  CHECK(policy.find("default-src 'none'") != std::string::npos);
  CHECK(policy.find("script-src 'sha256-") != std::string::npos);
  CHECK(policy.find("style-src 'sha256-") != std::string::npos);
  CHECK(policy.find("unsafe-inline") == std::string::npos);

  http::Response response = statusPageResponse();
  CHECK(*response.headers.get("Content-Type") == "text/html; charset=utf-8");
  CHECK(*response.headers.get("Cache-Control") == "no-cache");
  CHECK(response.body.size() == html.size());
}

}  // namespace regcache::proxy
