// Directory walks over blobs/, tmp/ and uploads/, and the streaming re-hash of a blob file.
#include "cache/store_files.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <vector>

namespace regcache::cache {

namespace {

// lstat() of one directory entry; nullopt when it is gone or not a regular file.
std::optional<StoreFile> statFile(const std::filesystem::path& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return std::nullopt;
  }
  return StoreFile{path, static_cast<uint64_t>(st.st_size), static_cast<int64_t>(st.st_ctime)};
}

// The digest a blob path spells: blobs/<alg>/<first two hex>/<hex>.
std::optional<Digest> digestOfPath(const std::filesystem::path& path) {
  std::string hex = path.filename().string();
  std::string fan_out = path.parent_path().filename().string();
  std::string algorithm = path.parent_path().parent_path().filename().string();
  Result<Digest> digest = Digest::parse(algorithm + ":" + hex);
  if (!digest || hex.substr(0, 2) != fan_out) {
    return std::nullopt;
  }
  return *digest;
}

Status walkError(const std::filesystem::path& dir, const std::error_code& ec) {
  return ioError("store: read directory " + dir.string() + ": " + ec.message());
}

}  // namespace

Status forEachBlobFile(const BlobStore& store, const BlobFileVisitor& visit) {
  std::filesystem::path root = store.root() / "blobs";
  std::error_code ec;
  std::filesystem::recursive_directory_iterator it(root, ec);
  if (ec) {
    return ec == std::errc::no_such_file_or_directory ? Status::ok() : walkError(root, ec);
  }
  for (; it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) {
      return walkError(root, ec);
    }
    std::optional<StoreFile> file = statFile(it->path());
    if (file) {
      visit(digestOfPath(file->path), *file);
    }
  }
  return ec ? walkError(root, ec) : Status::ok();
}

std::vector<StoreFile> orphanTemps(const BlobStore& store) {
  std::vector<StoreFile> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(store.root() / "tmp", ec)) {
    int pid = std::atoi(entry.path().filename().c_str());
    // kill(pid, 0) fails with ESRCH only when no such process exists.
    bool writer_alive = pid > 0 && (::kill(pid, 0) == 0 || errno != ESRCH);
    if (writer_alive) {
      continue;
    }
    if (std::optional<StoreFile> file = statFile(entry.path())) {
      out.push_back(std::move(*file));
    }
  }
  return out;
}

std::vector<std::pair<std::string, StoreFile>> uploadFiles(const BlobStore& store) {
  std::vector<std::pair<std::string, StoreFile>> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(store.root() / "uploads", ec)) {
    if (std::optional<StoreFile> file = statFile(entry.path())) {
      out.emplace_back(entry.path().filename().string(), std::move(*file));
    }
  }
  return out;
}

Result<Digest> hashFile(const std::filesystem::path& path, DigestAlgorithm algorithm) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    std::string message = "store: open " + path.string() + ": " + std::strerror(err);
    return err == ENOENT ? notFound(std::move(message)) : ioError(std::move(message));
  }
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

  Hasher hasher(algorithm);
  std::vector<char> buf(1 << 20);
  while (true) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return ioError("store: read " + path.string() + ": " + std::strerror(err));
    }
    if (n == 0) {
      break;
    }
    hasher.update(buf.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  return hasher.finish();
}

Status removeFile(const std::filesystem::path& path) {
  if (::unlink(path.c_str()) == 0 || errno == ENOENT) {
    return Status::ok();
  }
  return ioError("store: unlink " + path.string() + ": " + std::strerror(errno));
}

uint64_t treeBytes(const std::filesystem::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  std::filesystem::recursive_directory_iterator it(dir, ec);
  for (; !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (std::optional<StoreFile> file = statFile(it->path())) {
      total += file->size;
    }
  }
  return total;
}

}  // namespace regcache::cache
