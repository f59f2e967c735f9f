// Garbage collection: mark from a read snapshot, re-check and delete records under the writer
// lock, then unlink files.
//
// Why the re-check is cheap: the mark parses every manifest, which is slow, but a manifest's
// key ends in the digest of its bytes, so a key seen by the mark needs no second parse. Under
// the writer lock gc only walks link keys and manifest keys, parsing just the manifests stored
// since the snapshot. The lock is held for two key walks, not for the mark.
#include "cache/gc.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <unordered_set>
#include <utility>

#include "cache/store_files.h"

namespace regcache::cache {

namespace {

// Unlinks happen in batches, each under its own write transaction, so a big sweep does not
// hold the writer lock (and every push behind it) for the whole run.
constexpr size_t kUnlinkBatch = 256;

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringSet = std::unordered_set<std::string, StringHash, std::equal_to<>>;

// What the mark found: the candidates (unneeded records) and the manifests it has read.
struct Mark {
  StringSet needed;
  StringSet manifest_keys;                                  // repository + '\0' + digest
  std::map<std::string, uint64_t, std::less<>> candidates;  // digest -> record size
};

std::string manifestKey(std::string_view repository, std::string_view digest) {
  std::string key(repository);
  key.push_back('\0');
  key.append(digest);
  return key;
}

// Adds the blobs of every manifest not already in mark.manifest_keys to `on_blob`.
// Works on a ReadTxn or a WriteTxn.
template <typename Txn, typename OnBlob>
Status visitManifestBlobs(const Txn& txn, const ManifestBlobs& manifest_blobs, Mark& mark,
                          OnBlob&& on_blob) {
  Status failed;
  Status s = txn.forEachManifest([&](std::string_view repository, std::string_view digest,
                                     const Result<ManifestView>& manifest) {
    std::string key = manifestKey(repository, digest);
    if (mark.manifest_keys.contains(key)) {
      return true;
    }
    Result<std::vector<std::string>> blobs =
        manifest ? manifest_blobs(manifest->media_type, manifest->bytes)
                 : Result<std::vector<std::string>>(manifest.status());
    if (!blobs) {
      failed = corrupt("gc: manifest " + std::string(repository) + "@" + std::string(digest) +
                       " unreadable (" + blobs.status().message() + "); run fsck");
      return false;
    }
    for (const std::string& blob : *blobs) {
      on_blob(blob);
    }
    mark.manifest_keys.insert(std::move(key));
    return true;
  });
  return s ? failed : s;
}

Result<Mark> markNeeded(const Index& index, const ManifestBlobs& manifest_blobs) {
  Result<ReadTxn> txn = index.read();
  if (!txn) {
    return txn.status();
  }
  Mark mark;
  Status s = txn->forEachLink([&](std::string_view, std::string_view digest) {
    mark.needed.emplace(digest);
    return true;
  });
  if (s) {
    s = visitManifestBlobs(*txn, manifest_blobs, mark,
                           [&](const std::string& blob) { mark.needed.insert(blob); });
  }
  if (s) {
    s = txn->forEachBlob([&](std::string_view digest, const Result<BlobRecord>& record) {
      // An undecodable record is fsck's to judge, not gc's to delete.
      if (record && !mark.needed.contains(digest)) {
        mark.candidates.emplace(digest, record->size);
      }
      return true;
    });
  }
  if (!s) {
    return s;
  }
  mark.needed.clear();  // no longer needed: the candidates say it all
  return mark;
}

void forgetCandidate(Mark& mark, std::string_view digest) {
  auto it = mark.candidates.find(digest);
  if (it != mark.candidates.end()) {
    mark.candidates.erase(it);
  }
}

// Step 2: under the writer lock, drops candidates that became needed since the snapshot and
// deletes the records of the rest. Returns the digests whose records went, with their sizes.
Result<std::vector<std::pair<std::string, uint64_t>>> sweepRecords(
    const Index& index, const ManifestBlobs& manifest_blobs, Mark& mark, size_t* kept) {
  std::vector<std::pair<std::string, uint64_t>> deleted;
  Result<WriteTxn> txn = index.write();
  if (!txn) {
    return txn.status();
  }
  size_t before = mark.candidates.size();
  Status s = txn->forEachLink([&](std::string_view, std::string_view digest) {
    forgetCandidate(mark, digest);
    return true;
  });
  if (s) {
    s = visitManifestBlobs(*txn, manifest_blobs, mark,
                           [&](const std::string& blob) { forgetCandidate(mark, blob); });
  }
  if (!s) {
    return s;
  }
  *kept += before - mark.candidates.size();

  for (const auto& [digest, size] : mark.candidates) {
    s = txn->deleteBlob(digest);
    if (s) {
      deleted.emplace_back(digest, size);
    } else if (s.code() != Code::kNotFound) {
      return s;
    }
  }
  if (s = txn->commit(); !s) {
    return s;
  }
  return deleted;
}

// A file gc may unlink once no index record claims it.
struct Doomed {
  GcItem item;
  bool is_upload = false;  // claimed by an upload record, else by a blob record
};

// Unlinks each doomed file whose record is absent, checking and unlinking under a write
// transaction (aborted, never committed) so no commit can write its record in between.
// Files whose record exists again are kept and counted.
Status unlinkUnclaimed(const Index& index, std::vector<Doomed>& doomed, GcReport& report) {
  for (size_t first = 0; first < doomed.size(); first += kUnlinkBatch) {
    Result<WriteTxn> txn = index.write();
    if (!txn) {
      return txn.status();
    }
    size_t last = std::min(doomed.size(), first + kUnlinkBatch);
    for (size_t i = first; i < last; ++i) {
      GcItem& item = doomed[i].item;
      Status claimed =
          doomed[i].is_upload ? txn->upload(item.name).status() : txn->blob(item.name).status();
      if (claimed.code() != Code::kNotFound) {
        ++report.kept;
        continue;
      }
      // What the disk gives back, which for a record whose file was already gone is nothing.
      std::error_code ec;
      uint64_t bytes = std::filesystem::file_size(item.path, ec);
      item.bytes = ec ? 0 : bytes;
      if (Status s = removeFile(item.path); !s) {
        return s;
      }
      spdlog::debug("gc.removed kind={} name={} bytes={}", gcKindName(item.kind), item.name,
                    item.bytes);
      report.items.push_back(std::move(item));
    }
  }
  return Status::ok();
}

// Blob files that no record claims, older than the grace period.
Result<std::vector<Doomed>> unindexedBlobFiles(const Index& index, const BlobStore& store,
                                               const GcOptions& options) {
  Result<ReadTxn> txn = index.read();
  if (!txn) {
    return txn.status();
  }
  std::vector<Doomed> out;
  Status s = forEachBlobFile(store, [&](const std::optional<Digest>& digest, const StoreFile& f) {
    // Files whose names spell no digest are fsck's to report, not gc's to guess about.
    if (!digest || options.now - f.changed < options.grace_seconds) {
      return;
    }
    std::string name = digest->str();
    if (txn->blob(name).status().code() == Code::kNotFound) {
      out.push_back({GcItem{GcKind::kUnindexedBlob, std::move(name), f.path, f.size}, false});
    }
  });
  if (!s) {
    return s;
  }
  return out;
}

// Upload files that no upload record claims, older than the grace period (an upload's file is
// created just before its record).
Result<std::vector<Doomed>> orphanUploadFiles(const Index& index, const BlobStore& store,
                                              const GcOptions& options) {
  Result<ReadTxn> txn = index.read();
  if (!txn) {
    return txn.status();
  }
  std::vector<Doomed> out;
  for (auto& [uuid, file] : uploadFiles(store)) {
    if (options.now - file.changed >= options.grace_seconds &&
        txn->upload(uuid).status().code() == Code::kNotFound) {
      out.push_back({GcItem{GcKind::kUpload, uuid, file.path, file.size}, true});
    }
  }
  return out;
}

std::vector<Doomed> blobsOfRecords(const BlobStore& store,
                                   const std::vector<std::pair<std::string, uint64_t>>& records) {
  std::vector<Doomed> out;
  for (const auto& [name, size] : records) {
    Result<Digest> digest = Digest::parse(name);
    if (!digest) {
      continue;  // a record whose key is no digest has no file to remove
    }
    out.push_back({GcItem{GcKind::kBlob, name, store.blobPath(*digest), size}, false});
  }
  return out;
}

void removeOrphanTemps(const BlobStore& store, bool dry_run, GcReport& report) {
  for (StoreFile& file : orphanTemps(store)) {
    if (!dry_run && !removeFile(file.path)) {
      continue;
    }
    std::string name = file.path.filename().string();
    report.items.push_back(GcItem{GcKind::kTemp, std::move(name), file.path, file.size});
  }
}

void listDoomed(std::vector<Doomed>& doomed, GcReport& report) {
  for (Doomed& d : doomed) {
    report.items.push_back(std::move(d.item));
  }
}

void summarise(GcReport& report) {
  for (const GcItem& item : report.items) {
    bool is_blob = item.kind == GcKind::kBlob || item.kind == GcKind::kUnindexedBlob;
    (is_blob ? report.blobs : report.files) += 1;
    report.bytes += item.bytes;
  }
}

// Steps 2 and 3 for records (skipped in a dry run, which lists the mark's candidates).
Status removeBlobRecords(const Index& index, const BlobStore& store,
                         const ManifestBlobs& manifest_blobs, const GcOptions& options, Mark& mark,
                         GcReport& report) {
  if (options.dry_run) {
    std::vector<std::pair<std::string, uint64_t>> candidates(mark.candidates.begin(),
                                                             mark.candidates.end());
    std::vector<Doomed> doomed = blobsOfRecords(store, candidates);
    listDoomed(doomed, report);
    return Status::ok();
  }
  if (mark.candidates.empty()) {
    return Status::ok();
  }
  auto deleted = sweepRecords(index, manifest_blobs, mark, &report.kept);
  if (!deleted) {
    return deleted.status();
  }
  std::vector<Doomed> doomed = blobsOfRecords(store, *deleted);
  return unlinkUnclaimed(index, doomed, report);
}

// Unindexed blob files and orphaned upload files: listed, or unlinked once re-checked.
Status removeUnclaimedFiles(const Index& index, const BlobStore& store, const GcOptions& options,
                            GcReport& report) {
  auto blobs = unindexedBlobFiles(index, store, options);
  if (!blobs) {
    return blobs.status();
  }
  auto uploads = orphanUploadFiles(index, store, options);
  if (!uploads) {
    return uploads.status();
  }
  blobs->insert(blobs->end(), std::make_move_iterator(uploads->begin()),
                std::make_move_iterator(uploads->end()));
  if (options.dry_run) {
    listDoomed(*blobs, report);
    return Status::ok();
  }
  return unlinkUnclaimed(index, *blobs, report);
}

}  // namespace

std::string_view gcKindName(GcKind kind) {
  switch (kind) {
    case GcKind::kBlob:
      return "blob";
    case GcKind::kUnindexedBlob:
      return "unindexed-blob";
    case GcKind::kTemp:
      return "temp";
    case GcKind::kUpload:
      return "upload";
  }
  return "unknown";
}

Result<GcReport> collectGarbage(const Index& index, const BlobStore& store,
                                const ManifestBlobs& manifest_blobs, const GcOptions& options) {
  Result<Mark> mark = markNeeded(index, manifest_blobs);
  if (!mark) {
    return mark.status();
  }

  GcReport report;
  Status s = removeBlobRecords(index, store, manifest_blobs, options, *mark, report);
  if (s) {
    s = removeUnclaimedFiles(index, store, options, report);
  }
  if (!s) {
    return s;
  }
  removeOrphanTemps(store, options.dry_run, report);
  summarise(report);
  return report;
}

}  // namespace regcache::cache
