// Eviction: least recently used cached images go first, by reference, and pushed content stays.
#include "cache/eviction.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

using namespace regcache;
using namespace regcache::cache;

namespace {

struct Store {
  std::filesystem::path dir;
  std::unique_ptr<Index> index;
  std::unique_ptr<BlobStore> blobs;

  Store() {
    std::random_device rd;
    dir = std::filesystem::temp_directory_path() / ("evict-test-" + std::to_string(rd()));
    index = std::move(*Index::open(dir / "index"));
    blobs = std::move(*BlobStore::open(dir));
  }
  ~Store() {
    index.reset();
    std::filesystem::remove_all(dir);
  }

  // Stores a blob of `size` bytes with `flags`, linked into `repository`.
  std::string blob(const std::string& repository, size_t size, uint32_t flags, char fill) {
    std::string data(size, fill);
    Digest digest = digestOf(data);
    REQUIRE(blobs->writeBlob(digest, data).isOk());
    auto txn = index->write();
    REQUIRE(txn->putBlob(digest.str(), BlobRecord{size, 0, flags}).isOk());
    REQUIRE(txn->link(repository, digest.str()).isOk());
    REQUIRE(txn->commit().isOk());
    return digest.str();
  }

  // A "manifest" whose bytes list the digests it references, comma-separated.
  std::string manifest(const std::string& repository, const std::string& tag,
                       const std::vector<std::string>& refs, int64_t last_used) {
    std::string bytes;
    for (const auto& r : refs) bytes += (bytes.empty() ? "" : ",") + r;
    std::string digest = digestOf(bytes + tag).str();
    auto txn = index->write();
    ManifestRecord record{"test/manifest", bytes, "", "", 0};
    REQUIRE(txn->putManifest(repository, digest, record, nullptr).isOk());
    REQUIRE(txn->putTag(repository, tag, digest, 0, 0).isOk());
    REQUIRE(txn->putAccess(repository, digest, last_used).isOk());
    REQUIRE(txn->commit().isOk());
    return digest;
  }

  bool hasBlob(const std::string& digest) {
    auto txn = index->read();
    return txn->blob(digest).isOk() && blobs->hasBlob(*Digest::parse(digest));
  }
  bool hasManifest(const std::string& repository, const std::string& digest) {
    return index->read()->manifest(repository, digest).isOk();
  }
};

EvictionOptions options(uint64_t max_bytes) {
  EvictionOptions o;
  o.max_bytes = max_bytes;
  o.orphan_grace_seconds = 0;
  o.is_cached_repository = [](std::string_view repo) { return repo.starts_with("up/"); };
  o.references = [](std::string_view, std::string_view bytes, std::vector<std::string>& out) {
    while (!bytes.empty()) {
      size_t comma = bytes.find(',');
      out.emplace_back(bytes.substr(0, comma));
      bytes = comma == std::string_view::npos ? std::string_view{} : bytes.substr(comma + 1);
    }
  };
  return o;
}

}  // namespace

TEST_CASE("Evictor: under the high watermark nothing is touched", "[cache]") {
  Store s;
  std::string layer = s.blob("up/a", 1000, kBlobCached, 'a');
  std::string m = s.manifest("up/a", "v1", {layer}, 10);
  auto report = Evictor(*s.index, *s.blobs, options(10000)).run(100);
  REQUIRE(report.isOk());
  CHECK(report->used_before == 1000);
  CHECK(report->blobs == 0);
  CHECK(s.hasBlob(layer));
  CHECK(s.hasManifest("up/a", m));
}

TEST_CASE("Evictor: the least recently used image goes, a shared base layer stays", "[cache]") {
  Store s;
  std::string base = s.blob("up/old", 4000, kBlobCached, 'b');
  s.blob("up/new", 4000, kBlobCached, 'b');  // the same bytes, linked in the second repo too
  std::string old_layer = s.blob("up/old", 3000, kBlobCached, 'o');
  std::string new_layer = s.blob("up/new", 3000, kBlobCached, 'n');
  std::string old_m = s.manifest("up/old", "v1", {base, old_layer}, 10);
  std::string new_m = s.manifest("up/new", "v1", {base, new_layer}, 20);

  // 10000 bytes held against a bound of 10500: over the high watermark (95%), so evict down to
  // 85% (8925): dropping the older image frees only its own layer (3000).
  auto report = Evictor(*s.index, *s.blobs, options(10500)).run(100);
  REQUIRE(report.isOk());
  CHECK(report->used_before == 10000);
  CHECK(report->manifests == 1);
  CHECK(report->bytes == 3000);
  CHECK_FALSE(s.hasManifest("up/old", old_m));
  CHECK_FALSE(s.hasBlob(old_layer));
  CHECK(s.hasManifest("up/new", new_m));
  CHECK(s.hasBlob(base));
  CHECK(s.hasBlob(new_layer));
  // The evicted image's tag went with it.
  CHECK_FALSE(s.index->read()->tag("up/old", "v1").isOk());
}

TEST_CASE("Evictor: pushed content and local manifests are never evicted", "[cache]") {
  Store s;
  std::string pushed = s.blob("local/app", 5000, kBlobPushed, 'p');
  std::string both = s.blob("up/a", 3000, kBlobCached | kBlobPushed, 'x');
  std::string cached = s.blob("up/a", 3000, kBlobCached, 'c');
  s.manifest("local/app", "v1", {pushed}, 1);
  std::string cached_m = s.manifest("up/a", "v1", {both, cached}, 2);

  auto report = Evictor(*s.index, *s.blobs, options(3000)).run(100);
  REQUIRE(report.isOk());
  CHECK(report->used_before == 3000);  // only blobs that were never pushed count
  CHECK_FALSE(s.hasManifest("up/a", cached_m));
  CHECK_FALSE(s.hasBlob(cached));
  CHECK(s.hasBlob(both));
  CHECK(s.hasBlob(pushed));
  CHECK(s.index->read()->tag("local/app", "v1").isOk());
}

TEST_CASE("Evictor: cached blobs no manifest needs go first, after their grace", "[cache]") {
  Store s;
  std::string orphan = s.blob("up/a", 6000, kBlobCached, 'o');
  std::string layer = s.blob("up/a", 4000, kBlobCached, 'l');
  std::string m = s.manifest("up/a", "v1", {layer}, 50);

  EvictionOptions o = options(10500);
  o.orphan_grace_seconds = 1000;
  auto young = Evictor(*s.index, *s.blobs, o).run(100);  // orphan created at 0: within grace
  REQUIRE(young.isOk());
  CHECK(s.hasBlob(orphan));
  CHECK_FALSE(s.hasManifest("up/a", m));  // so the image had to go instead

  Store t;
  std::string orphan2 = t.blob("up/a", 6000, kBlobCached, 'o');
  std::string layer2 = t.blob("up/a", 4000, kBlobCached, 'l');
  std::string m2 = t.manifest("up/a", "v1", {layer2}, 50);
  auto old = Evictor(*t.index, *t.blobs, options(10500)).run(5000);
  REQUIRE(old.isOk());
  CHECK_FALSE(t.hasBlob(orphan2));
  CHECK(t.hasManifest("up/a", m2));
  CHECK(t.hasBlob(layer2));
}

TEST_CASE("Recency: touches are batched and written in one transaction", "[cache]") {
  Store s;
  std::string layer = s.blob("up/a", 10, kBlobCached, 'a');
  std::string m = s.manifest("up/a", "v1", {layer}, 5);
  Recency recency;
  recency.touch("up/a", m, 77);
  recency.touch("up/a", m, 99);
  recency.touch("up/gone", "sha256:00", 99);  // no such manifest: nothing written
  CHECK(recency.pending() == 2);
  REQUIRE(recency.flush(*s.index).isOk());
  CHECK(recency.pending() == 0);
  auto txn = s.index->read();
  CHECK(*txn->access("up/a", m) == 99);
  CHECK_FALSE(txn->access("up/gone", "sha256:00").isOk());
}
