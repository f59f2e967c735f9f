// Tests for the on-disk blob store: layout, commit, and what is visible before and after.
#include "cache/blob_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "tests/unit/cache/temp_dir.h"

namespace regcache::cache {
namespace {

using testing::TempDir;

std::unique_ptr<BlobStore> openStore(const std::filesystem::path& dir) {
  Result<std::unique_ptr<BlobStore>> store = BlobStore::open(dir);
  REQUIRE(store.isOk());
  return std::move(store.value());
}

void writeFile(const std::filesystem::path& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
  REQUIRE(out.good());
}

std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

size_t countFiles(const std::filesystem::path& dir) {
  size_t n = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    n += entry.is_regular_file() ? 1 : 0;
  }
  return n;
}

std::string readAll(int fd, uint64_t size) {
  std::string data(size, '\0');
  REQUIRE(::pread(fd, data.data(), size, 0) == static_cast<ssize_t>(size));
  return data;
}

TEST_CASE("BlobStore: open creates the store's directories", "[cache][blob_store]") {
  TempDir dir;
  auto store = openStore(dir.path() / "data");
  CHECK(store->root() == dir.path() / "data");
  for (const char* sub : {"blobs", "uploads", "tmp"}) {
    CHECK(std::filesystem::is_directory(dir.path() / "data" / sub));
  }
}

TEST_CASE("BlobStore: blobs fan out by the first two hex digits", "[cache][blob_store]") {
  TempDir dir;
  auto store = openStore(dir.path());
  Digest d = digestOf("abc");
  CHECK(store->blobPath(d) == dir.path() / "blobs" / "sha256" / "ba" / d.hex());
  CHECK(store->uploadPath("u-1") == dir.path() / "uploads" / "u-1");
  CHECK(store->tempPath().parent_path() == dir.path() / "tmp");
}

TEST_CASE("BlobStore: temp paths are unique", "[cache][blob_store]") {
  TempDir dir;
  auto store = openStore(dir.path());
  std::set<std::filesystem::path> seen;
  for (int i = 0; i < 1000; ++i) {
    CHECK(seen.insert(store->tempPath()).second);
  }
}

TEST_CASE("BlobStore: commit makes the blob visible with its bytes", "[cache][blob_store]") {
  TempDir dir;
  auto store = openStore(dir.path());
  const std::string data("layer bytes\0with a nul", 22);
  Digest d = digestOf(data);
  std::filesystem::path temp = store->tempPath();
  writeFile(temp, data);

  CHECK_FALSE(store->hasBlob(d));
  CHECK(countFiles(dir.path() / "blobs") == 0);  // nothing under blobs/ before commit
  REQUIRE(store->commit(temp, d).isOk());

  CHECK(store->hasBlob(d));
  CHECK_FALSE(std::filesystem::exists(temp));
  Result<OpenFile> file = store->openBlob(d);
  REQUIRE(file.isOk());
  CHECK(file->size() == data.size());
  CHECK(readAll(file->fd(), file->size()) == data);
}

TEST_CASE("BlobStore: committing a blob already stored keeps one copy and drops the temp",
          "[cache][blob_store]") {
  TempDir dir;
  auto store = openStore(dir.path());
  Digest d = digestOf("same");
  REQUIRE(store->writeBlob(d, "same").isOk());

  std::filesystem::path temp = store->tempPath();
  writeFile(temp, "same");
  REQUIRE(store->commit(temp, d).isOk());

  CHECK_FALSE(std::filesystem::exists(temp));
  CHECK(countFiles(dir.path() / "blobs") == 1);
  CHECK(countFiles(dir.path() / "tmp") == 0);
  CHECK(readFile(store->blobPath(d)) == "same");
}

TEST_CASE("BlobStore: writeBlob stores the bytes and leaves no temp file", "[cache][blob_store]") {
  TempDir dir;
  auto store = openStore(dir.path());
  Digest d = digestOf("xyz", DigestAlgorithm::kSha512);
  REQUIRE(store->writeBlob(d, "xyz").isOk());
  CHECK(readFile(store->blobPath(d)) == "xyz");
  CHECK(store->blobPath(d).parent_path().parent_path().filename() == "sha512");
  CHECK(countFiles(dir.path() / "tmp") == 0);
}

TEST_CASE("BlobStore: a missing blob is kNotFound", "[cache][blob_store]") {
  TempDir dir;
  auto store = openStore(dir.path());
  Digest d = digestOf("absent");
  CHECK(store->openBlob(d).status().code() == Code::kNotFound);
  CHECK(store->removeBlob(d).code() == Code::kNotFound);
  CHECK_FALSE(store->hasBlob(d));
}

TEST_CASE("BlobStore: commit of a missing temp file fails and stores nothing",
          "[cache][blob_store]") {
  TempDir dir;
  auto store = openStore(dir.path());
  Digest d = digestOf("never written");
  CHECK_FALSE(store->commit(store->tempPath(), d).isOk());
  CHECK_FALSE(store->hasBlob(d));
  CHECK(countFiles(dir.path() / "blobs") == 0);
}

TEST_CASE("BlobStore: removeBlob deletes the file", "[cache][blob_store]") {
  TempDir dir;
  auto store = openStore(dir.path());
  Digest d = digestOf("gone");
  REQUIRE(store->writeBlob(d, "gone").isOk());
  REQUIRE(store->removeBlob(d).isOk());
  CHECK_FALSE(store->hasBlob(d));
  CHECK(store->openBlob(d).status().code() == Code::kNotFound);
}

TEST_CASE("BlobStore: an OpenFile closes its descriptor unless released", "[cache][blob_store]") {
  TempDir dir;
  auto store = openStore(dir.path());
  Digest d = digestOf("fd");
  REQUIRE(store->writeBlob(d, "fd").isOk());

  int fd = -1;
  {
    Result<OpenFile> file = store->openBlob(d);
    REQUIRE(file.isOk());
    fd = file->fd();
    OpenFile moved = std::move(*file);
    CHECK(file->fd() == -1);
    CHECK(::fcntl(fd, F_GETFD) != -1);
  }
  CHECK(::fcntl(fd, F_GETFD) == -1);

  Result<OpenFile> file = store->openBlob(d);
  REQUIRE(file.isOk());
  int kept = file->release();
  file = store->openBlob(d);
  CHECK(::fcntl(kept, F_GETFD) != -1);
  ::close(kept);
}

}  // namespace
}  // namespace regcache::cache
