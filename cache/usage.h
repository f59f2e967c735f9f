// Disk usage of the store, from the index: per repository, per upstream, cached against pushed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cache/blob_store.h"
#include "cache/index.h"
#include "cache/status.h"

namespace regcache::cache {

struct RepositoryUsage {
  std::string name;      // the repository key: "<upstream>/<remote name>", or a local name
  std::string upstream;  // the upstream of a cached repository; empty for a local one
  uint64_t blobs = 0;    // blobs linked here, each once
  uint64_t bytes = 0;    // their sizes
  uint64_t manifests = 0;
  uint64_t tags = 0;
};

// A cached repository's upstream, or the local repositories together (name empty).
struct UpstreamUsage {
  std::string name;
  uint64_t repositories = 0;
  uint64_t blobs = 0;  // blobs linked by any of its repositories, each once
  uint64_t bytes = 0;
};

struct StoreUsage {
  std::vector<RepositoryUsage> repositories;  // by name
  std::vector<UpstreamUsage> upstreams;       // by name; the local group (empty name) first
  // Every blob record, each once, and the split by where it came from (a blob both fetched
  // and pushed counts in both).
  uint64_t blobs = 0;
  uint64_t bytes = 0;
  uint64_t cached_blobs = 0;
  uint64_t cached_bytes = 0;
  uint64_t pushed_blobs = 0;
  uint64_t pushed_bytes = 0;
  uint64_t manifests = 0;
  uint64_t tags = 0;
  // What the directories hold on disk (file sizes), whatever the index says.
  uint64_t disk_blob_bytes = 0;
  uint64_t disk_upload_bytes = 0;
  uint64_t disk_temp_bytes = 0;
  uint64_t disk_index_bytes = 0;
  uint64_t disk_total_bytes = 0;
};

// Measures the store from one read snapshot of `index` and a walk of the directories under
// `store`. A repository whose first path component is one of `upstream_names` is cached from
// that upstream; any other is local. Blocking (walks the disk): not on an event loop.
// Errors: kIo/kInternal when the index cannot be read.
Result<StoreUsage> measureUsage(const Index& index, const BlobStore& store,
                                const std::vector<std::string>& upstream_names);

// Only the blob totals of StoreUsage (blobs, bytes, cached_*, pushed_*), from one pass over the
// blob records with the same counting measureUsage does: the status page shows these beside
// `regcache du` and the two must agree. No directory walk, no per-blob memory. Blocking (reads
// every record): not on an event loop. Errors as measureUsage.
Result<StoreUsage> measureBlobTotals(const Index& index);

}  // namespace regcache::cache
