// Tests for du's figures: per repository, per upstream, totals, cached against pushed.
#include "cache/usage.h"

#include <catch2/catch.hpp>

#include "tests/unit/cache/store_fixture.h"

namespace regcache::cache {
namespace {

using testing::StoreFixture;

const RepositoryUsage& repository(const StoreUsage& u, std::string_view name) {
  for (const RepositoryUsage& r : u.repositories) {
    if (r.name == name) return r;
  }
  FAIL("no repository " << name);
  throw;  // unreachable
}

TEST_CASE("usage: a shared blob counts once per repository, per upstream and overall",
          "[cache][usage]") {
  StoreFixture s;
  std::string shared = s.putBlob(std::string(100, 's'), "docker.io/library/a", kBlobCached);
  {
    WriteTxn txn = s.write();
    REQUIRE(txn.link("docker.io/library/b", shared).isOk());
    REQUIRE(txn.link("local/app", shared).isOk());
    REQUIRE(txn.putBlob(shared, BlobRecord{100, 1, kBlobPushed}).isOk());  // pushed as well
    REQUIRE(txn.commit().isOk());
  }
  s.putBlob(std::string(10, 'c'), "docker.io/library/a", kBlobCached);
  s.putBlob(std::string(1000, 'p'), "local/app", kBlobPushed);
  s.putManifest("local/app", {shared}, "v1");
  s.putBlob("unlinked", "", kBlobPushed);

  auto usage = measureUsage(s.index(), s.store(), {"docker.io", "ghcr.io"});
  REQUIRE(usage.isOk());

  CHECK(usage->blobs == 4);
  CHECK(usage->bytes == 100 + 10 + 1000 + 8);
  CHECK(usage->cached_blobs == 2);
  CHECK(usage->cached_bytes == 110);
  CHECK(usage->pushed_blobs == 3);
  CHECK(usage->pushed_bytes == 1108);
  CHECK(usage->manifests == 1);
  CHECK(usage->tags == 1);

  CHECK(repository(*usage, "docker.io/library/a").bytes == 110);
  CHECK(repository(*usage, "docker.io/library/a").upstream == "docker.io");
  CHECK(repository(*usage, "docker.io/library/b").bytes == 100);
  const RepositoryUsage& app = repository(*usage, "local/app");
  CHECK(app.upstream.empty());
  CHECK(app.blobs == 2);
  CHECK(app.bytes == 1100);
  CHECK(app.manifests == 1);
  CHECK(app.tags == 1);

  REQUIRE(usage->upstreams.size() == 2);
  CHECK(usage->upstreams[0].name.empty());  // local first
  CHECK(usage->upstreams[0].bytes == 1100);
  CHECK(usage->upstreams[1].name == "docker.io");
  CHECK(usage->upstreams[1].repositories == 2);
  CHECK(usage->upstreams[1].blobs == 2);
  CHECK(usage->upstreams[1].bytes == 110);

  CHECK(usage->disk_blob_bytes == 1118);
  CHECK(usage->disk_index_bytes > 0);
  CHECK(usage->disk_total_bytes >= usage->disk_blob_bytes + usage->disk_index_bytes);
}

TEST_CASE("usage: a repository named after no configured upstream is local", "[cache][usage]") {
  StoreFixture s;
  s.putBlob("x", "quay.io/org/app");

  auto usage = measureUsage(s.index(), s.store(), {"docker.io"});

  REQUIRE(usage.isOk());
  CHECK(repository(*usage, "quay.io/org/app").upstream.empty());
}

}  // namespace
}  // namespace regcache::cache
