// Pull-through: manifests revalidated and fetched once, blobs filled once, stale when down.
#include "proxy/pull_through.h"

#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>

#include "proxy/errors.h"
#include "proxy/manifest.h"
#include "proxy/range.h"
#include "proxy/registry.h"

namespace regcache::proxy {

namespace {

const std::string kAcceptManifests = std::string(kOciManifest) + ", " + std::string(kOciIndex) +
                                     ", " + std::string(kDockerManifest) + ", " +
                                     std::string(kDockerManifestList);

int64_t nowSeconds() { return static_cast<int64_t>(std::time(nullptr)); }

std::string readSecret(const std::string& path) {
  if (path.empty()) return {};
  std::ifstream in(path);
  std::stringstream content;
  content << in.rdbuf();
  std::string secret = content.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (!in) spdlog::warn("upstream.password_file path={} error=\"cannot read\"", path);
  return secret;
}

// The answer when upstream could not give us something and we hold no copy.
http::Response upstreamError(const Resolution& r, ErrorCode unknown, std::string_view what) {
  if (r.status.code() == Code::kNotFound) {
    return errorResponse(unknown, std::string(what) + " unknown upstream");
  }
  if (r.upstream_status == 429) {
    http::Response response = errorResponse(ErrorCode::kTooManyRequests,
                                            "upstream rate limit reached for " + std::string(what));
    if (!r.retry_after.empty()) response.headers.add("Retry-After", r.retry_after);
    return response;
  }
  if (r.upstream_status == 401 || r.upstream_status == 403) {
    return errorResponse(ErrorCode::kDenied, "upstream refused access to " + std::string(what) +
                                                 " (check the upstream's credentials)");
  }
  int status = r.upstream_status >= 500 ? 502 : 503;
  return errorResponse(unknown, std::string(what) + ": " + r.status.message(), status);
}

Resolution failed(int upstream_status, const upstream::ResponseHead* head, std::string why) {
  Resolution r;
  r.upstream_status = upstream_status;
  r.status = upstream_status == 404 ? notFound(std::move(why))
                                    : Status(Code::kUnavailable, std::move(why));
  if (head != nullptr) {
    if (const std::string* retry = head->header("retry-after")) r.retry_after = *retry;
  }
  return r;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ManifestFetch: one upstream exchange for a manifest reference, shared by every waiter.

class ManifestFetch : public std::enable_shared_from_this<ManifestFetch> {
 public:
  ManifestFetch(PullThrough& pull, Loop& loop, Repository repo, Reference reference, bool head_only,
                std::string key)
      : pull_(pull),
        loop_(loop),
        repo_(std::move(repo)),
        reference_(std::move(reference)),
        head_only_(head_only),
        key_(std::move(key)),
        options_(pull.endpoints(*repo_.upstream).manifests) {}

  void start() {
    if (reference_.isDigest()) {
      get(reference_.digest->str());
    } else {
      head();
    }
  }

 private:
  upstream::Request request(std::string_view method, std::string_view ref) {
    upstream::Request r;
    r.method = std::string(method);
    r.path = "/v2/" + repo_.remote + "/manifests/" + std::string(ref);
    r.repository = repo_.remote;
    r.headers.emplace_back("Accept", kAcceptManifests);
    return r;
  }

  // Revalidation: HEAD does not count against Docker Hub's pull limit.
  void head() {
    auto self = shared_from_this();
    upstream::Callbacks callbacks;
    callbacks.on_head = [self](const upstream::ResponseHead& head) {
      self->head_ = head;
      self->pull_.noteHead(self->repo_.upstream->name, head);
    };
    callbacks.on_data = [](std::string_view) { return true; };
    callbacks.on_done = [self](Status status) { self->onHeadDone(std::move(status)); };
    pull_.clientFor(loop_).start(options_, request("HEAD", reference_.tag), std::move(callbacks));
  }

  void onHeadDone(Status status) {
    if (!status) return finish(failed(0, nullptr, status.message()));
    if (head_.status != 200) {
      return finish(
          failed(head_.status, &head_, "upstream answered " + std::to_string(head_.status)));
    }
    const std::string* header = head_.header("docker-content-digest");
    auto digest = header ? cache::Digest::parse(*header) : Result<cache::Digest>(notFound(""));
    if (!digest) return get(reference_.tag);  // no usable digest: GET by tag

    if (cachedInRepository(digest->str())) return retag(digest->str());
    if (head_only_) {
      Resolution r;
      r.digest = digest->str();
      const std::string* type = head_.header("content-type");
      r.media_type = type ? *type : "";
      r.size = head_.contentLength().value_or(0);
      r.head_only = true;
      return finish(std::move(r));
    }
    expected_ = *digest;
    get(digest->str());
  }

  void get(const std::string& ref) {
    if (reference_.isDigest()) expected_ = *reference_.digest;
    auto self = shared_from_this();
    upstream::Callbacks callbacks;
    callbacks.on_head = [self](const upstream::ResponseHead& head) {
      self->head_ = head;
      self->pull_.noteHead(self->repo_.upstream->name, head);
    };
    callbacks.on_data = [self](std::string_view data) {
      if (self->body_.size() + data.size() > kMaxManifestBytes) return false;
      self->body_.append(data);
      return true;
    };
    callbacks.on_done = [self](Status status) { self->onGetDone(std::move(status)); };
    pull_.clientFor(loop_).start(options_, request("GET", ref), std::move(callbacks));
  }

  void onGetDone(Status status) {
    if (!status) return finish(failed(head_.status, &head_, status.message()));
    if (head_.status != 200) {
      return finish(
          failed(head_.status, &head_, "upstream answered " + std::to_string(head_.status)));
    }
    cache::DigestAlgorithm algorithm =
        expected_ ? expected_->algorithm() : cache::DigestAlgorithm::kSha256;
    cache::Digest actual = cache::digestOf(body_, algorithm);
    if (expected_ && actual != *expected_) {
      spdlog::warn("upstream.manifest_mismatch upstream={} repository={} expected={} got={}",
                   repo_.upstream->name, repo_.remote, expected_->str(), actual.str());
      corrupt_ = true;
      return finish(
          failed(502, nullptr, "upstream sent a manifest that does not match " + expected_->str()));
    }
    const std::string* type = head_.header("content-type");
    std::string_view content_type = type ? std::string_view(*type) : "";
    content_type = content_type.substr(0, content_type.find(';'));
    auto manifest = parseManifest(body_, content_type);
    if (!manifest) {
      corrupt_ = true;
      return finish(failed(502, nullptr,
                           "upstream sent an unusable manifest: " + manifest.status().message()));
    }
    store(std::move(*manifest), actual);
  }

  // Stores the manifest (and the tag), then answers every waiter with the bytes.
  void store(Manifest manifest, const cache::Digest& digest) {
    auto bytes = std::make_shared<const std::string>(std::move(body_));
    cache::ManifestRecord record{manifest.media_type, *bytes,
                                 manifest.subject ? manifest.subject->digest : "",
                                 manifest.artifact_type, nowSeconds()};
    std::optional<cache::ReferrerRecord> referrer;
    if (manifest.subject) {
      referrer = cache::ReferrerRecord{digest.str(), manifest.media_type, manifest.artifact_type,
                                       bytes->size(), manifest.annotations_json};
    }
    std::string tag = reference_.isDigest() ? "" : reference_.tag;
    std::string key = repo_.key;
    std::string digest_str = digest.str();
    const cache::Index& index = pull_.index_;
    auto self = shared_from_this();
    Resolution r;
    r.digest = digest_str;
    r.media_type = manifest.media_type;
    r.bytes = bytes;
    pull_.pool_.run(
        loop_,
        [&index, key, digest_str, tag, record = std::move(record), referrer]() -> Status {
          auto txn = index.write();
          if (!txn) return txn.status();
          Status status =
              txn->putManifest(key, digest_str, record, referrer ? &*referrer : nullptr);
          if (status && !tag.empty()) {
            status = txn->putTag(key, tag, digest_str, nowSeconds(), nowSeconds());
          }
          return status ? txn->commit() : status;
        },
        [self, r](Status status) {
          // Served even when storing failed: the bytes are verified; the next request refetches.
          if (!status) {
            spdlog::error("manifest.cache digest={} error=\"{}\"", r.digest, status.message());
          }
          self->finish(r);
        });
  }

  bool cachedInRepository(const std::string& digest) {
    auto txn = pull_.index_.read();
    return txn && txn->manifest(repo_.key, digest).isOk();
  }

  // Upstream confirmed (or moved the tag to) a digest we hold: refresh the tag's time only.
  void retag(const std::string& digest) {
    const cache::Index& index = pull_.index_;
    std::string key = repo_.key;
    std::string tag = reference_.tag;
    auto self = shared_from_this();
    pull_.pool_.run(
        loop_,
        [&index, key, tag, digest]() -> Status {
          auto txn = index.write();
          if (!txn) return txn.status();
          auto current = txn->tag(key, tag);
          int64_t updated = current && current->digest == digest ? current->updated : nowSeconds();
          Status status = txn->putTag(key, tag, digest, updated, nowSeconds());
          return status ? txn->commit() : status;
        },
        [self, digest](Status status) {
          if (!status) spdlog::error("tag.refresh error=\"{}\"", status.message());
          Resolution r;
          r.digest = digest;
          self->finish(std::move(r));
        });
  }

  void finish(Resolution resolution) {
    const Status& s = resolution.status;
    bool answered = s.isOk() || s.code() == Code::kNotFound;
    pull_.noteExchange(repo_.upstream->name, answered ? Status::ok() : s,
                       resolution.upstream_status, corrupt_ ? "corrupt" : "");
    pull_.complete(key_, resolution);
  }

  PullThrough& pull_;
  Loop& loop_;
  const Repository repo_;
  const Reference reference_;
  const bool head_only_;
  const std::string key_;
  const upstream::UpstreamOptions& options_;
  upstream::ResponseHead head_;
  std::string body_;
  std::optional<cache::Digest> expected_;
  bool corrupt_ = false;  // upstream answered, with bytes that do not verify
};

// ---------------------------------------------------------------------------------------------
// PullThrough

PullThrough::PullThrough(const Config& config, const cache::Index& index,
                         const cache::BlobStore& store, BlockingPool& pool)
    : config_(config),
      index_(index),
      store_(store),
      pool_(pool),
      tokens_(std::make_shared<upstream::TokenCache>()),
      fills_(
          index, store, pool, [this](Loop& loop) -> upstream::Client& { return clientFor(loop); },
          config.limits.max_fills_per_upstream),
      // Only for measuring what recording costs (tests/bench): eviction then sees creation
      // times instead of last use.
      record_recency_(std::getenv("REGCACHE_BENCH_NO_RECENCY") == nullptr) {
  fills_.setOnEnd([this](const upstream::Fill& fill) { noteFillEnd(fill); });
  for (const auto& u : config.upstreams) {
    upstream::UpstreamOptions base;
    base.name = u.name;
    base.base_url = u.url;
    base.username = u.username;
    base.password = readSecret(u.password_file);
    base.http_proxy = u.http_proxy;
    Endpoints e{base, base};
    // A client waits on a manifest: retry briefly, and pass a long Retry-After on as 429.
    e.manifests.max_attempts = 3;
    e.manifests.max_retry_after = std::chrono::seconds(2);
    e.manifests.request_timeout = std::chrono::seconds(20);
    e.blobs.stall_timeout = std::chrono::seconds(30);
    endpoints_.push_back(std::move(e));
  }
}

PullThrough::~PullThrough() { shutdown(); }

void PullThrough::noteExchange(const std::string& upstream, const Status& transport,
                               int http_status, std::string_view kind) {
  int64_t now = nowSeconds();
  bool refused =
      http_status == 429 || http_status == 401 || http_status == 403 || http_status >= 500;
  if (!kind.empty() || refused || (!transport.isOk())) {
    std::string message = !transport.isOk() ? transport.message()
                                            : "upstream answered " + std::to_string(http_status);
    health_.recordFailure(upstream, kind.empty() ? upstreamFailureKind(http_status) : kind, message,
                          now);
    return;
  }
  health_.recordSuccess(upstream, now);
}

void PullThrough::noteHead(const std::string& upstream, const upstream::ResponseHead& head) {
  const std::string* limit = head.header("ratelimit-limit");
  const std::string* remaining = head.header("ratelimit-remaining");
  if (limit || remaining) {
    health_.recordRateLimit(upstream, limit ? *limit : "", remaining ? *remaining : "");
  }
}

void PullThrough::noteFillEnd(const upstream::Fill& fill) {
  Status error = fill.error();
  switch (error.code()) {
    case Code::kOk:
    case Code::kNotFound:
      return noteExchange(fill.upstreamName(), Status::ok(), fill.upstreamStatus());
    case Code::kCorrupt:
      return noteExchange(fill.upstreamName(), error, fill.upstreamStatus(), "corrupt");
    case Code::kIo:
    case Code::kInternal:
      return;  // our disk, not the upstream
    default:
      return noteExchange(fill.upstreamName(), error, fill.upstreamStatus());
  }
}

void PullThrough::shutdown() {
  fills_.shutdown();  // its writers finish, and its fills let go of the Clients
  std::lock_guard lock(mu_);
  clients_.clear();
}

const PullThrough::Endpoints& PullThrough::endpoints(const UpstreamConfig& upstream) const {
  return endpoints_[static_cast<size_t>(&upstream - config_.upstreams.data())];
}

upstream::Client& PullThrough::clientFor(Loop& loop) {
  std::lock_guard lock(mu_);
  auto& client = clients_[&loop];
  if (!client) client = std::make_unique<upstream::Client>(loop.base(), tokens_);
  return *client;
}

bool PullThrough::resolve(Loop& loop, const Repository& repo, const Reference& reference,
                          bool head_only, Waiter waiter) {
  std::string key = repo.key + (head_only ? "\nH\n" : "\nG\n") + reference.str();
  {
    std::lock_guard lock(mu_);
    auto& waiters = resolving_[key];
    waiters.emplace_back(&loop, std::move(waiter));
    if (waiters.size() > 1) return true;  // joined an exchange in flight
  }
  std::make_shared<ManifestFetch>(*this, loop, repo, reference, head_only, key)->start();
  return false;
}

void PullThrough::complete(const std::string& key, const Resolution& resolution) {
  std::vector<std::pair<Loop*, Waiter>> waiters;
  {
    std::lock_guard lock(mu_);
    auto it = resolving_.find(key);
    if (it == resolving_.end()) return;
    waiters = std::move(it->second);
    resolving_.erase(it);
    if (resolution.status.isOk()) warned_.erase(key.substr(0, key.find('\n')));
  }
  for (auto& [loop, waiter] : waiters) {
    loop->post([waiter = std::move(waiter), resolution] { waiter(resolution); });
  }
}

void PullThrough::getManifest(const std::shared_ptr<http::Exchange>& ex, const Route& route,
                              const Repository& repo, const Reference& reference) {
  bool have_cached = false;
  {
    auto txn = index_.read();
    if (txn) {
      std::string digest;
      int64_t checked = 0;
      if (reference.isDigest()) {
        digest = reference.digest->str();
      } else if (auto tag = txn->tag(repo.key, reference.tag)) {
        digest = tag->digest;
        checked = tag->checked;
      }
      auto manifest = digest.empty() ? Result<cache::ManifestView>(notFound(""))
                                     : txn->manifest(repo.key, digest);
      have_cached = manifest.isOk();
      bool fresh = reference.isDigest() || nowSeconds() - checked < repo.upstream->tag_ttl.count();
      if (have_cached && fresh) {
        ex->addLogField("cache=hit");
        if (record_recency_) recency_.touch(repo.key, digest, nowSeconds());
        respond(ex, manifestResponse(ex->request(), manifest->media_type, digest, manifest->bytes));
        return;
      }
    }
  }

  std::weak_ptr<http::Exchange> weak = ex;
  bool joined = resolve(ex->loop(), repo, reference, ex->request().isHead(),
                        [this, weak, route, repo, reference, have_cached](const Resolution& r) {
                          auto ex = weak.lock();
                          if (ex) serveResolution(ex, route, repo, reference, r, have_cached);
                        });
  ex->addLogField(joined ? "cache=coalesced" : have_cached ? "cache=revalidate" : "cache=miss");
  ex->addLogField("upstream=" + repo.upstream->name);
}

void PullThrough::serveResolution(const std::shared_ptr<http::Exchange>& ex, const Route& route,
                                  const Repository& repo, const Reference& reference,
                                  const Resolution& r, bool have_stale) {
  const http::Request& request = ex->request();
  if (r.status.isOk() && r.bytes) {
    respond(ex, manifestResponse(request, r.media_type, r.digest, *r.bytes));
    return;
  }
  if (r.status.isOk() && r.head_only) {
    http::Response response = manifestResponse(request, r.media_type, r.digest, "");
    if (response.status == 200) response.head_length = r.size;
    respond(ex, std::move(response));
    return;
  }

  // Answer from the index: upstream confirmed our copy, or failed and we serve it stale.
  bool stale = !r.status.isOk();
  if (stale && (!have_stale || r.status.code() == Code::kNotFound)) {
    respond(ex, upstreamError(r, ErrorCode::kManifestUnknown,
                              "manifest " + route.name + ":" + route.reference));
    return;
  }
  auto txn = index_.read();
  std::string digest = r.digest;
  if (txn && digest.empty()) {
    if (auto tag = txn->tag(repo.key, reference.tag)) digest = tag->digest;
  }
  auto manifest = txn && !digest.empty() ? txn->manifest(repo.key, digest)
                                         : Result<cache::ManifestView>(notFound(""));
  if (!manifest) {
    respond(ex, upstreamError(r, ErrorCode::kManifestUnknown,
                              "manifest " + route.name + ":" + route.reference));
    return;
  }
  http::Response response =
      manifestResponse(request, manifest->media_type, digest, manifest->bytes);
  if (record_recency_) recency_.touch(repo.key, digest, nowSeconds());
  if (stale) {
    response.headers.add("Warning", "110 regcache \"Response is stale\"");
    stale_served_.fetch_add(1);
    ex->addLogField("cache=stale");
    bool first;
    {
      std::lock_guard lock(mu_);
      first = warned_.insert(repo.key).second;
    }
    if (first) {
      spdlog::warn("upstream.stale upstream={} repository={} reference={} status={} error=\"{}\"",
                   repo.upstream->name, repo.remote, reference.str(), r.upstream_status,
                   r.status.message());
    }
  }
  respond(ex, std::move(response));
}

// ---------------------------------------------------------------------------------------------
// Blobs

void PullThrough::getBlob(const std::shared_ptr<http::Exchange>& ex, const Route& route,
                          const Repository& repo, const cache::Digest& digest) {
  (void)route;
  if (ex->request().isHead()) {
    headBlob(ex, repo, digest);
    return;
  }
  bool joined = false;
  auto fill = fills_.getOrStart(ex->loop(), endpoints(*repo.upstream).blobs, digest.str(), repo.key,
                                repo.remote, &joined);
  ex->addLogField(joined ? "cache=coalesced" : "cache=miss");
  ex->addLogField("upstream=" + repo.upstream->name);
  serveFill(ex, fill, digest);
}

void PullThrough::serveFill(const std::shared_ptr<http::Exchange>& ex,
                            const std::shared_ptr<upstream::Fill>& fill,
                            const cache::Digest& digest) {
  upstream::Fill::Progress progress = fill->progress();
  if (progress.state == upstream::Fill::State::kStarting) {
    // No response head from upstream yet: answer when it comes.
    std::weak_ptr<http::Exchange> weak = ex;
    fill->notifyOnProgress(
        ex->loop(), weak,
        [this, weak, fill, digest] {
          if (auto ex = weak.lock()) serveFill(ex, fill, digest);
        },
        fill->readable(), progress.state);
    return;
  }
  if (progress.state == upstream::Fill::State::kFailed) {
    Resolution r;
    r.status = fill->error();
    r.upstream_status = fill->upstreamStatus();
    if (r.status.code() != Code::kNotFound)
      r.status = Status(Code::kUnavailable, r.status.message());
    respond(ex, upstreamError(r, ErrorCode::kBlobUnknown, "blob " + digest.str()));
    return;
  }

  http::Response response;
  response.headers.add("Content-Type", "application/octet-stream");
  response.headers.add("Docker-Content-Digest", digest.str());
  uint64_t offset = 0;
  std::optional<uint64_t> length = progress.size;
  if (progress.size) {
    response.headers.add("Accept-Ranges", "bytes");
    if (const std::string* header = ex->request().headers.get("Range")) {
      auto range = parseRange(*header, *progress.size);
      if (!range && range.status().code() == Code::kConflict) {
        http::Response refused =
            errorResponse(ErrorCode::kSizeInvalid, "range not satisfiable: " + *header, 416);
        refused.headers.add("Content-Range", "bytes */" + std::to_string(*progress.size));
        respond(ex, std::move(refused));
        return;
      }
      if (range && range->has_value()) {
        const ByteRange& r = **range;
        response.status = 206;
        response.headers.add("Content-Range", "bytes " + std::to_string(r.first) + "-" +
                                                  std::to_string(r.last) + "/" +
                                                  std::to_string(*progress.size));
        offset = r.first;
        length = r.length();
      }
    }
  }
  response.source = fill->reader(ex->loop(), offset, length);
  response.source_length = length;
  respond(ex, std::move(response));
}

void PullThrough::headBlob(const std::shared_ptr<http::Exchange>& ex, const Repository& repo,
                           const cache::Digest& digest) {
  struct State {
    upstream::ResponseHead head;
  };
  auto state = std::make_shared<State>();
  std::weak_ptr<http::Exchange> weak = ex;
  upstream::Request r;
  r.method = "HEAD";
  r.path = "/v2/" + repo.remote + "/blobs/" + digest.str();
  r.repository = repo.remote;
  upstream::Callbacks callbacks;
  callbacks.on_head = [state](const upstream::ResponseHead& head) { state->head = head; };
  callbacks.on_data = [](std::string_view) { return true; };
  const std::string& upstream_name = repo.upstream->name;
  callbacks.on_done = [this, &upstream_name, weak, state, digest](Status status) {
    noteExchange(upstream_name, status, state->head.status);
    auto ex = weak.lock();
    if (!ex) return;
    if (status && state->head.status == 200) {
      http::Response response;
      response.headers.add("Content-Type", "application/octet-stream");
      response.headers.add("Docker-Content-Digest", digest.str());
      response.head_length = state->head.contentLength().value_or(0);
      respond(ex, std::move(response));
      return;
    }
    Resolution failure = status ? failed(state->head.status, &state->head,
                                         "upstream answered " + std::to_string(state->head.status))
                                : failed(0, nullptr, status.message());
    respond(ex, upstreamError(failure, ErrorCode::kBlobUnknown, "blob " + digest.str()));
  };
  ex->addLogField("cache=miss");
  ex->addLogField("upstream=" + repo.upstream->name);
  clientFor(ex->loop())
      .start(endpoints(*repo.upstream).manifests, std::move(r), std::move(callbacks));
}

// ---------------------------------------------------------------------------------------------
// Tags

void PullThrough::getTags(const std::shared_ptr<http::Exchange>& ex, const Route& route,
                          const Repository& repo, std::function<void()> cached) {
  struct State {
    upstream::ResponseHead head;
    std::string body;
  };
  auto state = std::make_shared<State>();
  std::weak_ptr<http::Exchange> weak = ex;
  upstream::Request r;
  r.path = "/v2/" + repo.remote + "/tags/list";
  const std::string& query = ex->request().query;
  if (!query.empty()) r.path += "?" + query;
  r.repository = repo.remote;
  ex->addLogField("upstream=" + repo.upstream->name);
  upstream::Callbacks callbacks;
  callbacks.on_head = [state](const upstream::ResponseHead& head) { state->head = head; };
  callbacks.on_data = [state](std::string_view data) {
    if (state->body.size() + data.size() > (16u << 20)) return false;
    state->body.append(data);
    return true;
  };
  const std::string& upstream_name = repo.upstream->name;
  callbacks.on_done = [this, &upstream_name, weak, state, route,
                       cached = std::move(cached)](Status status) {
    noteExchange(upstream_name, status, state->head.status);
    auto ex = weak.lock();
    if (!ex) return;
    if (status && state->head.status == 404) {
      respond(ex, errorResponse(ErrorCode::kNameUnknown,
                                "repository " + route.name + " unknown upstream"));
      return;
    }
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    simdjson::dom::array tags;
    if (!status || state->head.status != 200 || parser.parse(state->body).get(doc) ||
        doc["tags"].get_array().get(tags)) {
      cached();  // upstream unreachable or unhelpful: what we hold
      return;
    }
    std::string body = "{\"name\":";
    appendJsonString(body, route.name);
    body += ",\"tags\":[";
    std::string last;
    bool first = true;
    for (auto tag : tags) {
      std::string_view name;
      if (tag.get_string().get(name)) continue;
      if (!first) body.push_back(',');
      first = false;
      appendJsonString(body, name);
      last = std::string(name);
    }
    body += "]}";
    http::Response response;
    response.headers.add("Content-Type", "application/json");
    response.body = std::move(body);
    if (state->head.header("link") != nullptr && !last.empty()) {
      auto n = ex->request().queryParam("n");
      response.headers.add("Link", "</v2/" + route.name + "/tags/list?" +
                                       (n ? "n=" + *n + "&" : std::string()) + "last=" + last +
                                       ">; rel=\"next\"");
    }
    respond(ex, std::move(response));
  };
  clientFor(ex->loop())
      .start(endpoints(*repo.upstream).manifests, std::move(r), std::move(callbacks));
}

}  // namespace regcache::proxy
