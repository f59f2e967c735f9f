// What the commands that work on a data directory offline or beside a running server (gc,
// fsck, du) share: opening the store, the --grace option, byte counts for people, and the
// manifest reader gc needs.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "cache/blob_store.h"
#include "cache/gc.h"
#include "cache/index.h"
#include "proxy/config.h"
#include "proxy/manifest.h"

namespace regcache::proxy {

// The index and the blob store of a data directory, opened beside any running server (LMDB
// is multi-process; the store's directories are only read or renamed into).
struct OpenedStore {
  std::unique_ptr<cache::Index> index;
  std::unique_ptr<cache::BlobStore> store;
};

// Opens the store under `data_dir`, which must exist: a command given a wrong path should say
// so rather than create an empty store and report it clean. Prints the reason on failure.
inline std::optional<OpenedStore> openStoreForCommand(const std::filesystem::path& data_dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(data_dir, ec)) {
    std::fprintf(stderr, "regcache: no data directory at %s\n", data_dir.c_str());
    return std::nullopt;
  }
  auto index = cache::Index::open(data_dir / "index");
  if (!index) {
    std::fprintf(stderr, "regcache: %s\n", index.status().message().c_str());
    return std::nullopt;
  }
  auto store = cache::BlobStore::open(data_dir);
  if (!store) {
    std::fprintf(stderr, "regcache: %s\n", store.status().message().c_str());
    return std::nullopt;
  }
  return OpenedStore{std::move(*index), std::move(*store)};
}

// "1.5 GiB", "312 B".
inline std::string humanBytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", value, kUnits[unit]);
  return text;
}

// Reads `--grace DURATION` at rest[i] (advancing i). Returns false, having printed why, on a
// missing or bad value.
inline bool parseGraceOption(const std::vector<std::string>& rest, size_t& i, int64_t& seconds) {
  if (i + 1 >= rest.size()) {
    std::fputs("regcache: --grace needs a duration like 1h or 0s\n", stderr);
    return false;
  }
  auto grace = parseDuration(rest[++i]);
  if (!grace) {
    std::fprintf(stderr, "regcache: bad --grace: %s\n", grace.status().message().c_str());
    return false;
  }
  seconds = grace->count();
  return true;
}

// The blobs a stored manifest needs: its config and layers (an index needs none, its children
// being manifests).
inline Result<std::vector<std::string>> manifestBlobDigests(std::string_view media_type,
                                                            std::string_view bytes) {
  auto manifest = parseManifest(bytes, media_type);
  if (!manifest) return manifest.status();
  std::vector<std::string> digests;
  if (manifest->config) digests.push_back(manifest->config->digest);
  for (const Descriptor& layer : manifest->layers) digests.push_back(layer.digest);
  return digests;
}

}  // namespace regcache::proxy
