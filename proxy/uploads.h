// Blob uploads in progress: their temp files, sizes and running hashes, shared by every loop.
//
// An upload's bytes live in `<data_dir>/uploads/<uuid>` and its record (repository, start
// time) in the index, so a restart keeps it resumable. The running hash lives only in memory:
// after a restart the file is hashed again when the upload completes.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "cache/blob_store.h"
#include "cache/digest.h"
#include "cache/index.h"
#include "cache/status.h"

namespace regcache::proxy {

// One upload. Used by one request at a time (see UploadTable::acquire); not thread-safe itself.
class Upload {
 public:
  // `path` holds the bytes; an ephemeral upload (empty uuid) deletes it unless committed.
  Upload(std::string uuid, std::string repository, std::string path, int fd, uint64_t size,
         bool hash_known);
  ~Upload();
  Upload(const Upload&) = delete;
  Upload& operator=(const Upload&) = delete;

  const std::string& uuid() const { return uuid_; }
  const std::string& repository() const { return repository_; }
  uint64_t size() const { return size_; }

  // Appends bytes to the file and the running hash. Loop thread; a page-cache write.
  Status append(std::string_view data);

  // The digest of everything appended, with `algorithm`; std::nullopt when the running hash
  // is unknown (after a restart, or for another algorithm): then hash the file instead.
  std::optional<cache::Digest> runningDigest(cache::DigestAlgorithm algorithm);

  // Forgets the bytes appended since `size` (a failed request): truncates file and hash is
  // marked unknown.
  void truncate(uint64_t size);

 private:
  friend class UploadTable;
  std::string uuid_;
  std::string repository_;
  std::string path_;
  bool committed_ = false;
  int fd_ = -1;
  std::atomic<uint64_t> size_{0};        // read by sizeOf() from other threads
  std::optional<cache::Hasher> hasher_;  // nullopt: unknown, hash the file at the end
  bool busy_ = false;                    // guarded by UploadTable::mu_
  int64_t last_active_ = 0;              // guarded by UploadTable::mu_
};

// The table of uploads. Thread-safe.
class UploadTable {
 public:
  UploadTable(const cache::Index& index, const cache::BlobStore& store);

  // Creates an upload for `repository`: the file, and its index record. Blocking (an index
  // write): call on the blocking pool. The upload comes back acquired.
  Result<std::shared_ptr<Upload>> create(std::string_view repository);

  // Creates an upload that is never recorded in the index (the single-request POST): its
  // temp file goes when the upload is dropped, and a restart forgets it (the tmp/ sweep at
  // start removes what a crash left). Loop-safe. Comes back acquired.
  Result<std::shared_ptr<Upload>> createEphemeral(std::string_view repository);

  // Takes the upload for one request. kNotFound when unknown or of another repository;
  // kConflict when another request holds it. Reopens uploads left by an earlier process (an
  // index read, an open and an fstat: loop-safe).
  Result<std::shared_ptr<Upload>> acquire(std::string_view uuid, std::string_view repository);
  void release(const std::shared_ptr<Upload>& upload);

  // The number of bytes received so far, without taking the upload (a status request may
  // come while a PATCH is in flight). kNotFound when unknown or of another repository.
  Result<uint64_t> sizeOf(std::string_view uuid, std::string_view repository);

  // Hashes the upload's file from the start (when its running hash is unknown). Blocking.
  Result<cache::Digest> hashFile(const Upload& upload, cache::DigestAlgorithm algorithm) const;

  // Finishes the upload as blob `digest` in its repository: fsync + rename into the blob
  // store, index the blob and its link, drop the upload record. Blocking: pool only.
  Status commit(const std::shared_ptr<Upload>& upload, const cache::Digest& digest);

  // Deletes the upload's file and record. Blocking: pool only.
  Status cancel(const std::shared_ptr<Upload>& upload);

  // Removes uploads idle for longer than `max_idle_seconds` (by file mtime) that no request
  // holds. Blocking. Returns how many went.
  size_t expire(int64_t now, int64_t max_idle_seconds);

 private:
  void forget(const std::string& uuid);

  const cache::Index& index_;
  const cache::BlobStore& store_;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Upload>> open_;  // guarded by mu_
};

// A random RFC 4122 version 4 UUID.
std::string newUuid();

}  // namespace regcache::proxy
