// Approximate LRU over cached images, evicted by reference.
//
// Why per image and not per blob: a pull is "manifest, then its blobs", so the manifest's last
// access stands for the image's; evicting blobs by their own recency would take shared base
// layers out from under images still in use. Why a plan made on a snapshot: walking every
// manifest and parsing it takes long enough that holding LMDB's single writer lock for it
// would stall pushes and fills; the plan is applied in one short write transaction, and a
// cached image stored meanwhile that shares an evicted blob just refetches it (pushed content
// is flagged and never planned for eviction).
#include "cache/eviction.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <unordered_set>

namespace regcache::cache {

namespace {

std::string recencyKey(std::string_view repository, std::string_view digest) {
  std::string key(repository);
  key.push_back('\0');
  key.append(digest);
  return key;
}

bool isCachedOnly(const BlobRecord& record) {
  return (record.flags & kBlobCached) != 0 && (record.flags & kBlobPushed) == 0;
}

struct CachedManifest {
  std::string repository;
  std::string digest;
  int64_t last_used = 0;
  std::vector<std::string> references;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Recency

void Recency::touch(std::string_view repository, std::string_view digest, int64_t now) {
  std::string key = recencyKey(repository, digest);
  Shard& shard = shards_[std::hash<std::string>{}(key) % kShards];
  std::lock_guard lock(shard.mu);
  shard.times[std::move(key)] = now;
}

size_t Recency::pending() const {
  size_t n = 0;
  for (const auto& shard : shards_) {
    std::lock_guard lock(shard.mu);
    n += shard.times.size();
  }
  return n;
}

Status Recency::flush(const Index& index) {
  std::unordered_map<std::string, int64_t> batch;
  for (auto& shard : shards_) {
    std::lock_guard lock(shard.mu);
    if (batch.empty()) {
      batch.swap(shard.times);
    } else {
      batch.merge(shard.times);
      shard.times.clear();
    }
  }
  if (batch.empty()) return Status::ok();

  auto txn = index.write();
  if (!txn) return txn.status();
  for (const auto& [key, when] : batch) {
    size_t sep = key.find('\0');
    std::string_view repository(key.data(), sep);
    std::string_view digest(key.data() + sep + 1, key.size() - sep - 1);
    // A manifest evicted since it was touched has nothing to refresh.
    if (!txn->manifest(repository, digest)) continue;
    if (Status status = txn->putAccess(repository, digest, when); !status) return status;
  }
  return txn->commit();
}

// ---------------------------------------------------------------------------------------------
// Evictor

Evictor::Evictor(const Index& index, const BlobStore& store, EvictionOptions options)
    : index_(index), store_(store), options_(std::move(options)) {}

Result<uint64_t> Evictor::cachedBytes() const {
  auto txn = index_.read();
  if (!txn) return txn.status();
  uint64_t total = 0;
  Status status = txn->forEachBlob([&total](std::string_view, const Result<BlobRecord>& record) {
    if (record && isCachedOnly(*record)) total += record->size;
    return true;
  });
  if (!status) return status;
  return total;
}

Result<EvictionReport> Evictor::run(int64_t now) const {
  EvictionReport report;
  if (options_.max_bytes == 0) return report;
  auto used = cachedBytes();
  if (!used) return used.status();
  report.used_before = *used;
  auto high =
      static_cast<uint64_t>(static_cast<double>(options_.max_bytes) * options_.high_watermark);
  if (*used <= high) return report;
  auto low =
      static_cast<uint64_t>(static_cast<double>(options_.max_bytes) * options_.low_watermark);

  // Plan on a snapshot: which manifests are cached, when each was last used, and how many
  // held manifests reference each blob.
  std::vector<CachedManifest> cached;
  std::unordered_map<std::string, uint32_t> refcount;
  std::unordered_map<std::string, BlobRecord> blobs;
  {
    auto txn = index_.read();
    if (!txn) return txn.status();
    std::vector<std::string> refs;
    Status status = txn->forEachManifest(
        [&](std::string_view repo, std::string_view digest, const Result<ManifestView>& m) {
          if (!m) return true;
          refs.clear();
          options_.references(m->media_type, m->bytes, refs);
          for (const auto& r : refs) ++refcount[r];
          if (options_.is_cached_repository(repo)) {
            auto access = txn->access(repo, digest);
            cached.push_back(
                {std::string(repo), std::string(digest), access ? *access : m->created, refs});
          }
          return true;
        });
    if (!status) return status;
    status = txn->forEachBlob([&](std::string_view digest, const Result<BlobRecord>& record) {
      if (record && isCachedOnly(*record)) blobs.emplace(std::string(digest), *record);
      return true;
    });
    if (!status) return status;
  }
  std::sort(cached.begin(), cached.end(), [](const CachedManifest& a, const CachedManifest& b) {
    return a.last_used < b.last_used;
  });

  // Orphans first (cached blobs no manifest references, past their grace), then whole images
  // from the least recently used, until under the low watermark.
  std::vector<std::string> evict_blobs;
  uint64_t remaining = *used;
  for (const auto& [digest, record] : blobs) {
    if (remaining <= low) break;
    if (refcount.count(digest) == 0 && now - record.created > options_.orphan_grace_seconds) {
      evict_blobs.push_back(digest);
      remaining -= std::min(remaining, record.size);
    }
  }
  std::vector<const CachedManifest*> evict_manifests;
  for (const auto& m : cached) {
    if (remaining <= low) break;
    evict_manifests.push_back(&m);
    for (const auto& r : m.references) {
      auto it = refcount.find(r);
      if (it == refcount.end() || --it->second > 0) continue;
      auto blob = blobs.find(r);
      if (blob == blobs.end()) continue;  // pushed, or not held
      evict_blobs.push_back(r);
      remaining -= std::min(remaining, blob->second.size);
    }
  }
  if (evict_manifests.empty() && evict_blobs.empty()) return report;

  // Apply: one write transaction. Blob links are found with one walk of the links.
  std::unordered_set<std::string> doomed(evict_blobs.begin(), evict_blobs.end());
  std::vector<std::string> removed_files;
  {
    auto txn = index_.write();
    if (!txn) return txn.status();
    for (const CachedManifest* m : evict_manifests) {
      Status status = txn->deleteManifest(m->repository, m->digest);
      if (!status && status.code() != Code::kNotFound) return status;
      (void)txn->deleteAccess(m->repository, m->digest);
      ++report.manifests;
    }
    std::vector<std::pair<std::string, std::string>> links;
    Status status = txn->forEachLink([&](std::string_view repo, std::string_view digest) {
      if (doomed.count(std::string(digest)) > 0) links.emplace_back(repo, digest);
      return true;
    });
    if (!status) return status;
    for (const auto& [repo, digest] : links) (void)txn->unlink(repo, digest);
    for (const auto& digest : evict_blobs) {
      auto record = txn->blob(digest);
      if (!record || !isCachedOnly(*record)) continue;  // pushed meanwhile: keep it
      if (Status s = txn->deleteBlob(digest); !s) return s;
      report.bytes += record->size;
      ++report.blobs;
      removed_files.push_back(digest);
    }
    if (Status s = txn->commit(); !s) return s;
  }
  for (const auto& digest : removed_files) {
    auto parsed = Digest::parse(digest);
    if (parsed) (void)store_.removeBlob(*parsed);
    spdlog::debug("evict.blob digest={}", digest);
  }
  return report;
}

}  // namespace regcache::cache
