// Tests for gc: what is needed stays, the rest goes, record before file, and the grace period.
#include "cache/gc.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <ctime>

#include "tests/unit/cache/store_fixture.h"

namespace regcache::cache {
namespace {

using testing::lineManifestBlobs;
using testing::StoreFixture;

int64_t now() { return static_cast<int64_t>(std::time(nullptr)); }

GcOptions options(bool dry_run = false, int64_t grace = 0) {
  return GcOptions{dry_run, grace, now()};
}

GcReport collect(const StoreFixture& s, GcOptions opts) {
  auto report = collectGarbage(s.index(), s.store(), lineManifestBlobs, opts);
  REQUIRE(report.isOk());
  return std::move(report.value());
}

TEST_CASE("gc: keeps linked and manifest-referenced blobs and removes the rest", "[cache][gc]") {
  StoreFixture s;
  std::string linked = s.putBlob("linked", "local/a");
  std::string referenced = s.putBlob("referenced", "");  // only a manifest elsewhere needs it
  s.putManifest("local/b", {referenced});
  std::string garbage = s.putBlob("garbage-bytes", "");

  GcReport report = collect(s, options());

  CHECK(report.blobs == 1);
  CHECK(report.bytes == std::string("garbage-bytes").size());
  REQUIRE(report.items.size() == 1);
  CHECK(report.items[0].kind == GcKind::kBlob);
  CHECK(report.items[0].name == garbage);
  CHECK_FALSE(s.hasRecord(garbage));
  CHECK_FALSE(s.hasFile(garbage));
  CHECK(s.hasRecord(linked));
  CHECK(s.hasFile(linked));
  CHECK(s.hasRecord(referenced));
  CHECK(s.hasFile(referenced));
}

TEST_CASE("gc: a dry run lists what would go and deletes nothing", "[cache][gc]") {
  StoreFixture s;
  std::string garbage = s.putBlob("garbage", "");
  std::string unindexed = s.putBlob("no record", "", kBlobPushed, false);

  GcReport report = collect(s, options(/*dry_run=*/true));

  CHECK(report.blobs == 2);
  CHECK(report.bytes == std::string("garbage").size() + std::string("no record").size());
  CHECK(s.hasRecord(garbage));
  CHECK(s.hasFile(garbage));
  CHECK(s.hasFile(unindexed));
}

TEST_CASE("gc: a file without a record goes only after the grace period", "[cache][gc]") {
  StoreFixture s;
  std::string unindexed = s.putBlob("renamed, record not yet written", "", kBlobPushed, false);

  GcReport young = collect(s, options(false, /*grace=*/3600));
  CHECK(young.items.empty());
  CHECK(s.hasFile(unindexed));

  GcOptions later = options(false, 3600);
  later.now += 3601;
  GcReport old = collect(s, later);
  REQUIRE(old.items.size() == 1);
  CHECK(old.items[0].kind == GcKind::kUnindexedBlob);
  CHECK_FALSE(s.hasFile(unindexed));
}

TEST_CASE("gc: orphaned temps and record-less upload files go; live ones stay", "[cache][gc]") {
  StoreFixture s;
  auto dead_temp = s.root() / "tmp" / "999999999-0-dead";  // beyond pid_max: no such process
  auto live_temp = s.root() / "tmp" / (std::to_string(::getpid()) + "-0-live");
  auto orphan_upload = s.store().uploadPath("orphan");
  auto live_upload = s.store().uploadPath("live");
  for (const auto& p : {dead_temp, live_temp, orphan_upload, live_upload}) {
    StoreFixture::writeFile(p, "bytes");
  }
  WriteTxn txn = s.write();
  REQUIRE(txn.putUpload("live", UploadRecord{"local/a", 1}).isOk());
  REQUIRE(txn.commit().isOk());

  GcReport report = collect(s, options());

  CHECK(report.files == 2);
  CHECK_FALSE(std::filesystem::exists(dead_temp));
  CHECK_FALSE(std::filesystem::exists(orphan_upload));
  CHECK(std::filesystem::exists(live_temp));
  CHECK(std::filesystem::exists(live_upload));
}

TEST_CASE("gc: a manifest it cannot read stops it before anything is deleted", "[cache][gc]") {
  StoreFixture s;
  std::string garbage = s.putBlob("garbage", "");
  s.putManifest("local/a", {"garbage"});  // lineManifestBlobs refuses this one

  auto report = collectGarbage(s.index(), s.store(), lineManifestBlobs, options());

  CHECK(report.status().code() == Code::kCorrupt);
  CHECK(s.hasRecord(garbage));
  CHECK(s.hasFile(garbage));
}

TEST_CASE("gc: a link made while it marks keeps the blob (re-checked under the writer lock)",
          "[cache][gc]") {
  StoreFixture s;
  std::string blob = s.putBlob("about to be mounted", "");
  s.putManifest("local/other", {});
  bool linked = false;
  // Called during the mark, in its read snapshot: a concurrent mount links the blob now.
  ManifestBlobs racing = [&](std::string_view type, std::string_view bytes) {
    if (!linked) {
      linked = true;
      WriteTxn txn = s.write();
      REQUIRE(txn.link("local/mounted", blob).isOk());
      REQUIRE(txn.commit().isOk());
    }
    return lineManifestBlobs(type, bytes);
  };

  auto report = collectGarbage(s.index(), s.store(), racing, options());

  REQUIRE(report.isOk());
  CHECK(report->blobs == 0);
  CHECK(report->kept == 1);
  CHECK(s.hasRecord(blob));
  CHECK(s.hasFile(blob));
}

TEST_CASE("gc: a record whose file is already gone is removed and frees nothing", "[cache][gc]") {
  StoreFixture s;
  std::string blob = s.putBlob("file lost", "");
  std::filesystem::remove(s.blobPath(blob));

  GcReport report = collect(s, options());

  CHECK(report.blobs == 1);
  CHECK(report.bytes == 0);
  CHECK_FALSE(s.hasRecord(blob));
}

}  // namespace
}  // namespace regcache::cache
