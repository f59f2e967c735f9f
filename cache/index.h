// The LMDB index: blob records, repository links, manifests, tags, referrers and uploads.
//
// One LMDB environment under `<data_dir>/index`, opened once per process and shared by every
// thread. Readers never block writers. Write transactions fsync on commit, so a WriteTxn must
// never be used on an event loop thread: run it on the blocking pool.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/digest.h"
#include "cache/status.h"

struct MDB_env;
struct MDB_txn;

namespace regcache::cache {

// Where a blob came from. Pushed content is never evicted; cached content may be.
enum BlobFlags : uint32_t {
  kBlobPushed = 1u << 0,
  kBlobCached = 1u << 1,
};

struct BlobRecord {
  uint64_t size = 0;
  int64_t created = 0;  // unix seconds
  uint32_t flags = 0;
};

// A manifest as stored. For reads, the views point into the LMDB map and live as long as the
// ReadTxn that returned them.
struct ManifestView {
  std::string_view media_type;
  std::string_view bytes;
  std::string_view subject;        // digest string of the `subject` field, or empty
  std::string_view artifact_type;  // artifactType, or config.mediaType for the referrers API
  int64_t created = 0;
};

struct ManifestRecord {
  std::string media_type;
  std::string bytes;
  std::string subject;
  std::string artifact_type;
  int64_t created = 0;
};

struct TagView {
  std::string_view digest;
  int64_t updated = 0;  // when the tag was last set (unix seconds)
  int64_t checked = 0;  // when a cached tag was last confirmed upstream (unix seconds)
};

// One entry of the referrers list of a subject: enough to build its descriptor without
// reading the referring manifest again.
struct ReferrerRecord {
  std::string digest;
  std::string media_type;
  std::string artifact_type;
  uint64_t size = 0;
  std::string annotations_json;  // the manifest's "annotations" object as JSON, or empty
};

struct UploadRecord {
  std::string repository;
  int64_t started = 0;  // unix seconds
};

class Index;

// Visitors for the whole-index walks that gc, fsck and du make (forEach* below). Each is called
// in key order and returns true to go on, false to stop early. Views passed in live as long as
// the transaction that made the call (for a WriteTxn: until its next write, so do not write from
// inside a visitor). A record that does not decode is passed as a kCorrupt Result rather than
// skipped, so a checker can report it.
using BlobVisitor = std::function<bool(std::string_view digest, const Result<BlobRecord>& record)>;
using LinkVisitor = std::function<bool(std::string_view repository, std::string_view digest)>;
using ManifestVisitor = std::function<bool(std::string_view repository, std::string_view digest,
                                           const Result<ManifestView>& manifest)>;
using TagVisitor = std::function<bool(std::string_view repository, std::string_view tag,
                                      const Result<TagView>& tag_record)>;

// A read-only snapshot. Cheap to open; must be used and destroyed on the thread that opened it.
// Views returned by its methods live until the ReadTxn is destroyed.
class ReadTxn {
 public:
  ~ReadTxn();
  ReadTxn(ReadTxn&&) noexcept;
  ReadTxn& operator=(ReadTxn&&) = delete;
  ReadTxn(const ReadTxn&) = delete;

  // kNotFound when absent.
  Result<BlobRecord> blob(std::string_view digest) const;
  bool isLinked(std::string_view repository, std::string_view digest) const;
  Result<ManifestView> manifest(std::string_view repository, std::string_view digest) const;
  Result<TagView> tag(std::string_view repository, std::string_view tag) const;

  // Tags of a repository in lexical order, strictly after `last` (empty: from the start), at
  // most `limit` of them.
  std::vector<std::string> tags(std::string_view repository, std::string_view last,
                                size_t limit) const;
  // True when the repository holds at least one manifest (what makes it appear in
  // repositories()). One seek.
  bool hasRepository(std::string_view repository) const;
  // Repositories that hold at least one manifest, lexical order, strictly after `last`.
  std::vector<std::string> repositories(std::string_view last, size_t limit) const;
  // Manifests in `repository` whose subject is `subject`.
  std::vector<ReferrerRecord> referrers(std::string_view repository,
                                        std::string_view subject) const;
  // When the cached manifest was last served (unix seconds), as recorded by eviction's
  // recency batches. kNotFound when never recorded.
  Result<int64_t> access(std::string_view repository, std::string_view digest) const;

  Result<UploadRecord> upload(std::string_view uuid) const;
  // Every upload in progress, as (uuid, record).
  std::vector<std::pair<std::string, UploadRecord>> uploads() const;

  // Whole-index walks. Unlike the listings above, a walk cut short by a storage error says so
  // (kIo): gc must never mistake half a list of links for all of them.
  Status forEachBlob(const BlobVisitor& visit) const;
  Status forEachLink(const LinkVisitor& visit) const;
  Status forEachManifest(const ManifestVisitor& visit) const;
  Status forEachTag(const TagVisitor& visit) const;

 private:
  friend class Index;
  ReadTxn(const Index* index, MDB_txn* txn) : index_(index), txn_(txn) {}
  const Index* index_;
  MDB_txn* txn_;
};

// A write transaction. Blocks on fsync at commit: never on an event loop thread. Only one is
// open at a time in the whole process (LMDB serialises writers; other processes too).
// Destroying it without commit() aborts it.
//
// Writes return kInvalidArgument for an empty key part, one containing '\0', or a key past
// LMDB's 511-byte limit, and kIo for storage errors (a full map included). After a kIo the
// transaction is poisoned: drop it rather than commit.
class WriteTxn {
 public:
  ~WriteTxn();
  WriteTxn(WriteTxn&&) noexcept;
  WriteTxn& operator=(WriteTxn&&) = delete;
  WriteTxn(const WriteTxn&) = delete;

  // Reads see this transaction's own writes. A view returned here lives until the next write
  // in this transaction or its end, whichever comes first.
  Result<BlobRecord> blob(std::string_view digest) const;
  bool isLinked(std::string_view repository, std::string_view digest) const;
  Result<TagView> tag(std::string_view repository, std::string_view tag) const;
  Result<ManifestView> manifest(std::string_view repository, std::string_view digest) const;

  // The same walks as ReadTxn's, seeing this transaction's own writes.
  Status forEachLink(const LinkVisitor& visit) const;
  Status forEachManifest(const ManifestVisitor& visit) const;

  // Inserts or replaces the blob record. Flags are OR-ed into an existing record's.
  Status putBlob(std::string_view digest, const BlobRecord& record);
  // kNotFound when absent.
  Status deleteBlob(std::string_view digest);
  // Deletes the blob record, if any, and its link from every repository: what makes a blob
  // unknown everywhere, so the next pull refetches it or a client pushes it again. Returns how
  // many links went. Walks every link (there is no reverse index from digest to repository):
  // meant for fsck's rare repairs, not for request paths.
  Result<size_t> deleteBlobAndLinks(std::string_view digest);
  Status link(std::string_view repository, std::string_view digest);
  // kNotFound when the link did not exist.
  Status unlink(std::string_view repository, std::string_view digest);

  // Stores the manifest and, when record.subject is set and `referrer` is given, its entry in
  // the referrers list of record.subject (keyed by `digest`; referrer->digest is not used).
  Status putManifest(std::string_view repository, std::string_view digest,
                     const ManifestRecord& record, const ReferrerRecord* referrer);
  // Removes the manifest, every tag of the repository that points at it, and its referrer
  // entry. kNotFound when absent.
  Status deleteManifest(std::string_view repository, std::string_view digest);
  Status putTag(std::string_view repository, std::string_view tag, std::string_view digest,
                int64_t updated, int64_t checked);
  // kNotFound when absent.
  Status deleteTag(std::string_view repository, std::string_view tag);

  // kNotFound when absent.
  Result<UploadRecord> upload(std::string_view uuid) const;
  // Last-use times of cached manifests, for eviction (cache/eviction.h).
  Status putAccess(std::string_view repository, std::string_view digest, int64_t when);
  // kNotFound when absent.
  Status deleteAccess(std::string_view repository, std::string_view digest);

  Status putUpload(std::string_view uuid, const UploadRecord& record);
  // kNotFound when absent.
  Status deleteUpload(std::string_view uuid);

  // Commits (fsync). Afterwards, and after a failed commit, the WriteTxn is finished: every
  // further call returns kInternal.
  Status commit();

 private:
  friend class Index;
  WriteTxn(const Index* index, MDB_txn* txn) : index_(index), txn_(txn) {}
  const Index* index_;
  MDB_txn* txn_;
};

class Index {
 public:
  struct Options {
    uint64_t map_size = uint64_t{1} << 36;  // 64 GiB of address space; disk use is what is held
  };

  // Opens or creates the environment in `dir` (created if missing). Thread-safe after return.
  static Result<std::unique_ptr<Index>> open(const std::filesystem::path& dir, Options options);
  static Result<std::unique_ptr<Index>> open(const std::filesystem::path& dir) {
    return open(dir, Options{});
  }
  ~Index();

  // A read snapshot. Transactions are reused: one that ends is reset and kept (with its
  // reader slot) for the next read() on any thread, which renews it instead of allocating a
  // transaction and taking LMDB's reader-table lock. Thread-safe.
  Result<ReadTxn> read() const;
  Result<WriteTxn> write() const;

  // Named databases; public so the transaction classes can reach them.
  struct Dbs {
    unsigned blobs, links, manifests, tags, referrers, uploads, access;
  };
  const Dbs& dbs() const { return dbs_; }

 private:
  friend class ReadTxn;
  Index() = default;
  // Takes a finished read transaction back for reuse (or aborts it when enough are kept).
  void recycle(MDB_txn* txn) const;

  MDB_env* env_ = nullptr;
  Dbs dbs_{};
  mutable std::mutex spare_mu_;
  mutable std::vector<MDB_txn*> spare_;  // reset read transactions; guarded by spare_mu_
};

}  // namespace regcache::cache
