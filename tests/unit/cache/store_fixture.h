// A scratch store (index + blob files) for the gc, fsck and usage tests, with helpers that
// write blobs, links and manifests the way the server does.
#pragma once

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cache/blob_store.h"
#include "cache/digest.h"
#include "cache/index.h"
#include "tests/unit/cache/temp_dir.h"

namespace regcache::cache::testing {

// Manifests in these tests are their blob digests, one per line: ManifestBlobs without JSON.
inline Result<std::vector<std::string>> lineManifestBlobs(std::string_view,
                                                          std::string_view bytes) {
  std::vector<std::string> digests;
  std::istringstream lines{std::string(bytes)};
  for (std::string line; std::getline(lines, line);) {
    if (line == "garbage") return corrupt("not a manifest");
    if (!line.empty()) digests.push_back(line);
  }
  return digests;
}

class StoreFixture {
 public:
  StoreFixture() {
    auto index = Index::open(dir_.path() / "index");
    REQUIRE(index.isOk());
    index_ = std::move(index.value());
    auto store = BlobStore::open(dir_.path());
    REQUIRE(store.isOk());
    store_ = std::move(store.value());
  }

  const Index& index() const { return *index_; }
  const BlobStore& store() const { return *store_; }
  const std::filesystem::path& root() const { return dir_.path(); }

  // Writes the file and, unless `record` is false, its record (with `flags`) and a link from
  // `repository` (none when empty). Returns the digest string.
  std::string putBlob(std::string_view data, std::string_view repository,
                      uint32_t flags = kBlobPushed, bool record = true) {
    Digest digest = digestOf(data);
    REQUIRE(store_->writeBlob(digest, data).isOk());
    if (record) {
      WriteTxn txn = write();
      REQUIRE(txn.putBlob(digest.str(), BlobRecord{data.size(), 1, flags}).isOk());
      if (!repository.empty()) REQUIRE(txn.link(repository, digest.str()).isOk());
      REQUIRE(txn.commit().isOk());
    }
    return digest.str();
  }

  // Stores a manifest whose bytes list `blobs` (see lineManifestBlobs), tagged `tag` if given.
  std::string putManifest(std::string_view repository, const std::vector<std::string>& blobs,
                          std::string_view tag = "") {
    std::string bytes;
    for (const std::string& b : blobs) bytes += b + "\n";
    std::string digest = digestOf(bytes).str();
    WriteTxn txn = write();
    ManifestRecord record{"application/vnd.oci.image.manifest.v1+json", bytes, "", "", 1};
    REQUIRE(txn.putManifest(repository, digest, record, nullptr).isOk());
    if (!tag.empty()) REQUIRE(txn.putTag(repository, tag, digest, 1, 1).isOk());
    REQUIRE(txn.commit().isOk());
    return digest;
  }

  WriteTxn write() const {
    auto txn = index_->write();
    REQUIRE(txn.isOk());
    return std::move(txn.value());
  }
  ReadTxn read() const {
    auto txn = index_->read();
    REQUIRE(txn.isOk());
    return std::move(txn.value());
  }

  std::filesystem::path blobPath(std::string_view digest) const {
    auto parsed = Digest::parse(digest);
    REQUIRE(parsed.isOk());
    return store_->blobPath(*parsed);
  }
  bool hasRecord(std::string_view digest) const { return read().blob(digest).isOk(); }
  bool hasFile(std::string_view digest) const { return std::filesystem::exists(blobPath(digest)); }

  static void writeFile(const std::filesystem::path& path, std::string_view data) {
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << data;
  }

 private:
  TempDir dir_;
  std::unique_ptr<Index> index_;
  std::unique_ptr<BlobStore> store_;
};

}  // namespace regcache::cache::testing
