// Blob uploads: temp files appended as bodies stream in, committed by rename.
#include "proxy/uploads.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <random>
#include <vector>

namespace regcache::proxy {

namespace {

Status errnoStatus(const char* what, const std::string& path) {
  return ioError(std::string(what) + " " + path + ": " + std::strerror(errno));
}

int64_t nowSeconds() { return static_cast<int64_t>(std::time(nullptr)); }

}  // namespace

std::string newUuid() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  uint64_t hi = rng();
  uint64_t lo = rng();
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 10
  char buf[37];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xffff), static_cast<unsigned>(hi & 0xffff),
                static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffULL));
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Upload

Upload::Upload(std::string uuid, std::string repository, std::string path, int fd, uint64_t size,
               bool hash_known)
    : uuid_(std::move(uuid)),
      repository_(std::move(repository)),
      path_(std::move(path)),
      fd_(fd),
      size_(size) {
  if (hash_known) hasher_.emplace(cache::DigestAlgorithm::kSha256);
}

Upload::~Upload() {
  if (fd_ >= 0) ::close(fd_);
  if (uuid_.empty() && !committed_) ::unlink(path_.c_str());
}

Status Upload::append(std::string_view data) {
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::pwrite(fd_, p, left, static_cast<off_t>(size_ + (p - data.data())));
    if (n < 0) {
      if (errno == EINTR) continue;
      // Keep the file and the size in step: what was written stays, the rest is refused.
      size_ += static_cast<uint64_t>(p - data.data());
      hasher_.reset();
      return ioError(std::string("writing upload ") + uuid_ + ": " + std::strerror(errno));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (hasher_) hasher_->update(data);
  size_ += data.size();
  return Status::ok();
}

std::optional<cache::Digest> Upload::runningDigest(cache::DigestAlgorithm algorithm) {
  if (!hasher_ || hasher_->algorithm() != algorithm) return std::nullopt;
  cache::Digest digest = hasher_->finish();
  hasher_.reset();
  return digest;
}

void Upload::truncate(uint64_t size) {
  if (size >= size_) return;
  if (::ftruncate(fd_, static_cast<off_t>(size)) == 0) size_ = size;
  hasher_.reset();
}

// ---------------------------------------------------------------------------------------------
// UploadTable

UploadTable::UploadTable(const cache::Index& index, const cache::BlobStore& store)
    : index_(index), store_(store) {}

Result<std::shared_ptr<Upload>> UploadTable::create(std::string_view repository) {
  std::string uuid = newUuid();
  std::string path = store_.uploadPath(uuid);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return errnoStatus("creating upload", path);
  auto upload = std::make_shared<Upload>(uuid, std::string(repository), path, fd, 0, true);

  auto txn = index_.write();
  Status status =
      txn ? txn->putUpload(uuid, {std::string(repository), nowSeconds()}) : txn.status();
  if (status) status = txn->commit();
  if (!status) {
    ::unlink(path.c_str());
    return status;
  }

  std::lock_guard lock(mu_);
  upload->busy_ = true;
  upload->last_active_ = nowSeconds();
  open_[uuid] = upload;
  return upload;
}

Result<std::shared_ptr<Upload>> UploadTable::createEphemeral(std::string_view repository) {
  std::string path = store_.tempPath();
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return errnoStatus("creating upload", path);
  auto upload = std::make_shared<Upload>("", std::string(repository), path, fd, 0, true);
  upload->busy_ = true;
  return upload;
}

Result<std::shared_ptr<Upload>> UploadTable::acquire(std::string_view uuid,
                                                     std::string_view repository) {
  std::string key(uuid);
  {
    std::lock_guard lock(mu_);
    auto it = open_.find(key);
    if (it != open_.end()) {
      const auto& upload = it->second;
      if (upload->repository_ != repository) return notFound("upload unknown");
      if (upload->busy_) return conflict("upload is in use by another request");
      upload->busy_ = true;
      upload->last_active_ = nowSeconds();
      return upload;
    }
  }

  // Not open in this process: an upload from before a restart, or an unknown id.
  auto txn = index_.read();
  if (!txn) return txn.status();
  auto record = txn->upload(key);
  if (!record || record->repository != repository) return notFound("upload unknown");
  std::string path = store_.uploadPath(key);
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return notFound("upload unknown");
  struct stat st {};
  ::fstat(fd, &st);
  auto upload = std::make_shared<Upload>(key, std::string(repository), path, fd,
                                         static_cast<uint64_t>(st.st_size), st.st_size == 0);

  std::lock_guard lock(mu_);
  auto [it, inserted] = open_.emplace(key, upload);
  if (!inserted) return conflict("upload is in use by another request");
  upload->busy_ = true;
  upload->last_active_ = nowSeconds();
  return upload;
}

void UploadTable::release(const std::shared_ptr<Upload>& upload) {
  std::lock_guard lock(mu_);
  upload->busy_ = false;
  upload->last_active_ = nowSeconds();
}

Result<uint64_t> UploadTable::sizeOf(std::string_view uuid, std::string_view repository) {
  {
    std::lock_guard lock(mu_);
    auto it = open_.find(std::string(uuid));
    if (it != open_.end()) {
      if (it->second->repository_ != repository) return notFound("upload unknown");
      return it->second->size_.load();
    }
  }
  auto txn = index_.read();
  if (!txn) return txn.status();
  auto record = txn->upload(uuid);
  if (!record || record->repository != repository) return notFound("upload unknown");
  struct stat st {};
  if (::stat(store_.uploadPath(uuid).c_str(), &st) != 0) return notFound("upload unknown");
  return static_cast<uint64_t>(st.st_size);
}

void UploadTable::forget(const std::string& uuid) {
  if (uuid.empty()) return;
  std::lock_guard lock(mu_);
  open_.erase(uuid);
}

Result<cache::Digest> UploadTable::hashFile(const Upload& upload,
                                            cache::DigestAlgorithm algorithm) const {
  cache::Hasher hasher(algorithm);
  std::vector<char> buf(1 << 20);
  uint64_t offset = 0;
  while (offset < upload.size_) {
    ssize_t n = ::pread(upload.fd_, buf.data(), buf.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ioError("reading upload " + upload.uuid_ + ": " + std::strerror(errno));
    hasher.update(buf.data(), static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return hasher.finish();
}

Status UploadTable::commit(const std::shared_ptr<Upload>& upload, const cache::Digest& digest) {
  // The bytes are made durable first, outside the writer lock; then, under it, the file is
  // put in place (or dropped for the copy already stored) and indexed. A crash before the
  // index commit leaves a blob file nobody references (gc's to take), never an entry without
  // its file, and gc cannot take the stored copy between our look at it and our record.
  Status status = store_.prepare(upload->path_);
  if (!status) return status;

  auto txn = index_.write();
  if (!txn) return txn.status();
  status = store_.place(upload->path_, digest);
  if (!status) return status;
  upload->committed_ = true;
  cache::BlobRecord record{upload->size_, nowSeconds(), cache::kBlobPushed};
  status = txn->putBlob(digest.str(), record);
  if (status) status = txn->link(upload->repository_, digest.str());
  if (status && !upload->uuid_.empty()) status = txn->deleteUpload(upload->uuid_);
  if (status) status = txn->commit();
  if (!status) return status;

  forget(upload->uuid_);
  return Status::ok();
}

Status UploadTable::cancel(const std::shared_ptr<Upload>& upload) {
  if (upload->uuid_.empty()) return Status::ok();
  auto txn = index_.write();
  if (!txn) return txn.status();
  Status status = txn->deleteUpload(upload->uuid_);
  if (status || status.code() == Code::kNotFound) status = txn->commit();
  ::unlink(store_.uploadPath(upload->uuid_).c_str());
  forget(upload->uuid_);
  return status;
}

size_t UploadTable::expire(int64_t now, int64_t max_idle_seconds) {
  auto read = index_.read();
  if (!read) return 0;
  std::vector<std::string> stale;
  for (auto& [uuid, record] : read->uploads()) {
    {
      std::lock_guard lock(mu_);
      auto it = open_.find(uuid);
      if (it != open_.end() &&
          (it->second->busy_ || now - it->second->last_active_ < max_idle_seconds)) {
        continue;
      }
    }
    struct stat st {};
    std::string path = store_.uploadPath(uuid);
    bool exists = ::stat(path.c_str(), &st) == 0;
    if (exists && now - st.st_mtime < max_idle_seconds) continue;
    stale.push_back(uuid);
  }
  if (stale.empty()) return 0;

  auto txn = index_.write();
  if (!txn) return 0;
  for (const auto& uuid : stale) {
    (void)txn->deleteUpload(uuid);
  }
  if (!txn->commit()) return 0;
  for (const auto& uuid : stale) {
    ::unlink(store_.uploadPath(uuid).c_str());
    forget(uuid);
    spdlog::debug("upload.expired uuid={}", uuid);
  }
  return stale.size();
}

}  // namespace regcache::proxy
