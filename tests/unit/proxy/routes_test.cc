// Routing: request paths to endpoints, and names to repositories.
#include "proxy/routes.h"

#include <catch2/catch.hpp>

using namespace regcache;
using namespace regcache::proxy;

namespace {

Config twoUpstreams() {
  Config config;
  config.upstreams = {{"docker.io", "https://registry-1.docker.io", true},
                      {"ghcr.io", "https://ghcr.io", false}};
  config.local_namespaces = {"local", "team"};
  return config;
}

}  // namespace

TEST_CASE("Routes: every endpoint is recognised, names may contain the endpoint words", "[proxy]") {
  struct Case {
    const char* path;
    Endpoint endpoint;
    const char* name;
    const char* reference;
  };
  const Case cases[] = {
      {"/v2/", Endpoint::kBase, "", ""},
      {"/v2", Endpoint::kBase, "", ""},
      {"/v2/_catalog", Endpoint::kCatalog, "", ""},
      {"/v2/a/tags/list", Endpoint::kTags, "a", ""},
      {"/v2/a/b/c/manifests/latest", Endpoint::kManifest, "a/b/c", "latest"},
      {"/v2/a/manifests/b/manifests/v1", Endpoint::kManifest, "a/manifests/b", "v1"},
      {"/v2/x/blobs/sha256:abc", Endpoint::kBlob, "x", "sha256:abc"},
      {"/v2/x/blobs/sha256%3Aabc", Endpoint::kBlob, "x", "sha256:abc"},
      {"/v2/x/blobs/uploads/", Endpoint::kUploadStart, "x", ""},
      {"/v2/x/blobs/uploads", Endpoint::kUploadStart, "x", ""},
      {"/v2/x/y/blobs/uploads/1234-abcd", Endpoint::kUpload, "x/y", "1234-abcd"},
      {"/v2/x/referrers/sha256:abc", Endpoint::kReferrers, "x", "sha256:abc"},
  };
  for (const auto& c : cases) {
    INFO(c.path);
    auto route = parseRoute(c.path);
    REQUIRE(route.isOk());
    CHECK(route->endpoint == c.endpoint);
    CHECK(route->name == c.name);
    CHECK(route->reference == c.reference);
  }
}

TEST_CASE("Routes: paths that are no endpoint are not found", "[proxy]") {
  for (const char* path : {"/", "/v1/x/manifests/a", "/v2/x", "/v2/x/manifests/", "/v2/x/tags",
                           "/v2/manifests/latest", "/v2/x/unknown/thing"}) {
    INFO(path);
    auto route = parseRoute(path);
    REQUIRE_FALSE(route.isOk());
  }
}

TEST_CASE("Routes: bad names and odd encodings are refused as invalid", "[proxy]") {
  for (const char* path :
       {"/v2/UPPER/manifests/a", "/v2/a//b/manifests/a", "/v2/../etc/manifests/a",
        "/v2/a%2Fb/manifests/a", "/v2/a%00/manifests/a", "/v2/a%zz/manifests/x",
        "/v2/./a/tags/list", "/v2/a/b%/blobs/uploads/"}) {
    INFO(path);
    auto route = parseRoute(path);
    REQUIRE_FALSE(route.isOk());
    CHECK(route.status().code() == Code::kInvalidArgument);
  }
}

TEST_CASE("Routes: ns= selects a configured upstream and nothing else", "[proxy]") {
  Config config = twoUpstreams();
  auto repo = resolveRepository(config, "org/app", "ghcr.io");
  REQUIRE(repo.isOk());
  CHECK(repo->key == "ghcr.io/org/app");
  CHECK(repo->remote == "org/app");
  CHECK(repo->upstream->name == "ghcr.io");

  auto hub = resolveRepository(config, "alpine", "docker.io");
  REQUIRE(hub.isOk());
  CHECK(hub->remote == "library/alpine");

  auto unknown = resolveRepository(config, "org/app", "evil.example");
  REQUIRE_FALSE(unknown.isOk());
  CHECK(unknown.status().code() == Code::kNotFound);
  CHECK(unknown.status().message().find("docker.io, ghcr.io") != std::string::npos);
}

TEST_CASE("Routes: a path prefix naming an upstream selects it", "[proxy]") {
  Config config = twoUpstreams();
  auto repo = resolveRepository(config, "ghcr.io/org/app", "");
  REQUIRE(repo.isOk());
  CHECK(repo->key == "ghcr.io/org/app");
  CHECK(repo->remote == "org/app");

  auto hub = resolveRepository(config, "docker.io/nginx", "");
  REQUIRE(hub.isOk());
  CHECK(hub->key == "docker.io/library/nginx");
}

TEST_CASE("Routes: local namespaces are local, the rest goes to the default upstream", "[proxy]") {
  Config config = twoUpstreams();
  auto local = resolveRepository(config, "team/x/y", "");
  REQUIRE(local.isOk());
  CHECK(local->isLocal());
  CHECK(local->key == "team/x/y");

  auto bare = resolveRepository(config, "alpine", "");
  REQUIRE(bare.isOk());
  CHECK(bare->key == "docker.io/library/alpine");
  auto org = resolveRepository(config, "bitnami/redis", "");
  REQUIRE(org.isOk());
  CHECK(org->key == "docker.io/bitnami/redis");

  // Only a whole first component selects a local namespace.
  auto near = resolveRepository(config, "localx/app", "");
  REQUIRE(near.isOk());
  CHECK_FALSE(near->isLocal());

  config.upstreams[0].is_default = false;
  auto none = resolveRepository(config, "alpine", "");
  REQUIRE_FALSE(none.isOk());
  CHECK(none.status().code() == Code::kNotFound);
}
