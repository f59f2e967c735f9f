// Disk usage: one pass over blob records, links, manifests and tags, then the directories.
#include "cache/usage.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "cache/store_files.h"

namespace regcache::cache {

namespace {

struct BlobInfo {
  uint64_t size = 0;
  uint32_t flags = 0;
};

// What one pass over the index gathers, keyed for the grouping that follows.
struct Gathered {
  std::unordered_map<std::string, BlobInfo> blobs;
  std::map<std::string, RepositoryUsage> repositories;
  std::map<std::string, std::unordered_set<std::string>> upstream_blobs;  // upstream -> digests
};

std::string upstreamOf(std::string_view repository, const std::vector<std::string>& upstreams) {
  std::string_view first = repository.substr(0, repository.find('/'));
  bool cached = first.size() < repository.size() &&
                std::find(upstreams.begin(), upstreams.end(), first) != upstreams.end();
  return cached ? std::string(first) : std::string();
}

RepositoryUsage& repositoryOf(Gathered& g, std::string_view name,
                              const std::vector<std::string>& upstreams) {
  auto [it, inserted] = g.repositories.try_emplace(std::string(name));
  if (inserted) {
    it->second.name = std::string(name);
    it->second.upstream = upstreamOf(name, upstreams);
  }
  return it->second;
}

// The totals' share of one blob record: du and the status page both count through here.
void countBlob(const BlobRecord& record, StoreUsage& usage) {
  ++usage.blobs;
  usage.bytes += record.size;
  if (record.flags & kBlobCached) {
    ++usage.cached_blobs;
    usage.cached_bytes += record.size;
  }
  if (record.flags & kBlobPushed) {
    ++usage.pushed_blobs;
    usage.pushed_bytes += record.size;
  }
}

Status gatherBlobs(const ReadTxn& txn, StoreUsage& usage, Gathered& g) {
  return txn.forEachBlob([&](std::string_view digest, const Result<BlobRecord>& record) {
    if (!record) {
      return true;  // fsck's to report
    }
    g.blobs.emplace(std::string(digest), BlobInfo{record->size, record->flags});
    countBlob(*record, usage);
    return true;
  });
}

// A link to a blob without a record counts nothing: there are no bytes behind it.
Status gatherLinks(const ReadTxn& txn, const std::vector<std::string>& upstreams, Gathered& g) {
  return txn.forEachLink([&](std::string_view repository, std::string_view digest) {
    auto blob = g.blobs.find(std::string(digest));
    if (blob == g.blobs.end()) {
      return true;
    }
    RepositoryUsage& repo = repositoryOf(g, repository, upstreams);
    ++repo.blobs;
    repo.bytes += blob->second.size;
    g.upstream_blobs[repo.upstream].insert(blob->first);
    return true;
  });
}

Status gatherManifestsAndTags(const ReadTxn& txn, const std::vector<std::string>& upstreams,
                              StoreUsage& usage, Gathered& g) {
  Status s = txn.forEachManifest(
      [&](std::string_view repository, std::string_view, const Result<ManifestView>&) {
        ++repositoryOf(g, repository, upstreams).manifests;
        ++usage.manifests;
        return true;
      });
  if (!s) {
    return s;
  }
  return txn.forEachTag([&](std::string_view repository, std::string_view, const Result<TagView>&) {
    ++repositoryOf(g, repository, upstreams).tags;
    ++usage.tags;
    return true;
  });
}

// Upstream groups: repositories counted per group, blobs once per group.
void groupByUpstream(Gathered& g, StoreUsage& usage) {
  std::map<std::string, UpstreamUsage> groups;
  for (auto& [name, repo] : g.repositories) {
    UpstreamUsage& group = groups[repo.upstream];
    group.name = repo.upstream;
    ++group.repositories;
    usage.repositories.push_back(std::move(repo));
  }
  for (auto& [upstream, digests] : g.upstream_blobs) {
    UpstreamUsage& group = groups[upstream];
    group.blobs = digests.size();
    for (const std::string& digest : digests) {
      group.bytes += g.blobs[digest].size;
    }
  }
  for (auto& [name, group] : groups) {
    usage.upstreams.push_back(std::move(group));  // std::map order: "" (local) first
  }
}

void measureDisk(const BlobStore& store, StoreUsage& usage) {
  const std::filesystem::path& root = store.root();
  usage.disk_blob_bytes = treeBytes(root / "blobs");
  usage.disk_upload_bytes = treeBytes(root / "uploads");
  usage.disk_temp_bytes = treeBytes(root / "tmp");
  usage.disk_index_bytes = treeBytes(root / "index");
  usage.disk_total_bytes = usage.disk_blob_bytes + usage.disk_upload_bytes + usage.disk_temp_bytes +
                           usage.disk_index_bytes;
}

}  // namespace

Result<StoreUsage> measureUsage(const Index& index, const BlobStore& store,
                                const std::vector<std::string>& upstream_names) {
  StoreUsage usage;
  Gathered gathered;
  {
    Result<ReadTxn> txn = index.read();
    if (!txn) {
      return txn.status();
    }
    Status s = gatherBlobs(*txn, usage, gathered);
    if (s) s = gatherLinks(*txn, upstream_names, gathered);
    if (s) s = gatherManifestsAndTags(*txn, upstream_names, usage, gathered);
    if (!s) {
      return s;
    }
  }
  groupByUpstream(gathered, usage);
  measureDisk(store, usage);
  return usage;
}

Result<StoreUsage> measureBlobTotals(const Index& index) {
  StoreUsage usage;
  Result<ReadTxn> txn = index.read();
  if (!txn) {
    return txn.status();
  }
  Status s = txn->forEachBlob([&](std::string_view, const Result<BlobRecord>& record) {
    if (record) {
      countBlob(*record, usage);
    }
    return true;
  });
  if (!s) {
    return s;
  }
  return usage;
}

}  // namespace regcache::cache
