// The pull-through side of the registry: repositories backed by an upstream. Manifests by
// tag are trusted for the upstream's tag_ttl, then revalidated with HEAD; concurrent
// requests for one reference share one upstream exchange; blobs come through fills
// (upstream/fill.h). When upstream fails, a cached tag is served stale with a Warning.
//
// Threading: every entry point runs on the calling request's loop. Upstream work runs on the
// loop of the request that started it, with that loop's upstream Client; the other waiters
// are answered on their own loops.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cache/blob_store.h"
#include "cache/eviction.h"
#include "cache/index.h"
#include "proxy/config.h"
#include "proxy/http.h"
#include "proxy/loop.h"
#include "proxy/reference.h"
#include "proxy/routes.h"
#include "proxy/upstream_health.h"
#include "upstream/client.h"
#include "upstream/fill.h"

namespace regcache::proxy {

// What an upstream exchange for a manifest found out.
struct Resolution {
  Status status;            // ok; kNotFound (upstream said 404); kUnavailable (anything else)
  int upstream_status = 0;  // upstream's HTTP status, when it answered
  std::string retry_after;  // upstream's Retry-After on a 429
  std::string digest;
  std::string media_type;
  std::shared_ptr<const std::string> bytes;  // the manifest, when it was fetched
  uint64_t size = 0;                         // for a HEAD answered from upstream's headers alone
  bool head_only = false;                    // digest/media_type/size come from an upstream HEAD
};

class PullThrough {
 public:
  // Reads each upstream's password_file. Everything passed in outlives the PullThrough.
  PullThrough(const Config& config, const cache::Index& index, const cache::BlobStore& store,
              BlockingPool& pool);
  ~PullThrough();

  // Drops the upstream Clients (cancelling their transfers). Call after the server's loops
  // have stopped and before they are destroyed.
  void shutdown();

  // A manifest GET/HEAD on an upstream-backed repository (online).
  void getManifest(const std::shared_ptr<http::Exchange>& ex, const Route& route,
                   const Repository& repo, const Reference& reference);
  // A blob GET/HEAD that the cache could not answer (online).
  void getBlob(const std::shared_ptr<http::Exchange>& ex, const Route& route,
               const Repository& repo, const cache::Digest& digest);
  // The tag list of an upstream-backed repository: upstream's when it answers, else cached.
  // `cached` answers from the index.
  void getTags(const std::shared_ptr<http::Exchange>& ex, const Route& route,
               const Repository& repo, std::function<void()> cached);

  upstream::FillTable& fills() { return fills_; }
  // When each cached manifest was last served, for eviction.
  cache::Recency& recency() { return recency_; }
  uint64_t staleServed() const { return stale_served_.load(); }
  // What the last exchanges with each upstream said (status page). Thread-safe.
  UpstreamHealth& health() { return health_; }
  const UpstreamHealth& health() const { return health_; }
  // Whether a bearer token for `upstream` is cached now. Any thread.
  bool holdsToken(std::string_view upstream) const { return tokens_->holdsToken(upstream); }

 private:
  friend class ManifestFetch;
  struct Endpoints {
    upstream::UpstreamOptions manifests;  // short waits: a client is holding on
    upstream::UpstreamOptions blobs;      // streaming, patient
  };
  using Waiter = std::function<void(const Resolution&)>;

  const Endpoints& endpoints(const UpstreamConfig& upstream) const;
  upstream::Client& clientFor(Loop& loop);
  // Returns true when an exchange in flight was joined.
  bool resolve(Loop& loop, const Repository& repo, const Reference& reference, bool head_only,
               Waiter waiter);
  void complete(const std::string& key, const Resolution& resolution);
  void serveResolution(const std::shared_ptr<http::Exchange>& ex, const Route& route,
                       const Repository& repo, const Reference& reference,
                       const Resolution& resolution, bool have_stale);
  void serveFill(const std::shared_ptr<http::Exchange>& ex,
                 const std::shared_ptr<upstream::Fill>& fill, const cache::Digest& digest);
  void headBlob(const std::shared_ptr<http::Exchange>& ex, const Repository& repo,
                const cache::Digest& digest);
  // Records in health_ how an exchange with `upstream` ended: `transport` not ok and no
  // answer is unreachable; 5xx, 429, 401/403 are failures; any other answer is a success.
  // `kind` overrides the failure kind ("corrupt"). Any thread.
  void noteExchange(const std::string& upstream, const Status& transport, int http_status,
                    std::string_view kind = {});
  void noteHead(const std::string& upstream, const upstream::ResponseHead& head);
  void noteFillEnd(const upstream::Fill& fill);

  const Config& config_;
  const cache::Index& index_;
  const cache::BlobStore& store_;
  BlockingPool& pool_;
  std::vector<Endpoints> endpoints_;  // one per config_.upstreams entry, same order
  std::shared_ptr<upstream::TokenCache> tokens_;

  std::mutex mu_;
  std::unordered_map<Loop*, std::unique_ptr<upstream::Client>> clients_;  // guarded by mu_
  std::unordered_map<std::string, std::vector<std::pair<Loop*, Waiter>>>
      resolving_;                           // guarded by mu_
  std::unordered_set<std::string> warned_;  // guarded by mu_: stale tags already logged
  upstream::FillTable fills_;
  cache::Recency recency_;
  const bool record_recency_;
  std::atomic<uint64_t> stale_served_{0};
  UpstreamHealth health_;
};

// The response for a stored manifest, honouring the request's method and Accept header.
// `extra` headers (a stale Warning) are added.
http::Response manifestResponse(const http::Request& request, std::string_view media_type,
                                std::string_view digest, std::string_view bytes);
// Whether the request's Accept header admits `media_type`.
bool acceptsMediaType(const http::Request& request, std::string_view media_type);

}  // namespace regcache::proxy
