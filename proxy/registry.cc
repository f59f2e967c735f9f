// The API's front door: routing, and the listing endpoints (base, catalog, tags, referrers).
#include "proxy/registry.h"

#include <spdlog/spdlog.h>

#include <charconv>

#include "proxy/errors.h"
#include "proxy/manifest.h"

namespace regcache::proxy {

namespace {

// Largest page a listing returns when the client asks for none or for more.
constexpr size_t kMaxListing = 10000;

class EndHandler : public http::Handler {
 public:
  explicit EndHandler(std::function<void()> on_end) : on_end_(std::move(on_end)) {}
  void onEnd() override { on_end_(); }

 private:
  std::function<void()> on_end_;
};

// The page size from `n`: kMaxListing when absent, nullopt when it is no number.
std::optional<size_t> pageSize(const http::Request& request) {
  auto n = request.queryParam("n");
  if (!n) return kMaxListing;
  size_t value = 0;
  auto [end, ec] = std::from_chars(n->data(), n->data() + n->size(), value);
  if (ec != std::errc() || end != n->data() + n->size()) return std::nullopt;
  return std::min(value, kMaxListing);
}

std::string jsonStringList(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out.push_back(',');
    appendJsonString(out, items[i]);
  }
  out.push_back(']');
  return out;
}

http::Response jsonResponse(std::string body, std::string_view content_type) {
  http::Response response;
  response.headers.add("Content-Type", std::string(content_type));
  response.body = std::move(body);
  return response;
}

bool methodIs(const http::Request& request, std::string_view a, std::string_view b = {}) {
  return request.method == a || (!b.empty() && request.method == b);
}

}  // namespace

void respond(const std::shared_ptr<http::Exchange>& ex, http::Response response) {
  response.headers.add("Docker-Distribution-API-Version", "registry/2.0");
  ex->respond(std::move(response));
}

std::unique_ptr<http::Handler> whenComplete(std::function<void()> on_end) {
  return std::make_unique<EndHandler>(std::move(on_end));
}

namespace {

RouteKind routeKind(std::string_view path) {
  if (path == "/v2/" || path == "/v2") return RouteKind::kBase;
  if (!path.starts_with("/v2/")) return RouteKind::kOther;
  if (path == "/v2/_catalog") return RouteKind::kCatalog;
  if (path.find("/blobs/uploads") != std::string_view::npos) return RouteKind::kUpload;
  if (path.find("/manifests/") != std::string_view::npos) return RouteKind::kManifest;
  if (path.find("/blobs/") != std::string_view::npos) return RouteKind::kBlob;
  if (path.ends_with("/tags/list")) return RouteKind::kTags;
  if (path.find("/referrers/") != std::string_view::npos) return RouteKind::kReferrers;
  return RouteKind::kOther;
}

std::optional<CacheOutcome> cacheOutcome(std::string_view fields) {
  size_t at = fields.rfind("cache=");  // the last word: a revalidation can end stale
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view value = fields.substr(at + 6);
  value = value.substr(0, value.find(' '));
  if (value == "hit") return CacheOutcome::kHit;
  if (value == "miss") return CacheOutcome::kMiss;
  if (value == "stale") return CacheOutcome::kStale;
  if (value == "revalidate") return CacheOutcome::kRevalidated;
  if (value == "coalesced") return CacheOutcome::kCoalesced;
  return std::nullopt;
}

RouteKind routeKindOf(Endpoint endpoint) {
  switch (endpoint) {
    case Endpoint::kBase:
      return RouteKind::kBase;
    case Endpoint::kCatalog:
      return RouteKind::kCatalog;
    case Endpoint::kTags:
      return RouteKind::kTags;
    case Endpoint::kManifest:
      return RouteKind::kManifest;
    case Endpoint::kBlob:
      return RouteKind::kBlob;
    case Endpoint::kUploadStart:
    case Endpoint::kUpload:
      return RouteKind::kUpload;
    case Endpoint::kReferrers:
      return RouteKind::kReferrers;
  }
  return RouteKind::kOther;
}

}  // namespace

void notePull(http::RequestNote& note, const Route& route, const http::Request& request,
              const Repository& repo) {
  if (route.endpoint != Endpoint::kManifest || request.method != "GET") return;
  if (route.reference.find(':') != std::string::npos) return;  // by digest
  note.detail = repo.key;
  note.detail += ':';
  note.detail += route.reference;
}

void Registry::onFinished(const http::Request* request, const http::Completion& completion) {
  if (request != nullptr) metrics_.requestEnded();
  // Routed requests carry their route in the note (onAdmitted); the rest (refused by auth, no
  // API path) are classified by their path.
  const http::RequestNote* note = completion.note;
  RouteKind route = RouteKind::kOther;
  if (note != nullptr && note->kind >= 0) {
    route = static_cast<RouteKind>(note->kind);
  } else if (request != nullptr) {
    route = routeKind(request->path);
  }
  metrics_.recordRequest(route, completion.status, completion.seconds);
  if (note != nullptr && completion.status == 200 && !note->detail.empty()) {
    metrics_.recordPull(note->detail);
  }
  if (route != RouteKind::kManifest && route != RouteKind::kBlob) return;
  auto outcome = cacheOutcome(completion.log_fields);
  if (!outcome) return;
  metrics_.recordCache(route == RouteKind::kManifest, *outcome);
  bool from_upstream = *outcome == CacheOutcome::kMiss || *outcome == CacheOutcome::kCoalesced;
  metrics_.recordBytes(from_upstream, completion.bytes);
}

bool Registry::serveOperational(const ExchangePtr& ex) {
  const http::Request& request = ex->request();
  if (!methodIs(request, "GET", "HEAD")) return false;
  const std::string& path = request.path;
  if (path == "/metrics") {
    respond(ex, jsonResponse(metrics_.renderPrometheus(), "text/plain; version=0.0.4"));
  } else if (path == "/healthz") {
    respond(ex, jsonResponse("{\"status\":\"ok\"}", "application/json"));
  } else if (path == "/readyz") {
    // Ready means the store answers; upstreams being down is what the cache is for.
    auto txn = index_.read();
    if (txn) {
      respond(ex, jsonResponse("{\"status\":\"ready\"}", "application/json"));
    } else {
      http::Response response =
          jsonResponse("{\"status\":\"store unavailable\"}", "application/json");
      response.status = 503;
      respond(ex, std::move(response));
    }
  } else if (path == "/api/status") {
    getStatus(ex);
  } else if (path == "/" || path == "/ui/" || path == "/ui") {
    // Like /api/status, the page is behind client auth (onRequest): it follows anonymous_pull.
    ex->respond(statusPageResponse());
  } else {
    return false;
  }
  return true;
}

void Registry::getStatus(const ExchangePtr& ex) {
  StatusInputs inputs;
  inputs.config = &config_;
  inputs.metrics = &metrics_;
  inputs.health = &pull_.health();
  inputs.token_cached = [this](std::string_view upstream) { return pull_.holdsToken(upstream); };
  inputs.fills = pull_.fills().snapshot();
  inputs.totals = store_totals_.get(metrics_.now());
  http::Response response =
      jsonResponse(renderStatusJson(buildStatusReport(std::move(inputs))), "application/json");
  response.headers.add("Cache-Control", "no-cache");
  respond(ex, std::move(response));
}

Registry::Registry(const Config& config, const cache::Index& index, const cache::BlobStore& store,
                   BlockingPool& pool, Metrics* shared_metrics, UploadTable* shared_uploads)
    : config_(config),
      metrics_(shared_metrics != nullptr ? *shared_metrics : own_metrics_),
      index_(index),
      store_(store),
      pool_(pool),
      own_uploads_(index, store),
      uploads_(shared_uploads != nullptr ? *shared_uploads : own_uploads_),
      pull_(config, index, store, pool),
      store_totals_(index, pool) {
  pull_.health().setFailureCounter([this](std::string_view upstream, std::string_view kind) {
    metrics_.recordUpstreamError(upstream, kind);
  });
  if (shared_metrics == nullptr) {
    Metrics::Gauges gauges;
    gauges.fills_in_flight = [this] { return pull_.fills().inFlight(); };
    gauges.disk_bytes_bound = config.max_cache_size;
    metrics_.setGauges(std::move(gauges));  // serve() sets them all, for every generation
  }
}

Status Registry::openAuth() {
  if (!config_.htpasswd) return Status::ok();
  auto auth = ClientAuth::open(ClientAuth::optionsFrom(config_), pool_);
  if (!auth) return auth.status();
  auth_ = std::move(*auth);
  spdlog::info("auth.start htpasswd={} anonymous_pull={} allow_entries={}", *config_.htpasswd,
               config_.anonymous_pull, config_.auth_allow.size());
  return Status::ok();
}

Status Registry::reloadAuth() { return auth_ != nullptr ? auth_->reload() : Status::ok(); }

std::unique_ptr<http::Handler> Registry::onRequest(std::shared_ptr<http::Exchange> ex) {
  metrics_.requestStarted();
  // Client auth first (proxy/auth.h): a refused request costs no routing work.
  if (auth_ != nullptr) {
    return auth_->admit(ex, [this](const ExchangePtr& admitted) { return onAdmitted(admitted); });
  }
  return onAdmitted(ex);
}

std::unique_ptr<http::Handler> Registry::onAdmitted(const ExchangePtr& ex) {
  const http::Request& request = ex->request();
  if (!request.path.starts_with("/v2") && serveOperational(ex)) return nullptr;
  auto route = parseRoute(request.path);
  if (route) ex->note().kind = static_cast<int>(routeKindOf(route->endpoint));
  if (!route) {
    if (route.status().code() == Code::kNotFound) {
      respond(ex,
              errorResponse(ErrorCode::kNameUnknown, "no such API endpoint: " + request.path, 404));
    } else {
      respond(ex, errorResponse(ErrorCode::kNameInvalid, route.status().message()));
    }
    return nullptr;
  }
  return dispatch(ex, *route);
}

std::unique_ptr<http::Handler> Registry::dispatch(const ExchangePtr& ex, const Route& route) {
  const http::Request& request = ex->request();
  auto unsupported = [&] {
    respond(ex, errorResponse(ErrorCode::kUnsupported,
                              request.method + " is not supported on " + request.path));
    return nullptr;
  };

  if (route.endpoint == Endpoint::kBase) {
    if (!methodIs(request, "GET", "HEAD")) return unsupported();
    getBase(ex);
    return nullptr;
  }
  if (route.endpoint == Endpoint::kCatalog) {
    if (!methodIs(request, "GET")) return unsupported();
    getCatalog(ex);
    return nullptr;
  }

  auto repo = resolveRepository(config_, route.name, request.queryParam("ns").value_or(""));
  if (!repo) {
    respond(ex, errorResponse(ErrorCode::kNameUnknown, repo.status().message()));
    return nullptr;
  }
  notePull(ex->note(), route, request, *repo);
  bool writes = !methodIs(request, "GET", "HEAD");
  if (writes && !repo->isLocal()) {
    std::string where;
    for (const auto& ns : config_.local_namespaces) {
      where += (where.empty() ? "" : ", ") + ns + "/";
    }
    respond(ex, errorResponse(ErrorCode::kUnsupported,
                              route.name + " is mirrored from " + repo->upstream->name +
                                  " and is read-only; push into a local namespace (" +
                                  (where.empty() ? std::string("none configured") : where) + ")"));
    return nullptr;
  }

  switch (route.endpoint) {
    case Endpoint::kTags:
      if (!methodIs(request, "GET")) return unsupported();
      getTags(ex, route, *repo);
      return nullptr;
    case Endpoint::kReferrers:
      if (!methodIs(request, "GET")) return unsupported();
      getReferrers(ex, route, *repo);
      return nullptr;
    case Endpoint::kManifest:
      if (methodIs(request, "GET", "HEAD")) {
        getManifest(ex, route, *repo);
        return nullptr;
      }
      if (methodIs(request, "PUT")) return putManifest(ex, route, *repo);
      if (methodIs(request, "DELETE")) {
        deleteManifest(ex, route, *repo);
        return nullptr;
      }
      return unsupported();
    case Endpoint::kBlob:
      if (methodIs(request, "GET", "HEAD")) {
        getBlob(ex, route, *repo);
        return nullptr;
      }
      if (methodIs(request, "DELETE")) {
        deleteBlob(ex, route, *repo);
        return nullptr;
      }
      return unsupported();
    case Endpoint::kUploadStart:
      if (!methodIs(request, "POST")) return unsupported();
      return startUpload(ex, route, *repo);
    case Endpoint::kUpload:
      if (methodIs(request, "PATCH")) return patchUpload(ex, route, *repo);
      if (methodIs(request, "PUT")) return putUpload(ex, route, *repo);
      if (methodIs(request, "GET")) {
        getUpload(ex, route, *repo);
        return nullptr;
      }
      if (methodIs(request, "DELETE")) {
        deleteUpload(ex, route, *repo);
        return nullptr;
      }
      return unsupported();
    default:
      return unsupported();
  }
}

// ---------------------------------------------------------------------------------------------
// Listings

void Registry::getBase(const ExchangePtr& ex) {
  respond(ex, jsonResponse("{}", "application/json"));
}

void Registry::getCatalog(const ExchangePtr& ex) {
  const http::Request& request = ex->request();
  auto n = pageSize(request);
  if (!n) {
    respond(ex, errorResponse(ErrorCode::kUnsupported, "n must be a number", 400));
    return;
  }
  auto txn = index_.read();
  if (!txn) {
    respond(ex, errorFromStatus(txn.status(), ErrorCode::kNameUnknown, ErrorCode::kNameInvalid));
    return;
  }
  std::string last = request.queryParam("last").value_or("");
  // One more than asked tells whether a next page exists.
  auto repositories = *n == 0 ? std::vector<std::string>{} : txn->repositories(last, *n + 1);
  bool more = repositories.size() > *n;
  if (more) repositories.resize(*n);

  http::Response response =
      jsonResponse("{\"repositories\":" + jsonStringList(repositories) + "}", "application/json");
  if (more) {
    response.headers.add("Link", "</v2/_catalog?n=" + std::to_string(*n) +
                                     "&last=" + repositories.back() + ">; rel=\"next\"");
  }
  respond(ex, std::move(response));
}

void Registry::getTags(const ExchangePtr& ex, const Route& route, const Repository& repo) {
  if (!repo.isLocal() && !config_.offline) {
    std::weak_ptr<http::Exchange> weak = ex;
    pull_.getTags(ex, route, repo, [this, weak, route, repo] {
      if (auto ex = weak.lock()) getCachedTags(ex, route, repo);
    });
    return;
  }
  getCachedTags(ex, route, repo);
}

void Registry::getCachedTags(const ExchangePtr& ex, const Route& route, const Repository& repo) {
  const http::Request& request = ex->request();
  auto n = pageSize(request);
  if (!n) {
    respond(ex, errorResponse(ErrorCode::kUnsupported, "n must be a number", 400));
    return;
  }
  auto txn = index_.read();
  if (!txn) {
    respond(ex, errorFromStatus(txn.status(), ErrorCode::kNameUnknown, ErrorCode::kNameInvalid));
    return;
  }
  if (!txn->hasRepository(repo.key)) {
    respond(ex, errorResponse(ErrorCode::kNameUnknown, "repository " + route.name + " not known"));
    return;
  }
  std::string last = request.queryParam("last").value_or("");
  auto tags = *n == 0 ? std::vector<std::string>{} : txn->tags(repo.key, last, *n + 1);
  bool more = tags.size() > *n;
  if (more) tags.resize(*n);

  std::string body = "{\"name\":";
  appendJsonString(body, route.name);
  body += ",\"tags\":" + jsonStringList(tags) + "}";
  http::Response response = jsonResponse(std::move(body), "application/json");
  if (more) {
    response.headers.add("Link", "</v2/" + route.name + "/tags/list?n=" + std::to_string(*n) +
                                     "&last=" + tags.back() + ">; rel=\"next\"");
  }
  respond(ex, std::move(response));
}

void Registry::getReferrers(const ExchangePtr& ex, const Route& route, const Repository& repo) {
  auto digest = cache::Digest::parse(route.reference);
  if (!digest) {
    respond(ex, errorResponse(ErrorCode::kDigestInvalid, digest.status().message()));
    return;
  }
  auto txn = index_.read();
  if (!txn) {
    respond(ex, errorFromStatus(txn.status(), ErrorCode::kNameUnknown, ErrorCode::kNameInvalid));
    return;
  }
  auto filter = ex->request().queryParam("artifactType");

  std::string body =
      R"({"schemaVersion":2,"mediaType":")" + std::string(kOciIndex) + R"(","manifests":[)";
  bool first = true;
  for (const auto& referrer : txn->referrers(repo.key, digest->str())) {
    if (filter && referrer.artifact_type != *filter) continue;
    body += first ? "{\"mediaType\":" : ",{\"mediaType\":";
    first = false;
    appendJsonString(body, referrer.media_type);
    body += ",\"digest\":";
    appendJsonString(body, referrer.digest);
    body += ",\"size\":" + std::to_string(referrer.size);
    if (!referrer.artifact_type.empty()) {
      body += ",\"artifactType\":";
      appendJsonString(body, referrer.artifact_type);
    }
    if (!referrer.annotations_json.empty()) {
      body += ",\"annotations\":" + referrer.annotations_json;
    }
    body += "}";
  }
  body += "]}";

  http::Response response = jsonResponse(std::move(body), kOciIndex);
  if (filter) response.headers.add("OCI-Filters-Applied", "artifactType");
  respond(ex, std::move(response));
}

}  // namespace regcache::proxy
