// Tests for the index's whole-index walks and deleteBlobAndLinks (used by gc, fsck and du).
#include <catch2/catch.hpp>
#include <string>
#include <utility>
#include <vector>

#include "tests/unit/cache/store_fixture.h"

namespace regcache::cache {
namespace {

using testing::StoreFixture;
using Pairs = std::vector<std::pair<std::string, std::string>>;

std::string digestN(int n) { return digestOf(std::to_string(n)).str(); }

TEST_CASE("Index: forEachLink visits every link in key order, split into its parts",
          "[cache][index]") {
  StoreFixture s;
  {
    WriteTxn txn = s.write();
    REQUIRE(txn.link("b/repo", digestN(1)).isOk());
    REQUIRE(txn.link("a/repo", digestN(2)).isOk());
    REQUIRE(txn.link("a/repo", digestN(1)).isOk());
    REQUIRE(txn.commit().isOk());
  }
  Pairs seen;
  REQUIRE(s.read()
              .forEachLink([&](std::string_view repository, std::string_view digest) {
                seen.emplace_back(repository, digest);
                return true;
              })
              .isOk());
  Pairs expected = {{"a/repo", std::min(digestN(1), digestN(2))},
                    {"a/repo", std::max(digestN(1), digestN(2))},
                    {"b/repo", digestN(1)}};
  CHECK(seen == expected);
}

TEST_CASE("Index: a walk stops when the visitor returns false", "[cache][index]") {
  StoreFixture s;
  for (int i = 0; i < 5; ++i) s.putBlob(std::to_string(i), "");
  int visited = 0;
  ReadTxn txn = s.read();
  REQUIRE(txn.forEachBlob([&](std::string_view, const Result<BlobRecord>& record) {
               REQUIRE(record.isOk());
               return ++visited < 2;
             })
              .isOk());
  CHECK(visited == 2);
}

TEST_CASE("Index: forEachManifest and forEachTag pass repository, key and record",
          "[cache][index]") {
  StoreFixture s;
  std::string digest = s.putManifest("org/app", {digestN(7)}, "latest");

  ReadTxn txn = s.read();
  Pairs manifests;
  REQUIRE(txn.forEachManifest([&](std::string_view repository, std::string_view d,
                                  const Result<ManifestView>& m) {
               REQUIRE(m.isOk());
               CHECK(m->bytes == digestN(7) + "\n");
               manifests.emplace_back(repository, d);
               return true;
             })
              .isOk());
  CHECK(manifests == Pairs{{"org/app", digest}});

  Pairs tags;
  REQUIRE(txn.forEachTag(
                 [&](std::string_view repository, std::string_view tag, const Result<TagView>& t) {
                   REQUIRE(t.isOk());
                   CHECK(t->digest == digest);
                   tags.emplace_back(repository, tag);
                   return true;
                 })
              .isOk());
  CHECK(tags == Pairs{{"org/app", "latest"}});
}

TEST_CASE("Index: deleteBlobAndLinks drops the record and every repository's link",
          "[cache][index]") {
  StoreFixture s;
  std::string blob = s.putBlob("shared", "a/one");
  {
    WriteTxn txn = s.write();
    REQUIRE(txn.link("b/two", blob).isOk());
    REQUIRE(txn.link("b/two", digestN(3)).isOk());
    Result<size_t> dropped = txn.deleteBlobAndLinks(blob);
    REQUIRE(dropped.isOk());
    CHECK(*dropped == 2);
    REQUIRE(txn.commit().isOk());
  }
  ReadTxn txn = s.read();
  CHECK(txn.blob(blob).status().code() == Code::kNotFound);
  CHECK_FALSE(txn.isLinked("a/one", blob));
  CHECK_FALSE(txn.isLinked("b/two", blob));
  CHECK(txn.isLinked("b/two", digestN(3)));
}

TEST_CASE("Index: deleteBlobAndLinks of a link-only digest drops the links", "[cache][index]") {
  StoreFixture s;
  WriteTxn txn = s.write();
  REQUIRE(txn.link("a/one", digestN(4)).isOk());
  Result<size_t> dropped = txn.deleteBlobAndLinks(digestN(4));
  REQUIRE(dropped.isOk());
  CHECK(*dropped == 1);
  CHECK_FALSE(txn.isLinked("a/one", digestN(4)));
}

TEST_CASE("Index: WriteTxn::upload sees the transaction's own writes", "[cache][index]") {
  StoreFixture s;
  WriteTxn txn = s.write();
  CHECK(txn.upload("u1").status().code() == Code::kNotFound);
  REQUIRE(txn.putUpload("u1", UploadRecord{"local/a", 5}).isOk());
  Result<UploadRecord> upload = txn.upload("u1");
  REQUIRE(upload.isOk());
  CHECK(upload->repository == "local/a");
  CHECK(upload->started == 5);
}

}  // namespace
}  // namespace regcache::cache
