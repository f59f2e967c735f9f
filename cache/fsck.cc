// fsck: find (from one snapshot and a walk of the disk), confirm (against a fresh snapshot, so
// a concurrent commit or gc is not mistaken for damage), then repair (index first, files
// after, each step re-checked under the writer lock).
#include "cache/fsck.h"

#include <unistd.h>

#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <unordered_set>
#include <utility>

#include "cache/store_files.h"

namespace regcache::cache {

namespace {

bool fileExists(const std::filesystem::path& path) { return ::access(path.c_str(), F_OK) == 0; }

uint64_t fileSize(const std::filesystem::path& path) {
  std::error_code ec;
  uint64_t size = std::filesystem::file_size(path, ec);
  return ec ? 0 : size;
}

bool isNotFound(const Status& s) { return s.code() == Code::kNotFound; }

// Whether `p` is still a problem in `txn` and on disk right now. Works on a ReadTxn (the
// confirmation) and a WriteTxn (the re-check before a repair).
template <typename Txn>
bool stillHolds(const Txn& txn, const FsckProblem& p) {
  switch (p.kind) {
    case FsckKind::kCorruptBlob:
    case FsckKind::kStrayFile:
    case FsckKind::kTempFile:
      return fileExists(p.path);
    case FsckKind::kBadRecord:
      return txn.blob(p.name).status().code() == Code::kCorrupt;
    case FsckKind::kMissingFile:
      return txn.blob(p.name).isOk() && !fileExists(p.path);
    case FsckKind::kSizeMismatch: {
      Result<BlobRecord> record = txn.blob(p.name);
      return record && fileExists(p.path) && record->size != fileSize(p.path);
    }
    case FsckKind::kUnindexedBlob:
      return isNotFound(txn.blob(p.name).status()) && fileExists(p.path);
    case FsckKind::kDanglingLink:
      return txn.isLinked(p.repository, p.name) && isNotFound(txn.blob(p.name).status());
    case FsckKind::kCorruptManifest:
      return !isNotFound(txn.manifest(p.repository, p.name).status());
    case FsckKind::kDanglingTag: {
      Result<TagView> tag = txn.tag(p.repository, p.name);
      return tag ? isNotFound(txn.manifest(p.repository, tag->digest).status())
                 : tag.status().code() == Code::kCorrupt;
    }
    case FsckKind::kOrphanUpload:
      return isNotFound(txn.upload(p.name).status()) && fileExists(p.path);
    case FsckKind::kUploadWithoutFile:
      return txn.upload(p.name).isOk() && !fileExists(p.path);
  }
  return false;
}

class Checker {
 public:
  Checker(const Index& index, const BlobStore& store, const FsckOptions& options,
          FsckReport& report)
      : index_(index), store_(store), options_(options), report_(report) {}

  // Finds and confirms; then repairs when asked.
  Status run() {
    if (Status s = find(); !s) {
      return s;
    }
    if (Status s = confirm(); !s) {
      return s;
    }
    if (!options_.repair || report_.problems.empty()) {
      return Status::ok();
    }
    if (Status s = repairIndex(); !s) {
      return s;
    }
    return repairFiles();
  }

 private:
  // -------------------------------------------------------------------------------------------
  // Finding

  Status find() {
    Result<ReadTxn> txn = index_.read();
    if (!txn) {
      return txn.status();
    }
    Status s = readBlobRecords(*txn);
    if (s) s = checkBlobFiles();
    if (s) s = checkLinks(*txn);
    if (s) s = checkManifests(*txn);
    if (s) s = checkTags(*txn);
    if (!s) {
      return s;
    }
    checkMissingFiles();
    checkTemps();
    checkUploads(*txn);
    return Status::ok();
  }

  void add(FsckKind kind, std::string repository, std::string name, std::filesystem::path path,
           std::string detail = "") {
    report_.problems.push_back(FsckProblem{kind, std::move(repository), std::move(name),
                                           std::move(path), std::move(detail), ""});
  }

  std::filesystem::path pathOf(std::string_view digest) const {
    Result<Digest> parsed = Digest::parse(digest);
    return parsed ? store_.blobPath(*parsed) : std::filesystem::path();
  }

  bool pastGrace(int64_t changed) const { return options_.now - changed >= options_.grace_seconds; }

  Status readBlobRecords(const ReadTxn& txn) {
    return txn.forEachBlob([&](std::string_view digest, const Result<BlobRecord>& record) {
      if (record) {
        records_.emplace(digest, record->size);
      } else {
        add(FsckKind::kBadRecord, "", std::string(digest), pathOf(digest));
      }
      return true;
    });
  }

  Status checkBlobFiles() {
    return forEachBlobFile(store_, [&](const std::optional<Digest>& digest, const StoreFile& f) {
      if (!digest) {
        if (pastGrace(f.changed)) add(FsckKind::kStrayFile, "", "", f.path);
        return;
      }
      std::string name = digest->str();
      on_disk_.insert(name);
      checkBlobFile(*digest, name, f);
    });
  }

  void checkBlobFile(const Digest& digest, const std::string& name, const StoreFile& f) {
    Result<Digest> actual = hashFile(f.path, digest.algorithm());
    if (!actual && isNotFound(actual.status())) {
      return;  // removed while we walked (gc, eviction): nothing to check
    }
    ++report_.blobs_checked;
    report_.bytes_checked += f.size;
    if (!actual || *actual != digest) {
      std::string detail = actual ? "actual=" + actual->str() : actual.status().message();
      add(FsckKind::kCorruptBlob, "", name, f.path, std::move(detail));
      return;
    }
    auto record = records_.find(name);
    if (record == records_.end()) {
      if (pastGrace(f.changed)) add(FsckKind::kUnindexedBlob, "", name, f.path);
    } else if (record->second != f.size) {
      add(FsckKind::kSizeMismatch, "", name, f.path,
          "record=" + std::to_string(record->second) + " file=" + std::to_string(f.size));
    }
  }

  void checkMissingFiles() {
    for (const auto& [digest, size] : records_) {
      if (!on_disk_.contains(digest)) {
        add(FsckKind::kMissingFile, "", digest, pathOf(digest));
      }
    }
  }

  Status checkLinks(const ReadTxn& txn) {
    return txn.forEachLink([&](std::string_view repository, std::string_view digest) {
      if (!records_.contains(digest)) {
        add(FsckKind::kDanglingLink, std::string(repository), std::string(digest), {});
      }
      return true;
    });
  }

  Status checkManifests(const ReadTxn& txn) {
    return txn.forEachManifest([&](std::string_view repository, std::string_view digest,
                                   const Result<ManifestView>& manifest) {
      Result<Digest> key = Digest::parse(digest);
      std::string detail;
      if (!manifest) {
        detail = "undecodable";
      } else if (!key) {
        detail = "key is not a digest";
      } else if (Digest actual = digestOf(manifest->bytes, key->algorithm()); actual != *key) {
        detail = "actual=" + actual.str();
      }
      if (!detail.empty()) {
        add(FsckKind::kCorruptManifest, std::string(repository), std::string(digest), {}, detail);
      }
      return true;
    });
  }

  Status checkTags(const ReadTxn& txn) {
    return txn.forEachTag(
        [&](std::string_view repository, std::string_view tag, const Result<TagView>& record) {
          if (!record || isNotFound(txn.manifest(repository, record->digest).status())) {
            std::string detail =
                record ? "manifest=" + std::string(record->digest) : std::string("undecodable");
            add(FsckKind::kDanglingTag, std::string(repository), std::string(tag), {}, detail);
          }
          return true;
        });
  }

  void checkTemps() {
    for (StoreFile& file : orphanTemps(store_)) {
      add(FsckKind::kTempFile, "", "", file.path);
    }
  }

  void checkUploads(const ReadTxn& txn) {
    std::unordered_set<std::string> with_file;
    for (auto& [uuid, file] : uploadFiles(store_)) {
      with_file.insert(uuid);
      if (pastGrace(file.changed) && isNotFound(txn.upload(uuid).status())) {
        add(FsckKind::kOrphanUpload, "", uuid, file.path);
      }
    }
    for (auto& [uuid, record] : txn.uploads()) {
      if (!with_file.contains(uuid)) {
        add(FsckKind::kUploadWithoutFile, "", uuid, store_.uploadPath(uuid));
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Confirming: drops findings a concurrent commit, gc or upload explains.

  Status confirm() {
    Result<ReadTxn> txn = index_.read();
    if (!txn) {
      return txn.status();
    }
    std::erase_if(report_.problems, [&](const FsckProblem& p) { return !stillHolds(*txn, p); });
    return Status::ok();
  }

  // -------------------------------------------------------------------------------------------
  // Repairing

  // Index entries, in one write transaction: each re-checked, then dropped or corrected.
  Status repairIndex() {
    Result<WriteTxn> txn = index_.write();
    if (!txn) {
      return txn.status();
    }
    for (FsckProblem& p : report_.problems) {
      if (!stillHolds(*txn, p)) {
        continue;
      }
      if (Status s = repairEntry(*txn, p); !s) {
        return s;
      }
    }
    return txn->commit();
  }

  Status repairEntry(WriteTxn& txn, FsckProblem& p) {
    Status s;
    switch (p.kind) {
      case FsckKind::kCorruptBlob:
      case FsckKind::kBadRecord:
      case FsckKind::kMissingFile: {
        Result<size_t> links = txn.deleteBlobAndLinks(p.name);
        if (!links) return links.status();
        p.repair = "record and " + std::to_string(*links) + " links dropped";
        return Status::ok();
      }
      case FsckKind::kSizeMismatch:
        return fixSize(txn, p);
      case FsckKind::kDanglingLink:
        s = txn.unlink(p.repository, p.name);
        p.repair = "link dropped";
        break;
      case FsckKind::kCorruptManifest:
        s = txn.deleteManifest(p.repository, p.name);
        p.repair = "manifest and its tags dropped";
        break;
      case FsckKind::kDanglingTag:
        s = txn.deleteTag(p.repository, p.name);
        p.repair = "tag dropped";
        break;
      case FsckKind::kUploadWithoutFile:
        s = txn.deleteUpload(p.name);
        p.repair = "upload record dropped";
        break;
      default:
        return Status::ok();  // files only: repairFiles
    }
    // Gone already (a manifest's delete took its tags): the repair is done all the same.
    return isNotFound(s) ? Status::ok() : s;
  }

  Status fixSize(WriteTxn& txn, FsckProblem& p) {
    Result<BlobRecord> record = txn.blob(p.name);
    if (!record) {
      return isNotFound(record.status()) ? Status::ok() : record.status();
    }
    BlobRecord fixed = *record;
    fixed.size = fileSize(p.path);
    p.repair = "record size set to " + std::to_string(fixed.size);
    return txn.putBlob(p.name, fixed);
  }

  // Files, after the index: unlinked under the writer lock once no record claims them (the
  // transaction is only for the lock and is aborted).
  Status repairFiles() {
    Result<WriteTxn> txn = index_.write();
    if (!txn) {
      return txn.status();
    }
    for (FsckProblem& p : report_.problems) {
      if (Status s = repairFile(*txn, p); !s) {
        return s;
      }
      if (!p.repair.empty()) ++report_.repaired;
    }
    return Status::ok();
  }

  Status repairFile(const WriteTxn& txn, FsckProblem& p) {
    bool remove = false;
    switch (p.kind) {
      case FsckKind::kCorruptBlob:
      case FsckKind::kBadRecord:
        remove = isNotFound(txn.blob(p.name).status());
        break;
      case FsckKind::kUnindexedBlob:
      case FsckKind::kOrphanUpload:
        remove = stillHolds(txn, p);
        break;
      case FsckKind::kStrayFile:
      case FsckKind::kTempFile:
        remove = true;
        break;
      default:
        return Status::ok();
    }
    if (!remove || p.path.empty()) {
      return Status::ok();
    }
    if (Status s = removeFile(p.path); !s) {
      return s;
    }
    p.repair += p.repair.empty() ? "file removed" : ", file removed";
    return Status::ok();
  }

  const Index& index_;
  const BlobStore& store_;
  const FsckOptions& options_;
  FsckReport& report_;
  std::map<std::string, uint64_t, std::less<>> records_;  // decodable blob records: size
  std::unordered_set<std::string> on_disk_;               // digests with a file
};

}  // namespace

std::string_view fsckKindName(FsckKind kind) {
  switch (kind) {
    case FsckKind::kCorruptBlob:
      return "corrupt-blob";
    case FsckKind::kBadRecord:
      return "bad-record";
    case FsckKind::kMissingFile:
      return "missing-file";
    case FsckKind::kSizeMismatch:
      return "size-mismatch";
    case FsckKind::kUnindexedBlob:
      return "unindexed-blob";
    case FsckKind::kStrayFile:
      return "stray-file";
    case FsckKind::kDanglingLink:
      return "dangling-link";
    case FsckKind::kCorruptManifest:
      return "corrupt-manifest";
    case FsckKind::kDanglingTag:
      return "dangling-tag";
    case FsckKind::kTempFile:
      return "temp-file";
    case FsckKind::kOrphanUpload:
      return "orphan-upload";
    case FsckKind::kUploadWithoutFile:
      return "upload-without-file";
  }
  return "unknown";
}

std::string describe(const FsckProblem& p) {
  std::string line(fsckKindName(p.kind));
  if (!p.repository.empty()) {
    line += " repository=" + p.repository;
  }
  if (!p.name.empty()) {
    line += " " + p.name;
  }
  if (!p.path.empty()) {
    line += " path=" + p.path.string();
  }
  if (!p.detail.empty()) {
    line += " " + p.detail;
  }
  return line;
}

Result<FsckReport> checkStore(const Index& index, const BlobStore& store,
                              const FsckOptions& options) {
  FsckReport report;
  Checker checker(index, store, options, report);
  if (Status s = checker.run(); !s) {
    return s;
  }
  return report;
}

}  // namespace regcache::cache
