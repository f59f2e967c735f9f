// Periodic chores of a serving process: writing access recency, evicting down to
// max_cache_size, abandoning idle uploads. They run on the blocking pool, one batch at a time.
#pragma once

#include <atomic>
#include <cstdint>

#include "cache/eviction.h"
#include "proxy/config.h"
#include "proxy/live_registry.h"
#include "proxy/loop.h"

namespace regcache::proxy {

class Housekeeper {
 public:
  // Everything passed in outlives the Housekeeper.
  Housekeeper(const Config& config, const cache::Index& index, const cache::BlobStore& store,
              LiveRegistry& registry, BlockingPool& pool);

  // Queues the chores that are due. Called every few seconds from serve's main thread; a batch
  // still running makes it a no-op.
  void tick(int64_t now);

  // Cached bytes held: the last full count plus what fills stored since. Any thread.
  uint64_t cachedBytes() const;

 private:
  void runChores(int64_t now);

  const Config& config_;
  const cache::Index& index_;
  LiveRegistry& registry_;
  BlockingPool& pool_;
  cache::Evictor evictor_;
  std::atomic<bool> busy_{false};
  std::atomic<uint64_t> counted_bytes_{0};    // cached bytes at the last full count
  std::atomic<uint64_t> stored_at_count_{0};  // fills' stored bytes at that moment
  int64_t last_count_ = 0;                    // pool thread only (one batch at a time)
  int64_t last_upload_sweep_ = 0;             // pool thread only
};

// The digests a manifest references: its config and layers, or an index's children.
void manifestReferences(std::string_view media_type, std::string_view bytes,
                        std::vector<std::string>& out);

}  // namespace regcache::proxy
