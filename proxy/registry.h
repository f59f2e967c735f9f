// The distribution API: the http::Service that routes each request to its endpoint and
// answers it from the index and the blob store.
//
// Reads (manifest and blob GET/HEAD, tags, catalog, referrers) are answered on the loop
// thread from one LMDB read transaction. Everything that writes the index or fsyncs runs on
// the blocking pool and answers back on the request's loop.
#pragma once

#include <memory>
#include <string>

#include "cache/blob_store.h"
#include "cache/index.h"
#include "proxy/auth.h"
#include "proxy/config.h"
#include "proxy/http.h"
#include "proxy/loop.h"
#include "proxy/metrics.h"
#include "proxy/pull_through.h"
#include "proxy/routes.h"
#include "proxy/status.h"
#include "proxy/uploads.h"

namespace regcache::proxy {

// Notes on a routed request, for onFinished, the image a manifest GET by tag pulls
// ("<repository key>:<tag>"); it counts as a pull when the request ends in a 200.
void notePull(http::RequestNote& note, const Route& route, const http::Request& request,
              const Repository& repo);

class Registry : public http::Service {
 public:
  // Everything passed in must outlive the Registry. `shared_metrics` and `shared_uploads`,
  // when given, are used instead of the Registry's own: a reload builds a new Registry that
  // goes on counting and on holding the uploads in progress where the old one left off.
  Registry(const Config& config, const cache::Index& index, const cache::BlobStore& store,
           BlockingPool& pool, Metrics* shared_metrics = nullptr,
           UploadTable* shared_uploads = nullptr);

  // Every request passes client auth (when on) before anything else.
  std::unique_ptr<http::Handler> onRequest(std::shared_ptr<http::Exchange> exchange) override;
  void onFinished(const http::Request* request, const http::Completion& completion) override;

  UploadTable& uploads() { return uploads_; }
  PullThrough& pullThrough() { return pull_; }
  Metrics& metrics() { return metrics_; }

  // Turns client auth on when the config names an htpasswd file; the error when that file
  // cannot be read or parsed. Call once, before the server starts.
  Status openAuth();
  // Re-reads the htpasswd file (SIGHUP). Ok when auth is off; on error the old users stay.
  // Any thread.
  Status reloadAuth();

  // Stops upstream work. Call after the server's loops stopped, before they are destroyed.
  void shutdown() { pull_.shutdown(); }

 private:
  using ExchangePtr = std::shared_ptr<http::Exchange>;
  using HandlerPtr = std::unique_ptr<http::Handler>;

  // Routes a request that client auth let through.
  HandlerPtr onAdmitted(const ExchangePtr& ex);
  HandlerPtr dispatch(const ExchangePtr& ex, const Route& route);
  // /metrics, /healthz, /readyz, /api/status and the status page (/, /ui/): true when `ex` was
  // one of them (and answered).
  bool serveOperational(const ExchangePtr& ex);
  void getStatus(const ExchangePtr& ex);

  // Listings: registry.cc.
  void getBase(const ExchangePtr& ex);
  void getCatalog(const ExchangePtr& ex);
  void getTags(const ExchangePtr& ex, const Route& route, const Repository& repo);
  void getCachedTags(const ExchangePtr& ex, const Route& route, const Repository& repo);
  void getReferrers(const ExchangePtr& ex, const Route& route, const Repository& repo);

  // Blobs and uploads: registry_blobs.cc.
  void getBlob(const ExchangePtr& ex, const Route& route, const Repository& repo);
  void deleteBlob(const ExchangePtr& ex, const Route& route, const Repository& repo);
  // Links a stored blob into a repository, on the pool, answering nobody.
  void linkLater(const std::string& repository, const std::string& digest);
  HandlerPtr startUpload(const ExchangePtr& ex, const Route& route, const Repository& repo);
  // Creates an upload session once the (empty) POST body is in: 202 with its Location.
  HandlerPtr beginUpload(const ExchangePtr& ex, const Route& route, const Repository& repo);
  HandlerPtr mountBlob(const ExchangePtr& ex, const Route& route, const Repository& repo,
                       const cache::Digest& digest);
  // Takes the upload for a PATCH or PUT whose Content-Range (if any) continues it; otherwise
  // answers (404, or 416 with the upload's Range) and returns nullptr.
  std::shared_ptr<Upload> acquireInStep(const ExchangePtr& ex, const Route& route,
                                        const Repository& repo);
  HandlerPtr patchUpload(const ExchangePtr& ex, const Route& route, const Repository& repo);
  HandlerPtr putUpload(const ExchangePtr& ex, const Route& route, const Repository& repo);
  void getUpload(const ExchangePtr& ex, const Route& route, const Repository& repo);
  void deleteUpload(const ExchangePtr& ex, const Route& route, const Repository& repo);

  // Manifests: registry_manifests.cc.
  void getManifest(const ExchangePtr& ex, const Route& route, const Repository& repo);
  HandlerPtr putManifest(const ExchangePtr& ex, const Route& route, const Repository& repo);
  void deleteManifest(const ExchangePtr& ex, const Route& route, const Repository& repo);

  friend class UploadBodyHandler;
  friend class ManifestBodyHandler;

  const Config& config_;
  Metrics own_metrics_;
  Metrics& metrics_;  // own_metrics_, or a reload's shared one
  const cache::Index& index_;
  const cache::BlobStore& store_;
  BlockingPool& pool_;
  UploadTable own_uploads_;
  UploadTable& uploads_;  // own_uploads_, or a reload's shared one
  PullThrough pull_;
  StoreTotals store_totals_;          // the index's cached/pushed totals for /api/status
  std::unique_ptr<ClientAuth> auth_;  // null: client auth is off
};

// Sends `response` with the headers every API response carries. Loop thread.
void respond(const std::shared_ptr<http::Exchange>& ex, http::Response response);

// A handler that runs `on_end` once the (ignored) body is complete.
std::unique_ptr<http::Handler> whenComplete(std::function<void()> on_end);

}  // namespace regcache::proxy
