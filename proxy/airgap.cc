// Shared pieces of warm, export and import.
#include "proxy/airgap.h"

#include <cstdio>
#include <system_error>

namespace regcache::proxy {

std::optional<DataDir> openDataDir(const std::filesystem::path& data_dir, bool must_exist) {
  std::error_code ec;
  if (must_exist && !std::filesystem::is_directory(data_dir / "index", ec)) {
    std::fprintf(stderr, "regcache: no cache at %s (no index directory)\n", data_dir.c_str());
    return std::nullopt;
  }
  auto index = cache::Index::open(data_dir / "index");
  if (!index) {
    std::fprintf(stderr, "regcache: index: %s\n", index.status().message().c_str());
    return std::nullopt;
  }
  auto store = cache::BlobStore::open(data_dir);
  if (!store) {
    std::fprintf(stderr, "regcache: blob store: %s\n", store.status().message().c_str());
    return std::nullopt;
  }
  return DataDir{std::move(*index), std::move(*store)};
}

bool isForeignLayer(const Descriptor& layer) {
  return layer.media_type == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" ||
         layer.media_type.starts_with("application/vnd.oci.image.layer.nondistributable.");
}

std::vector<Descriptor> requiredBlobs(const Manifest& manifest) {
  std::vector<Descriptor> blobs;
  if (manifest.config) blobs.push_back(*manifest.config);
  for (const Descriptor& layer : manifest.layers) {
    if (!isForeignLayer(layer)) blobs.push_back(layer);
  }
  return blobs;
}

int64_t millisSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start)
      .count();
}

}  // namespace regcache::proxy
