// Tests for fsck: each kind of damage is found, a clean store is clean, and --repair leaves a
// store the next check finds clean.
#include "cache/fsck.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <ctime>
#include <fstream>

#include "tests/unit/cache/store_fixture.h"

namespace regcache::cache {
namespace {

using testing::StoreFixture;

FsckReport check(const StoreFixture& s, bool repair = false) {
  FsckOptions options{repair, /*grace_seconds=*/0, static_cast<int64_t>(std::time(nullptr))};
  auto report = checkStore(s.index(), s.store(), options);
  REQUIRE(report.isOk());
  return std::move(report.value());
}

std::vector<std::string> kinds(const FsckReport& report) {
  std::vector<std::string> out;
  for (const FsckProblem& p : report.problems) out.emplace_back(fsckKindName(p.kind));
  std::sort(out.begin(), out.end());
  return out;
}

void flipByte(const std::filesystem::path& path) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  char c = 0;
  f.seekg(0);
  f.get(c);
  f.seekp(0);
  f.put(static_cast<char>(c ^ 0x01));
}

TEST_CASE("fsck: a consistent store is clean", "[cache][fsck]") {
  StoreFixture s;
  std::string blob = s.putBlob("layer", "local/a");
  s.putManifest("local/a", {blob}, "v1");

  FsckReport report = check(s);

  CHECK(report.problems.empty());
  CHECK(report.blobs_checked == 1);
  CHECK(report.bytes_checked == 5);
}

TEST_CASE("fsck: a flipped byte is a corrupt blob, and repair makes it unknown everywhere",
          "[cache][fsck]") {
  StoreFixture s;
  std::string blob = s.putBlob("layer bytes", "local/a");
  {
    WriteTxn txn = s.write();
    REQUIRE(txn.link("local/b", blob).isOk());
    REQUIRE(txn.commit().isOk());
  }
  flipByte(s.blobPath(blob));

  FsckReport found = check(s);
  REQUIRE(kinds(found) == std::vector<std::string>{"corrupt-blob"});
  CHECK(describe(found.problems[0]).starts_with("corrupt-blob " + blob + " path="));

  FsckReport repaired = check(s, true);
  CHECK(repaired.repaired == 1);
  CHECK_FALSE(s.hasRecord(blob));
  CHECK_FALSE(s.hasFile(blob));
  CHECK_FALSE(s.read().isLinked("local/a", blob));
  CHECK_FALSE(s.read().isLinked("local/b", blob));
  CHECK(check(s).problems.empty());
}

TEST_CASE("fsck: finds each kind of damage and repair leaves a clean store", "[cache][fsck]") {
  StoreFixture s;
  std::string missing = s.putBlob("file gone", "local/a");
  std::filesystem::remove(s.blobPath(missing));
  std::string unindexed = s.putBlob("no record", "", kBlobPushed, false);
  StoreFixture::writeFile(s.root() / "blobs" / "sha256" / "zz" / "not-a-digest", "x");
  StoreFixture::writeFile(s.root() / "tmp" / "999999999-1-crashed", "partial");
  StoreFixture::writeFile(s.store().uploadPath("orphan"), "partial");
  std::string manifest = s.putManifest("local/a", {}, "kept");
  {
    WriteTxn txn = s.write();
    REQUIRE(txn.link("local/a", digestOf("never stored").str()).isOk());
    REQUIRE(txn.putTag("local/a", "dangling", digestOf("no manifest").str(), 1, 1).isOk());
    REQUIRE(txn.putUpload("lost", UploadRecord{"local/a", 1}).isOk());
    ManifestRecord bad{"application/vnd.oci.image.manifest.v1+json", "tampered", "", "", 1};
    REQUIRE(txn.putManifest("local/a", digestOf("original").str(), bad, nullptr).isOk());
    REQUIRE(txn.commit().isOk());
  }

  FsckReport found = check(s);
  CHECK(kinds(found) == std::vector<std::string>{"corrupt-manifest", "dangling-link",
                                                 "dangling-tag", "missing-file", "orphan-upload",
                                                 "stray-file", "temp-file", "unindexed-blob",
                                                 "upload-without-file"});

  FsckReport repaired = check(s, true);
  CHECK(repaired.repaired == repaired.problems.size());
  CHECK(check(s).problems.empty());
  CHECK(s.read().tag("local/a", "kept").isOk());
  CHECK(s.read().manifest("local/a", manifest).isOk());
  CHECK_FALSE(s.hasFile(unindexed));
}

TEST_CASE("fsck: a blob file younger than the grace period is not a problem", "[cache][fsck]") {
  StoreFixture s;
  s.putBlob("commit in flight", "", kBlobPushed, false);
  FsckOptions options{false, 3600, static_cast<int64_t>(std::time(nullptr))};

  auto report = checkStore(s.index(), s.store(), options);

  REQUIRE(report.isOk());
  CHECK(report->problems.empty());
}

TEST_CASE("fsck: a record whose size differs from its file is repaired in place", "[cache][fsck]") {
  StoreFixture s;
  std::string blob = s.putBlob("twelve bytes", "local/a");
  {
    WriteTxn txn = s.write();
    REQUIRE(txn.putBlob(blob, BlobRecord{99, 1, kBlobPushed}).isOk());
    REQUIRE(txn.commit().isOk());
  }

  CHECK(kinds(check(s)) == std::vector<std::string>{"size-mismatch"});
  check(s, true);
  CHECK(s.read().blob(blob)->size == 12);
  CHECK(check(s).problems.empty());
}

}  // namespace
}  // namespace regcache::cache
