// Generations of the registry, swapped on reload.
#include "proxy/live_registry.h"

namespace regcache::proxy {

LiveRegistry::LiveRegistry(const cache::Index& index, const cache::BlobStore& store,
                           BlockingPool& pool)
    : index_(index), store_(store), pool_(pool), uploads_(index, store) {}

Status LiveRegistry::install(std::shared_ptr<const Config> config) {
  auto registry = std::make_unique<Registry>(*config, index_, store_, pool_, &metrics_, &uploads_);
  if (Status status = registry->openAuth(); !status) return status;
  std::lock_guard lock(mu_);
  Registry* next = registry.get();
  const Config* next_config = config.get();
  generations_.push_back({std::move(config), std::move(registry)});
  config_.store(next_config, std::memory_order_release);
  current_.store(next, std::memory_order_release);
  return Status::ok();
}

size_t LiveRegistry::fillsInFlight() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& g : generations_) n += g.registry->pullThrough().fills().inFlight();
  return n;
}

uint64_t LiveRegistry::storedBytes() const {
  std::lock_guard lock(mu_);
  uint64_t n = 0;
  for (const auto& g : generations_) n += g.registry->pullThrough().fills().storedBytes();
  return n;
}

void LiveRegistry::forEach(const std::function<void(Registry&)>& fn) const {
  std::lock_guard lock(mu_);
  for (const auto& g : generations_) fn(*g.registry);
}

std::unique_ptr<http::Handler> LiveRegistry::onRequest(std::shared_ptr<http::Exchange> exchange) {
  return current().onRequest(std::move(exchange));
}

void LiveRegistry::onFinished(const http::Request* request, const http::Completion& completion) {
  // The counters are shared, so whichever generation counts it, it is counted once.
  current().onFinished(request, completion);
}

void LiveRegistry::shutdown() {
  std::lock_guard lock(mu_);
  for (auto& g : generations_) g.registry->shutdown();
}

}  // namespace regcache::proxy
