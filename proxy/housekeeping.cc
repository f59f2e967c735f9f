// The serving process's periodic chores.
#include "proxy/housekeeping.h"

#include <spdlog/spdlog.h>

#include "proxy/manifest.h"

namespace regcache::proxy {

namespace {

// A full count of cached bytes at least this often, even when the estimate looks fine.
constexpr int64_t kCountSeconds = 60;
constexpr int64_t kUploadSweepSeconds = 600;

}  // namespace

void manifestReferences(std::string_view media_type, std::string_view bytes,
                        std::vector<std::string>& out) {
  auto manifest = parseManifest(bytes, media_type);
  if (!manifest) return;
  if (manifest->config) out.push_back(manifest->config->digest);
  for (const auto& layer : manifest->layers) out.push_back(layer.digest);
  for (const auto& child : manifest->manifests) out.push_back(child.digest);
}

Housekeeper::Housekeeper(const Config& config, const cache::Index& index,
                         const cache::BlobStore& store, LiveRegistry& registry, BlockingPool& pool)
    : config_(config),
      index_(index),
      registry_(registry),
      pool_(pool),
      evictor_(index, store, [&config] {
        cache::EvictionOptions options;
        options.max_bytes = config.max_cache_size;
        options.is_cached_repository = [&config](std::string_view repository) {
          std::string_view first = repository.substr(0, repository.find('/'));
          return repository.find('/') != std::string_view::npos &&
                 config.upstream(first) != nullptr;
        };
        options.references = manifestReferences;
        return options;
      }()) {}

uint64_t Housekeeper::cachedBytes() const {
  uint64_t stored = registry_.storedBytes();
  return counted_bytes_.load() + (stored - stored_at_count_.load());
}

void Housekeeper::tick(int64_t now) {
  if (busy_.exchange(true)) return;
  pool_.submit([this, now] {
    runChores(now);
    busy_.store(false);
  });
}

void Housekeeper::runChores(int64_t now) {
  registry_.forEach([this](Registry& generation) {
    if (Status status = generation.pullThrough().recency().flush(index_); !status) {
      spdlog::warn("recency.flush error=\"{}\"", status.message());
    }
  });

  uint64_t bound = config_.max_cache_size;
  // The evictor's own watermark: a count is due as soon as eviction could be.
  bool over =
      bound > 0 && cachedBytes() > static_cast<uint64_t>(bound * evictor_.options().high_watermark);
  if (over || now - last_count_ >= kCountSeconds) {
    uint64_t stored = registry_.storedBytes();
    auto report = evictor_.run(now);
    if (!report) {
      spdlog::error("evict error=\"{}\"", report.status().message());
    } else {
      counted_bytes_.store(report->used_before - std::min(report->used_before, report->bytes));
      stored_at_count_.store(stored);
      last_count_ = now;
      if (report->manifests + report->blobs > 0) {
        registry_.metrics().recordEviction(report->manifests + report->blobs, report->bytes);
        spdlog::info("evict.done manifests={} blobs={} bytes={} held={} bound={}",
                     report->manifests, report->blobs, report->bytes, cachedBytes(), bound);
      }
    }
  }

  if (now - last_upload_sweep_ >= kUploadSweepSeconds) {
    last_upload_sweep_ = now;
    size_t expired = registry_.uploads().expire(now, config_.upload_ttl.count());
    if (expired > 0) spdlog::info("uploads.expired count={}", expired);
  }
}

}  // namespace regcache::proxy
