// Tar archives (POSIX ustar with pax extended headers), written and read as streams over a file
// descriptor with constant memory: what `regcache export` writes and `regcache import` reads.
//
// Only what an OCI image layout needs: regular files and directories. Names longer than
// ustar's 100 bytes go into the ustar prefix field when they split at a '/', else into a pax
// `path` record; sizes past ustar's 8 GiB limit go into a pax `size` record. The reader also
// takes GNU long names ('L') and base-256 sizes, and skips links, devices and global headers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cache/status.h"

namespace regcache::cache {

inline constexpr size_t kTarBlock = 512;

// Writes an archive to a file descriptor it does not own. Not thread-safe. Every call returns
// kIo with the reason when a write fails; the archive is then unusable.
class TarWriter {
 public:
  explicit TarWriter(int fd, int64_t mtime = 0) : fd_(fd), mtime_(mtime) {}

  // A directory entry (the name gets its trailing '/').
  Status addDirectory(std::string_view name);
  // A regular file whose bytes are `data`.
  Status addFile(std::string_view name, std::string_view data);
  // A regular file of `size` bytes read from `src_fd` at its current offset (sendfile when the
  // kernel allows, else read/write through a 1 MiB buffer). kIo when `src_fd` ends early: the
  // archive is then broken and must be discarded.
  Status addFileFrom(std::string_view name, int src_fd, uint64_t size);
  // Writes the end-of-archive marker (two zero blocks) and pads to a 10 KiB record, as tar(1)
  // does. Call once, last.
  Status finish();

  uint64_t bytesWritten() const { return written_; }

 private:
  Status writeHeader(std::string_view name, char type, uint64_t size);
  Status writePaxHeader(std::string_view name, std::string_view records);
  Status writeAll(const void* data, size_t len);
  Status pad(uint64_t size);
  Status copyBody(int src_fd, uint64_t size);

  int fd_;
  int64_t mtime_;
  uint64_t written_ = 0;
};

struct TarEntry {
  enum class Type { kFile, kDirectory, kOther };
  std::string name;  // as stored: relative, '/'-separated, trailing '/' kept on directories
  Type type = Type::kFile;
  uint64_t size = 0;  // body bytes (0 for everything but files)
};

// Reads an archive from a file descriptor it does not own, one entry at a time. Not thread-safe.
//
// Damage is reported, never guessed past: a header with a bad checksum, a body or header cut
// short by end of input, or input that ends without the end-of-archive blocks is kCorrupt
// with the offset; a failed read is kIo. After an error the reader is finished.
class TarReader {
 public:
  explicit TarReader(int fd);
  ~TarReader();
  TarReader(const TarReader&) = delete;
  TarReader& operator=(const TarReader&) = delete;

  // Moves to the next entry, skipping what is left of the current one's body. nullopt at the
  // end of the archive. Pax and GNU long-name headers are applied, never returned.
  Result<std::optional<TarEntry>> next();
  // Reads up to `len` bytes of the current entry's body into `buf`; 0 at its end.
  Result<size_t> read(char* buf, size_t len);
  // Skips the rest of the current body (lseek when the input is a regular file).
  Status skip();

  // Bytes of the archive consumed so far.
  uint64_t offset() const { return offset_; }

 private:
  Result<std::optional<TarEntry>> nextEntry();
  Status fill(size_t want);
  Status readBlock(char* block);
  Status discard(uint64_t len);
  Result<std::string> readSmallBody(uint64_t size);
  Status applyPax(std::string_view records, std::optional<std::string>& path,
                  std::optional<uint64_t>& size);

  int fd_;
  bool seekable_ = false;
  bool done_ = false;
  char* buf_;
  size_t buf_pos_ = 0;
  size_t buf_len_ = 0;
  uint64_t offset_ = 0;     // archive bytes consumed (buffered bytes not yet handed out excluded)
  uint64_t remaining_ = 0;  // body bytes of the current entry not yet read
  uint64_t padding_ = 0;    // padding after the current body
};

}  // namespace regcache::cache
