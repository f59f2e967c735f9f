// The registry that serves, replaced whole when SIGHUP brings a new config: requests in flight
// finish on the generation that took them, new requests go to the newest. Generations share
// the store, the counters and the uploads in progress; each has its own upstream clients,
// auth and routing, built from its own config.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "proxy/config.h"
#include "proxy/http.h"
#include "proxy/metrics.h"
#include "proxy/registry.h"
#include "proxy/uploads.h"

namespace regcache::proxy {

class LiveRegistry : public http::Service {
 public:
  // Everything passed in outlives the LiveRegistry.
  LiveRegistry(const cache::Index& index, const cache::BlobStore& store, BlockingPool& pool);

  // Builds a generation from `config` (its auth opened) and sends new requests to it. On
  // error nothing changes. Not concurrent with itself (serve's main thread).
  Status install(std::shared_ptr<const Config> config);

  Registry& current() const { return *current_.load(std::memory_order_acquire); }
  const Config& config() const { return *config_.load(std::memory_order_acquire); }
  Metrics& metrics() { return metrics_; }
  UploadTable& uploads() { return uploads_; }
  // Fills in flight, and bytes fills stored, across every generation.
  size_t fillsInFlight() const;
  uint64_t storedBytes() const;
  // Calls `fn` on every generation, oldest first (housekeeping: recency of each). Any thread.
  void forEach(const std::function<void(Registry&)>& fn) const;

  std::unique_ptr<http::Handler> onRequest(std::shared_ptr<http::Exchange> exchange) override;
  void onFinished(const http::Request* request, const http::Completion& completion) override;

  // Stops every generation's upstream work (see Registry::shutdown).
  void shutdown();

 private:
  struct Generation {
    std::shared_ptr<const Config> config;
    std::unique_ptr<Registry> registry;
  };

  const cache::Index& index_;
  const cache::BlobStore& store_;
  BlockingPool& pool_;
  Metrics metrics_;
  UploadTable uploads_;
  mutable std::mutex mu_;
  // Guarded by mu_. Old generations stay until shutdown: handlers in flight point into them,
  // and they hold no more than idle upstream connections.
  std::vector<Generation> generations_;
  std::atomic<Registry*> current_{nullptr};
  std::atomic<const Config*> config_{nullptr};
};

}  // namespace regcache::proxy
