// Keeping cached (upstream) content under max_cache_size: access recency recorded in memory
// and written in batches, and an evictor that drops the least recently used cached images.
//
// Eviction works by reference: the unit is a cached manifest, and a blob goes only when no
// manifest still held (cached or pushed) references it and it was never pushed. So evicting
// one image never breaks another that shares its base layers, and pushed content is never
// touched. A client reading a blob that gets evicted keeps its open file and completes.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cache/blob_store.h"
#include "cache/index.h"
#include "cache/status.h"

namespace regcache::cache {

// When a cached manifest was last served, buffered so that a GET costs a map update and not
// a write transaction. Thread-safe.
class Recency {
 public:
  // Records an access. Cheap: a sharded, mostly uncontended lock and a map insert.
  void touch(std::string_view repository, std::string_view digest, int64_t now);
  // Writes every buffered time in one transaction and clears the buffer. Blocking.
  Status flush(const Index& index);
  size_t pending() const;

 private:
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, int64_t> times;  // "repo\0digest" -> unix seconds
  };
  static constexpr size_t kShards = 16;
  std::array<Shard, kShards> shards_;
};

struct EvictionOptions {
  uint64_t max_bytes = 0;        // max_cache_size; 0 disables eviction
  double high_watermark = 0.95;  // start evicting above this share of max_bytes
  double low_watermark = 0.85;   // stop once below this share
  // Blobs no manifest references are left alone this long (a fill may land before its
  // manifest is stored by a concurrent request).
  int64_t orphan_grace_seconds = 600;
  // Whether a repository key is upstream-backed (its content may be evicted).
  std::function<bool(std::string_view repository)> is_cached_repository;
  // Appends the digests a manifest references (config, layers, index children).
  std::function<void(std::string_view media_type, std::string_view manifest_bytes,
                     std::vector<std::string>& out)>
      references;
};

struct EvictionReport {
  uint64_t used_before = 0;  // cached bytes found
  uint64_t manifests = 0;    // evicted
  uint64_t blobs = 0;        // evicted
  uint64_t bytes = 0;        // blob bytes freed
};

class Evictor {
 public:
  // Everything passed in outlives the Evictor.
  Evictor(const Index& index, const BlobStore& store, EvictionOptions options);

  const EvictionOptions& options() const { return options_; }

  // Bytes of blobs that are cached and were never pushed. Blocking (walks the blob records).
  Result<uint64_t> cachedBytes() const;

  // When cached bytes exceed the high watermark, evicts least recently used cached images
  // (and cached blobs no manifest needs) until they are under the low watermark. Blocking:
  // run on the pool. One write transaction; blob files are unlinked after it commits, so a
  // crash leaves unreferenced files for gc, never index entries without files.
  Result<EvictionReport> run(int64_t now) const;

 private:
  const Index& index_;
  const BlobStore& store_;
  EvictionOptions options_;
};

}  // namespace regcache::cache
