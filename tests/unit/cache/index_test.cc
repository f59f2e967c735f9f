// Tests for the LMDB index: round trips, transaction semantics, listings and cascades.
#include "cache/index.h"

#include <catch2/catch.hpp>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/cache/temp_dir.h"

namespace regcache::cache {
namespace {

using testing::TempDir;
using Strings = std::vector<std::string>;

constexpr size_t kAll = std::numeric_limits<size_t>::max();

// Distinct, well-formed digest strings; the index itself does not parse them.
std::string digestN(int n) { return digestOf(std::to_string(n)).str(); }

std::unique_ptr<Index> openIndex(const std::filesystem::path& dir) {
  Result<std::unique_ptr<Index>> index = Index::open(dir);
  REQUIRE(index.isOk());
  return std::move(index.value());
}

WriteTxn beginWrite(const Index& index) {
  Result<WriteTxn> txn = index.write();
  REQUIRE(txn.isOk());
  return std::move(txn.value());
}

ReadTxn beginRead(const Index& index) {
  Result<ReadTxn> txn = index.read();
  REQUIRE(txn.isOk());
  return std::move(txn.value());
}

ManifestRecord manifestRecord(std::string bytes, std::string subject = "") {
  ManifestRecord m;
  m.media_type = "application/vnd.oci.image.manifest.v1+json";
  m.bytes = std::move(bytes);
  m.subject = std::move(subject);
  m.artifact_type = "application/example";
  m.created = 1700000000;
  return m;
}

ReferrerRecord referrerRecord(uint64_t size) {
  ReferrerRecord r;
  r.media_type = "application/vnd.oci.image.manifest.v1+json";
  r.artifact_type = "application/sbom";
  r.size = size;
  r.annotations_json = R"({"k":"v"})";
  return r;
}

void putManifests(const Index& index, std::string_view repository, int first, int count) {
  WriteTxn w = beginWrite(index);
  for (int i = first; i < first + count; ++i) {
    REQUIRE(w.putManifest(repository, digestN(i), manifestRecord("m"), nullptr).isOk());
  }
  REQUIRE(w.commit().isOk());
}

TEST_CASE("Index: a blob record round-trips and putBlob ORs in flags", "[cache][index]") {
  TempDir dir;
  auto index = openIndex(dir.path());
  const std::string d = digestN(1);

  WriteTxn w = beginWrite(*index);
  REQUIRE(w.putBlob(d, BlobRecord{123, 1700000000, kBlobCached}).isOk());
  REQUIRE(w.putBlob(d, BlobRecord{456, 1700000100, kBlobPushed}).isOk());
  REQUIRE(w.commit().isOk());

  ReadTxn r = beginRead(*index);
  Result<BlobRecord> blob = r.blob(d);
  REQUIRE(blob.isOk());
  CHECK(blob->size == 456);
  CHECK(blob->created == 1700000100);
  CHECK(blob->flags == (kBlobCached | kBlobPushed));
  CHECK(r.blob(digestN(2)).status().code() == Code::kNotFound);
}

TEST_CASE("Index: deleteBlob removes the record and reports an absent one", "[cache][index]") {
  TempDir dir;
  auto index = openIndex(dir.path());
  WriteTxn w = beginWrite(*index);
  REQUIRE(w.putBlob(digestN(1), BlobRecord{1, 2, kBlobPushed}).isOk());
  REQUIRE(w.deleteBlob(digestN(1)).isOk());
  CHECK(w.blob(digestN(1)).status().code() == Code::kNotFound);
  CHECK(w.deleteBlob(digestN(1)).code() == Code::kNotFound);
}

TEST_CASE("Index: links are per repository and unlink reports a missing link", "[cache][index]") {
  TempDir dir;
  auto index = openIndex(dir.path());
  const std::string d = digestN(1);

  WriteTxn w = beginWrite(*index);
  REQUIRE(w.link("library/alpine", d).isOk());
  REQUIRE(w.link("library/alpine2", d).isOk());
  REQUIRE(w.commit().isOk());
  {
    ReadTxn r = beginRead(*index);
    CHECK(r.isLinked("library/alpine", d));
    CHECK(r.isLinked("library/alpine2", d));
    CHECK_FALSE(r.isLinked("library", d));
    CHECK_FALSE(r.isLinked("library/alpine", digestN(2)));
  }

  WriteTxn w2 = beginWrite(*index);
  REQUIRE(w2.unlink("library/alpine", d).isOk());
  CHECK_FALSE(w2.isLinked("library/alpine", d));
  CHECK(w2.isLinked("library/alpine2", d));
  CHECK(w2.unlink("library/alpine", d).code() == Code::kNotFound);
}

TEST_CASE("Index: a manifest round-trips every field", "[cache][index]") {
  TempDir dir;
  auto index = openIndex(dir.path());
  std::string bytes(100000, 'x');
  bytes[5] = '\0';  // manifest bytes are binary-safe
  ManifestRecord record = manifestRecord(bytes, digestN(9));

  WriteTxn w = beginWrite(*index);
  REQUIRE(w.putManifest("org/app", digestN(1), record, nullptr).isOk());
  REQUIRE(w.commit().isOk());

  ReadTxn r = beginRead(*index);
  Result<ManifestView> m = r.manifest("org/app", digestN(1));
  REQUIRE(m.isOk());
  CHECK(m->media_type == record.media_type);
  CHECK(m->bytes == bytes);
  CHECK(m->subject == record.subject);
  CHECK(m->artifact_type == record.artifact_type);
  CHECK(m->created == record.created);
  CHECK(r.manifest("org/app", digestN(2)).status().code() == Code::kNotFound);
  CHECK(r.manifest("org/other", digestN(1)).status().code() == Code::kNotFound);
}

TEST_CASE("Index: a tag round-trips and deleteTag removes it", "[cache][index]") {
  TempDir dir;
  auto index = openIndex(dir.path());

  WriteTxn w = beginWrite(*index);
  REQUIRE(w.putTag("org/app", "v1", digestN(1), 100, 200).isOk());
  REQUIRE(w.putTag("org/app", "v1", digestN(2), 300, 400).isOk());
  REQUIRE(w.commit().isOk());
  {
    ReadTxn r = beginRead(*index);
    Result<TagView> tag = r.tag("org/app", "v1");
    REQUIRE(tag.isOk());
    CHECK(tag->digest == digestN(2));
    CHECK(tag->updated == 300);
    CHECK(tag->checked == 400);
    CHECK(r.tag("org/app", "v2").status().code() == Code::kNotFound);
  }

  WriteTxn w2 = beginWrite(*index);
  REQUIRE(w2.deleteTag("org/app", "v1").isOk());
  CHECK(w2.tag("org/app", "v1").status().code() == Code::kNotFound);
  CHECK(w2.deleteTag("org/app", "v1").code() == Code::kNotFound);
}

TEST_CASE("Index: uploads round-trip and are all listed", "[cache][index]") {
  TempDir dir;
  auto index = openIndex(dir.path());

  WriteTxn w = beginWrite(*index);
  REQUIRE(w.putUpload("uuid-b", UploadRecord{"local/b", 20}).isOk());
  REQUIRE(w.putUpload("uuid-a", UploadRecord{"local/a", 10}).isOk());
  REQUIRE(w.putUpload("uuid-c", UploadRecord{"local/c", 30}).isOk());
  REQUIRE(w.deleteUpload("uuid-c").isOk());
  CHECK(w.deleteUpload("uuid-c").code() == Code::kNotFound);
  REQUIRE(w.commit().isOk());

  ReadTxn r = beginRead(*index);
  Result<UploadRecord> upload = r.upload("uuid-a");
  REQUIRE(upload.isOk());
  CHECK(upload->repository == "local/a");
  CHECK(upload->started == 10);
  CHECK(r.upload("uuid-c").status().code() == Code::kNotFound);

  auto all = r.uploads();
  REQUIRE(all.size() == 2);
  CHECK(all[0].first == "uuid-a");
  CHECK(all[1].first == "uuid-b");
  CHECK(all[1].second.repository == "local/b");
  CHECK(all[1].second.started == 20);
}

TEST_CASE("Index: a read transaction keeps its snapshot across a later commit", "[cache][index]") {
  TempDir dir;
  auto index = openIndex(dir.path());
  ReadTxn before = beginRead(*index);

  WriteTxn w = beginWrite(*index);
  REQUIRE(w.putTag("org/app", "v1", digestN(1), 1, 1).isOk());
  REQUIRE(w.commit().isOk());

  CHECK(before.tag("org/app", "v1").status().code() == Code::kNotFound);
  CHECK(beginRead(*index).tag("org/app", "v1").isOk());
}

TEST_CASE("Index: reused read transactions see every commit before them, on any thread",
          "[cache][index]") {
  TempDir dir;
  auto index = openIndex(dir.path());
  // More readers at once than are kept for reuse, ended and begun again across commits and
  // threads: each new one must see the latest commit, never a recycled snapshot.
  for (int round = 0; round < 3; ++round) {
    WriteTxn w = beginWrite(*index);
    REQUIRE(w.putTag("org/app", "v1", digestN(round), 1, 1).isOk());
    REQUIRE(w.commit().isOk());
    std::vector<ReadTxn> open;
    for (int i = 0; i < 40; ++i) {
      open.push_back(beginRead(*index));
      CHECK(open.back().tag("org/app", "v1")->digest == digestN(round));
    }
    open.clear();
    std::thread other([&] {
      Result<ReadTxn> r = index->read();
      CHECK((r.isOk() && r->tag("org/app", "v1")->digest == digestN(round)));
    });
    other.join();
  }
}

TEST_CASE("Index: a write transaction sees its own writes before commit", "[cache][index]") {
  TempDir dir;
  auto index = openIndex(dir.path());
  WriteTxn w = beginWrite(*index);
  REQUIRE(w.putBlob(digestN(1), BlobRecord{7, 0, 0}).isOk());
  REQUIRE(w.link("r", digestN(1)).isOk());
  REQUIRE(w.putManifest("r", digestN(2), manifestRecord("m"), nullptr).isOk());
  REQUIRE(w.putTag("r", "t", digestN(2), 1, 1).isOk());
  CHECK(w.blob(digestN(1))->size == 7);
  CHECK(w.isLinked("r", digestN(1)));
  CHECK(w.manifest("r", digestN(2))->bytes == "m");
  CHECK(w.tag("r", "t")->digest == digestN(2));
}

TEST_CASE("Index: a write transaction destroyed without commit changes nothing", "[cache][index]") {
  TempDir dir;
  auto index = openIndex(dir.path());
  {
    WriteTxn w = beginWrite(*index);
    REQUIRE(w.putTag("org/app", "v1", digestN(1), 1, 1).isOk());
    REQUIRE(w.putBlob(digestN(1), BlobRecord{1, 1, kBlobPushed}).isOk());
  }
  ReadTxn r = beginRead(*index);
  CHECK(r.tag("org/app", "v1").status().code() == Code::kNotFound);
  CHECK(r.blob(digestN(1)).status().code() == Code::kNotFound);
}

TEST_CASE("Index: a finished write transaction refuses further use", "[cache][index]") {
  TempDir dir;
  auto index = openIndex(dir.path());
  WriteTxn w = beginWrite(*index);
  REQUIRE(w.commit().isOk());
  CHECK(w.commit().code() == Code::kInternal);
  CHECK(w.putTag("r", "t", digestN(1), 1, 1).code() == Code::kInternal);
  CHECK(w.tag("r", "t").status().code() == Code::kInternal);

  WriteTxn moved_from = beginWrite(*index);
  WriteTxn moved_to(std::move(moved_from));
  CHECK(moved_from.commit().code() == Code::kInternal);  // NOLINT: testing moved-from state
  CHECK(moved_to.commit().isOk());
}

TEST_CASE("Index: writes reject empty key parts and parts holding NUL", "[cache][index]") {
  TempDir dir;
  auto index = openIndex(dir.path());
  WriteTxn w = beginWrite(*index);
  CHECK(w.putTag("", "t", digestN(1), 1, 1).code() == Code::kInvalidArgument);
  CHECK(w.putTag("r", std::string("a\0b", 3), digestN(1), 1, 1).code() == Code::kInvalidArgument);
  CHECK(w.link("r", "").code() == Code::kInvalidArgument);
  CHECK(w.putManifest(std::string("r\0x", 3), digestN(1), manifestRecord("m"), nullptr).code() ==
        Code::kInvalidArgument);
  CHECK(w.putTag(std::string(600, 'r'), "t", digestN(1), 1, 1).code() == Code::kInvalidArgument);
}

TEST_CASE("Index: tags are listed in lexical order, strictly after last, up to limit",
          "[cache][index]") {
  TempDir dir;
  auto index = openIndex(dir.path());
  WriteTxn w = beginWrite(*index);
  for (const char* tag : {"v2", "latest", "v10", "v1", "a"}) {
    REQUIRE(w.putTag("org/app", tag, digestN(1), 1, 1).isOk());
  }
  // Neighbouring repositories whose names share the prefix must not leak in.
  REQUIRE(w.putTag("org/ap", "zz", digestN(1), 1, 1).isOk());
  REQUIRE(w.putTag("org/app2", "aa", digestN(1), 1, 1).isOk());
  REQUIRE(w.putTag("org/app/sub", "aa", digestN(1), 1, 1).isOk());
  REQUIRE(w.commit().isOk());

  ReadTxn r = beginRead(*index);
  CHECK(r.tags("org/app", "", kAll) == Strings{"a", "latest", "v1", "v10", "v2"});
  CHECK(r.tags("org/app", "", 2) == Strings{"a", "latest"});
  CHECK(r.tags("org/app", "latest", 2) == Strings{"v1", "v10"});
  CHECK(r.tags("org/app", "v1", kAll) == Strings{"v10", "v2"});
  CHECK(r.tags("org/app", "m", kAll) == Strings{"v1", "v10", "v2"});  // last need not exist
  CHECK(r.tags("org/app", "v2", kAll).empty());
  CHECK(r.tags("org/app", "", 0).empty());
  CHECK(r.tags("org/none", "", kAll).empty());
}

TEST_CASE("Index: repositories lists each repository once, in order, strictly after last",
          "[cache][index]") {
  TempDir dir;
  auto index = openIndex(dir.path());
  putManifests(*index, "b", 0, 3);
  putManifests(*index, "a/b", 10, 4);
  putManifests(*index, "a", 20, 5);
  putManifests(*index, "a-b", 30, 1);
  {
    // Tags without manifests do not make a repository appear.
    WriteTxn w = beginWrite(*index);
    REQUIRE(w.putTag("c", "t", digestN(1), 1, 1).isOk());
    REQUIRE(w.commit().isOk());
  }

  ReadTxn r = beginRead(*index);
  CHECK(r.hasRepository("a"));
  CHECK(r.hasRepository("a/b"));
  CHECK_FALSE(r.hasRepository("a/"));
  CHECK_FALSE(r.hasRepository("c"));
  CHECK_FALSE(r.hasRepository("0"));
  CHECK_FALSE(r.hasRepository("z"));
  CHECK(r.repositories("", kAll) == Strings{"a", "a-b", "a/b", "b"});
  CHECK(r.repositories("", 1) == Strings{"a"});
  CHECK(r.repositories("a", 2) == Strings{"a-b", "a/b"});
  CHECK(r.repositories("a/b", kAll) == Strings{"b"});
  CHECK(r.repositories("a/a", kAll) == Strings{"a/b", "b"});  // last need not exist
  CHECK(r.repositories("b", kAll).empty());
  CHECK(r.repositories("", 0).empty());

  Strings paged;
  std::string last;
  for (Strings page; !(page = r.repositories(last, 1)).empty(); last = page.back()) {
    paged.push_back(page.front());
  }
  CHECK(paged == Strings{"a", "a-b", "a/b", "b"});
}

TEST_CASE("Index: referrers are listed per repository and subject", "[cache][index]") {
  TempDir dir;
  auto index = openIndex(dir.path());
  const std::string subject = digestN(100);
  const std::string other_subject = digestN(200);

  WriteTxn w = beginWrite(*index);
  ReferrerRecord first = referrerRecord(11);
  REQUIRE(w.putManifest("r", digestN(1), manifestRecord("a", subject), &first).isOk());
  ReferrerRecord second = referrerRecord(22);
  second.annotations_json.clear();
  REQUIRE(w.putManifest("r", digestN(2), manifestRecord("b", subject), &second).isOk());
  REQUIRE(w.putManifest("r", digestN(3), manifestRecord("c", other_subject), &first).isOk());
  REQUIRE(w.putManifest("r2", digestN(4), manifestRecord("d", subject), &first).isOk());
  // No referrer record given, or no subject: no entry.
  REQUIRE(w.putManifest("r", digestN(5), manifestRecord("e", subject), nullptr).isOk());
  REQUIRE(w.putManifest("r", digestN(6), manifestRecord("f"), &first).isOk());
  REQUIRE(w.commit().isOk());

  ReadTxn r = beginRead(*index);
  std::vector<ReferrerRecord> list = r.referrers("r", subject);
  REQUIRE(list.size() == 2);
  const ReferrerRecord& one = list[0].digest == digestN(1) ? list[0] : list[1];
  const ReferrerRecord& two = list[0].digest == digestN(1) ? list[1] : list[0];
  CHECK(one.digest == digestN(1));
  CHECK(one.size == 11);
  CHECK(one.media_type == first.media_type);
  CHECK(one.artifact_type == first.artifact_type);
  CHECK(one.annotations_json == first.annotations_json);
  CHECK(two.digest == digestN(2));
  CHECK(two.size == 22);
  CHECK(two.annotations_json.empty());

  CHECK(r.referrers("r", other_subject).size() == 1);
  CHECK(r.referrers("r2", subject).size() == 1);
  CHECK(r.referrers("r", digestN(300)).empty());
}

TEST_CASE("Index: deleteManifest also removes its tags and its referrer entry", "[cache][index]") {
  TempDir dir;
  auto index = openIndex(dir.path());
  const std::string subject = digestN(100);
  const std::string doomed = digestN(1);
  const std::string kept = digestN(2);

  WriteTxn w = beginWrite(*index);
  ReferrerRecord ref = referrerRecord(5);
  REQUIRE(w.putManifest("r", doomed, manifestRecord("a", subject), &ref).isOk());
  REQUIRE(w.putManifest("r", kept, manifestRecord("b", subject), &ref).isOk());
  REQUIRE(w.putManifest("r2", doomed, manifestRecord("a", subject), &ref).isOk());
  REQUIRE(w.putTag("r", "v1", doomed, 1, 1).isOk());
  REQUIRE(w.putTag("r", "latest", doomed, 1, 1).isOk());
  REQUIRE(w.putTag("r", "v2", kept, 1, 1).isOk());
  REQUIRE(w.putTag("r2", "v1", doomed, 1, 1).isOk());
  REQUIRE(w.commit().isOk());

  WriteTxn d = beginWrite(*index);
  REQUIRE(d.deleteManifest("r", doomed).isOk());
  CHECK(d.deleteManifest("r", doomed).code() == Code::kNotFound);
  REQUIRE(d.commit().isOk());

  ReadTxn r = beginRead(*index);
  CHECK(r.manifest("r", doomed).status().code() == Code::kNotFound);
  CHECK(r.tags("r", "", kAll) == Strings{"v2"});
  std::vector<ReferrerRecord> refs = r.referrers("r", subject);
  REQUIRE(refs.size() == 1);
  CHECK(refs[0].digest == kept);
  // Another repository's copy is untouched.
  CHECK(r.manifest("r2", doomed).isOk());
  CHECK(r.tag("r2", "v1").isOk());
  CHECK(r.referrers("r2", subject).size() == 1);
}

TEST_CASE("Index: data survives closing and reopening the environment", "[cache][index]") {
  TempDir dir;
  {
    auto index = openIndex(dir.path() / "index");
    WriteTxn w = beginWrite(*index);
    REQUIRE(w.putBlob(digestN(1), BlobRecord{42, 7, kBlobPushed}).isOk());
    REQUIRE(w.link("r", digestN(1)).isOk());
    REQUIRE(w.putManifest("r", digestN(2), manifestRecord("m"), nullptr).isOk());
    REQUIRE(w.putTag("r", "t", digestN(2), 3, 4).isOk());
    REQUIRE(w.putUpload("u", UploadRecord{"r", 5}).isOk());
    REQUIRE(w.commit().isOk());
  }
  CHECK(std::filesystem::exists(dir.path() / "index" / "data.mdb"));

  auto index = openIndex(dir.path() / "index");
  ReadTxn r = beginRead(*index);
  CHECK(r.blob(digestN(1))->size == 42);
  CHECK(r.isLinked("r", digestN(1)));
  CHECK(r.manifest("r", digestN(2))->bytes == "m");
  CHECK(r.tag("r", "t")->checked == 4);
  CHECK(r.upload("u")->started == 5);
  CHECK(r.repositories("", kAll) == Strings{"r"});
}

TEST_CASE("Index: a full map is reported as an I/O error", "[cache][index]") {
  TempDir dir;
  Index::Options options;
  options.map_size = 1 << 20;
  Result<std::unique_ptr<Index>> index = Index::open(dir.path(), options);
  REQUIRE(index.isOk());

  WriteTxn w = beginWrite(**index);
  Status s = w.putManifest("r", digestN(1), manifestRecord(std::string(2 << 20, 'x')), nullptr);
  CHECK(s.code() == Code::kIo);
  CHECK(s.message().find("MDB_MAP_FULL") != std::string::npos);
}

TEST_CASE("Index: one thread may hold several read transactions, others read too",
          "[cache][index]") {
  TempDir dir;
  auto index = openIndex(dir.path());
  putManifests(*index, "r", 0, 1);

  ReadTxn first = beginRead(*index);
  ReadTxn second = beginRead(*index);
  CHECK(first.manifest("r", digestN(0)).isOk());
  CHECK(second.manifest("r", digestN(0)).isOk());

  bool seen_on_other_thread = false;
  std::thread reader([&] {
    Result<ReadTxn> txn = index->read();
    seen_on_other_thread = txn.isOk() && txn->manifest("r", digestN(0)).isOk();
  });
  reader.join();
  CHECK(seen_on_other_thread);
}

}  // namespace
}  // namespace regcache::cache
