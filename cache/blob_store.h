// The content-addressed blob store on disk: `<data_dir>/blobs/<alg>/<ab>/<hex>`, plus the
// directories for uploads and fills in progress.
//
// Files appear under blobs/ only by rename() of a fully written, fsynced temp file, so a
// blob file that exists is always complete. The index (cache/index.h) says which blobs a
// repository may see; the store only holds bytes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "cache/digest.h"
#include "cache/status.h"

namespace regcache::cache {

// An open file descriptor and its size; closes on destruction unless released.
class OpenFile {
 public:
  OpenFile() = default;
  OpenFile(int fd, uint64_t size) : fd_(fd), size_(size) {}
  ~OpenFile();
  OpenFile(OpenFile&& o) noexcept : fd_(o.fd_), size_(o.size_) { o.fd_ = -1; }
  OpenFile& operator=(OpenFile&& o) noexcept;
  OpenFile(const OpenFile&) = delete;

  int fd() const { return fd_; }
  uint64_t size() const { return size_; }
  // Gives up ownership of the descriptor.
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
  uint64_t size_ = 0;
};

class BlobStore {
 public:
  // Opens (creating when missing) `data_dir`/blobs, /uploads and /tmp.
  static Result<std::unique_ptr<BlobStore>> open(const std::filesystem::path& data_dir);

  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path blobPath(const Digest& digest) const;
  // Where the upload with this id keeps its bytes. Not sanitised: pass only ids this process
  // issued (or found in the index), never a raw path segment from a request.
  std::filesystem::path uploadPath(std::string_view uuid) const;
  // A fresh, unique temp path under tmp/ (for fills and whole-buffer writes).
  std::filesystem::path tempPath() const;

  // Opens a stored blob read-only. kNotFound when absent. Non-blocking enough for the loop
  // (an open and an fstat).
  Result<OpenFile> openBlob(const Digest& digest) const;
  bool hasBlob(const Digest& digest) const;

  // Makes `temp` the blob `digest`: fsync the file, rename it into place (or just delete it
  // when the blob is already stored), fsync the directory. The caller has verified the digest.
  // Blocking: never on the event loop.
  Status commit(const std::filesystem::path& temp, const Digest& digest) const;

  // commit() in two steps, for callers that index the blob in the same breath. prepare()
  // fsyncs the temp file (slow: do it first); place() then renames it into place or, when the
  // blob is already stored, deletes it. Called inside the index write transaction that records
  // the blob, place() cannot race gc, which only unlinks blob files while it holds the writer
  // lock and sees no record: either the file is there and stays, or it is put back. Blocking.
  Status prepare(const std::filesystem::path& temp) const;
  Status place(const std::filesystem::path& temp, const Digest& digest) const;

  // Writes `data` as the blob `digest` (temp file, fsync, rename). Blocking.
  Status writeBlob(const Digest& digest, std::string_view data) const;

  // Deletes the temp files under tmp/ that processes no longer running left behind (each
  // name starts with its writer's pid). Blocking. Returns how many went.
  size_t removeOrphanTemps() const;

  // Deletes a blob file. kNotFound when absent. Blocking.
  Status removeBlob(const Digest& digest) const;

 private:
  explicit BlobStore(std::filesystem::path root)
      : root_(std::move(root)), blobs_prefix_(root_.string() + "/blobs/") {}
  // blobPath as a plain string: the serving path opens a blob per request, and a
  // std::filesystem::path splits itself into components on every construction.
  std::string blobPathString(const Digest& digest) const;

  std::filesystem::path root_;
  std::string blobs_prefix_;  // "<root>/blobs/"
};

}  // namespace regcache::cache
