// What warm, export and import share: opening a data directory beside a running server, the
// blobs a manifest needs, and reporting.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "cache/blob_store.h"
#include "cache/index.h"
#include "proxy/manifest.h"

namespace regcache::proxy {

// The index and blob store of a data directory. LMDB is multi-process and the store is only
// ever renamed into, so these work while `regcache serve` runs on the same directory.
struct DataDir {
  std::unique_ptr<cache::Index> index;
  std::unique_ptr<cache::BlobStore> store;
};

// Opens `data_dir`'s index and store; with `must_exist`, a missing directory is an error
// (export from a wrong path should say so, not report an empty cache). Prints the reason to
// stderr and returns nullopt on failure.
std::optional<DataDir> openDataDir(const std::filesystem::path& data_dir, bool must_exist);

// Layers registries need not hold (Windows base layers and other non-distributable ones).
bool isForeignLayer(const Descriptor& layer);

// The blobs an image manifest needs (config first, then layers), foreign layers left out.
std::vector<Descriptor> requiredBlobs(const Manifest& manifest);

// Milliseconds since `start`, for the `ms=` fields.
int64_t millisSince(std::chrono::steady_clock::time_point start);

}  // namespace regcache::proxy
