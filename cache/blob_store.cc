// The blob store: fan-out directories of content-addressed files, made durable by
// write-fsync-rename-fsync.
#include "cache/blob_store.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <system_error>

namespace regcache::cache {

namespace {

Status errnoStatus(std::string_view what, const std::filesystem::path& path, int err) {
  std::string message = "blob store: " + std::string(what) + " " + path.string() + ": " +
                        std::generic_category().message(err);
  return err == ENOENT ? notFound(std::move(message)) : ioError(std::move(message));
}

// Retrying close() on EINTR is wrong on Linux (the fd is already gone), so close exactly once.
void closeFd(int fd) {
  if (fd >= 0) {
    ::close(fd);
  }
}

Status fsyncPath(const std::filesystem::path& path, int open_flags) {
  int fd = ::open(path.c_str(), open_flags | O_CLOEXEC);
  if (fd < 0) {
    return errnoStatus("open", path, errno);
  }
  int rc = ::fsync(fd);
  int err = errno;
  closeFd(fd);
  return rc == 0 ? Status::ok() : errnoStatus("fsync", path, err);
}

Status fsyncDir(const std::filesystem::path& dir) { return fsyncPath(dir, O_RDONLY | O_DIRECTORY); }

// Creates `dir` when missing. A directory entry is durable only once its parent is fsynced, so
// the parent is synced when the directory is new; an existing one costs a failed mkdir.
Status ensureDir(const std::filesystem::path& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0) {
    return errno == EEXIST ? Status::ok() : errnoStatus("mkdir", dir, errno);
  }
  return fsyncDir(dir.parent_path());
}

Status writeAll(int fd, std::string_view data, const std::filesystem::path& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errnoStatus("write", path, errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::ok();
}

// Moves `from` to `to` unless `to` exists. RENAME_NOREPLACE makes the check and the move one
// step, so two commits of the same digest racing leave the first file in place; filesystems
// without it fall back to rename(), where the loser replaces an identical file, which is harmless.
// Returns EEXIST when `to` was already there.
int renameNoReplace(const std::filesystem::path& from, const std::filesystem::path& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) {
    return 0;
  }
  if (errno != EINVAL && errno != ENOSYS) {
    return errno;
  }
  return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

std::string uniqueName() {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 random{std::random_device{}()};
  char name[64];
  std::snprintf(name, sizeof name, "%d-%llu-%016llx", static_cast<int>(::getpid()),
                static_cast<unsigned long long>(counter.fetch_add(1, std::memory_order_relaxed)),
                static_cast<unsigned long long>(random()));
  return name;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// OpenFile
// ---------------------------------------------------------------------------------------------

OpenFile::~OpenFile() { closeFd(fd_); }

OpenFile& OpenFile::operator=(OpenFile&& o) noexcept {
  if (this != &o) {
    closeFd(fd_);
    fd_ = o.release();
    size_ = o.size_;
  }
  return *this;
}

// ---------------------------------------------------------------------------------------------
// BlobStore
// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<BlobStore>> BlobStore::open(const std::filesystem::path& data_dir) {
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) {
    return ioError("blob store: create " + data_dir.string() + ": " + ec.message());
  }
  std::unique_ptr<BlobStore> store(new BlobStore(data_dir));
  for (const char* dir : {"blobs", "blobs/sha256", "blobs/sha512", "uploads", "tmp"}) {
    if (Status s = ensureDir(data_dir / dir); !s) {
      return s;
    }
  }
  return store;
}

std::string BlobStore::blobPathString(const Digest& digest) const {
  const std::string& hex = digest.hex();
  std::string_view algorithm = digest.algorithmName();
  std::string path;
  path.reserve(blobs_prefix_.size() + algorithm.size() + 4 + hex.size());
  path += blobs_prefix_;
  path += algorithm;
  path += '/';
  path.append(hex, 0, 2);
  path += '/';
  path += hex;
  return path;
}

std::filesystem::path BlobStore::blobPath(const Digest& digest) const {
  return blobPathString(digest);
}

std::filesystem::path BlobStore::uploadPath(std::string_view uuid) const {
  return root_ / "uploads" / uuid;
}

std::filesystem::path BlobStore::tempPath() const { return root_ / "tmp" / uniqueName(); }

size_t BlobStore::removeOrphanTemps() const {
  size_t removed = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(root_ / "tmp", ec)) {
    std::string name = entry.path().filename().string();
    int pid = std::atoi(name.c_str());
    // kill(pid, 0) fails with ESRCH only when no such process exists.
    bool writer_alive = pid > 0 && (::kill(pid, 0) == 0 || errno != ESRCH);
    if (writer_alive) continue;
    if (::unlink(entry.path().c_str()) == 0) ++removed;
  }
  return removed;
}

Result<OpenFile> BlobStore::openBlob(const Digest& digest) const {
  std::string path = blobPathString(digest);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return errnoStatus("open", path, errno);
  }
  OpenFile file(fd, 0);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    return errnoStatus("fstat", path, errno);
  }
  return OpenFile(file.release(), static_cast<uint64_t>(st.st_size));
}

bool BlobStore::hasBlob(const Digest& digest) const {
  return ::access(blobPathString(digest).c_str(), F_OK) == 0;
}

// The order is what makes a crash safe: the file's bytes reach the disk before its name does
// (fsync, then rename), and the name reaches the disk before the caller indexes the blob
// (fsync of the fan-out directory). A crash in between leaves at worst a stray temp file.
Status BlobStore::commit(const std::filesystem::path& temp, const Digest& digest) const {
  if (hasBlob(digest)) {
    return ::unlink(temp.c_str()) == 0 ? Status::ok() : errnoStatus("unlink", temp, errno);
  }
  if (Status s = prepare(temp); !s) {
    return s;
  }
  return place(temp, digest);
}

Status BlobStore::prepare(const std::filesystem::path& temp) const {
  return fsyncPath(temp, O_RDONLY);
}

Status BlobStore::place(const std::filesystem::path& temp, const Digest& digest) const {
  std::filesystem::path target = blobPath(digest);
  if (hasBlob(digest)) {
    return ::unlink(temp.c_str()) == 0 ? Status::ok() : errnoStatus("unlink", temp, errno);
  }
  if (Status s = ensureDir(target.parent_path()); !s) {
    return s;
  }
  int err = renameNoReplace(temp, target);
  if (err == EEXIST) {
    return ::unlink(temp.c_str()) == 0 ? Status::ok() : errnoStatus("unlink", temp, errno);
  }
  if (err != 0) {
    return errnoStatus("rename into", target, err);
  }
  return fsyncDir(target.parent_path());
}

Status BlobStore::writeBlob(const Digest& digest, std::string_view data) const {
  std::filesystem::path temp = tempPath();
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    return errnoStatus("create", temp, errno);
  }

  Status s = writeAll(fd, data, temp);
  if (::close(fd) != 0 && s) {
    s = errnoStatus("close", temp, errno);
  }
  if (s) {
    s = commit(temp, digest);
  }
  if (!s) {
    ::unlink(temp.c_str());
  }
  return s;
}

Status BlobStore::removeBlob(const Digest& digest) const {
  std::filesystem::path path = blobPath(digest);
  return ::unlink(path.c_str()) == 0 ? Status::ok() : errnoStatus("unlink", path, errno);
}

}  // namespace regcache::cache
