// Tests for command-line image references: name, tag and digest, and the repository routed to.
#include "proxy/image_ref.h"

#include <catch2/catch.hpp>

namespace regcache::proxy {
namespace {

const std::string kDigest = "sha256:" + std::string(64, 'a');

Config twoUpstreams() {
  Config config = defaultConfig();  // docker.io, the default
  UpstreamConfig ghcr;
  ghcr.name = "ghcr.io";
  ghcr.url = "https://ghcr.io";
  config.upstreams.push_back(ghcr);
  UpstreamConfig ported;
  ported.name = "127.0.0.1:5001";
  ported.url = "http://127.0.0.1:5001";
  config.upstreams.push_back(ported);
  return config;
}

TEST_CASE("ImageRef: a bare name is the default upstream's, with library/ and latest",
          "[proxy][image_ref]") {
  Config config = twoUpstreams();
  auto ref = parseImageRef(config, "alpine");
  REQUIRE(ref.isOk());
  CHECK(ref->repository.key == "docker.io/library/alpine");
  CHECK(ref->repository.remote == "library/alpine");
  CHECK(ref->reference.tag == "latest");
  CHECK(ref->str() == "docker.io/library/alpine:latest");
}

TEST_CASE("ImageRef: a first component naming an upstream selects it", "[proxy][image_ref]") {
  Config config = twoUpstreams();
  auto full = parseImageRef(config, "docker.io/library/alpine:3.19");
  REQUIRE(full.isOk());
  CHECK(full->str() == "docker.io/library/alpine:3.19");

  auto ghcr = parseImageRef(config, "ghcr.io/org/app:v1");
  REQUIRE(ghcr.isOk());
  CHECK(ghcr->repository.upstream->name == "ghcr.io");
  CHECK(ghcr->repository.remote == "org/app");
  CHECK(ghcr->reference.tag == "v1");

  auto ported = parseImageRef(config, "127.0.0.1:5001/team/tool");
  REQUIRE(ported.isOk());
  CHECK(ported->repository.key == "127.0.0.1:5001/team/tool");
  CHECK(ported->reference.tag == "latest");
}

TEST_CASE("ImageRef: other names go to the default upstream", "[proxy][image_ref]") {
  Config config = twoUpstreams();
  auto ref = parseImageRef(config, "bitnami/redis:7");
  REQUIRE(ref.isOk());
  CHECK(ref->repository.key == "docker.io/bitnami/redis");
  CHECK(ref->reference.tag == "7");
}

TEST_CASE("ImageRef: a local namespace names a local repository", "[proxy][image_ref]") {
  Config config = twoUpstreams();
  auto ref = parseImageRef(config, "local/app:v2");
  REQUIRE(ref.isOk());
  CHECK(ref->repository.isLocal());
  CHECK(ref->str() == "local/app:v2");
}

TEST_CASE("ImageRef: a digest wins over a tag", "[proxy][image_ref]") {
  Config config = twoUpstreams();
  auto by_digest = parseImageRef(config, "ghcr.io/org/app@" + kDigest);
  REQUIRE(by_digest.isOk());
  CHECK(by_digest->reference.isDigest());
  CHECK(by_digest->str() == "ghcr.io/org/app@" + kDigest);

  auto both = parseImageRef(config, "ghcr.io/org/app:v1@" + kDigest);
  REQUIRE(both.isOk());
  CHECK(both->reference.isDigest());
}

TEST_CASE("ImageRef: malformed references are refused", "[proxy][image_ref]") {
  Config config = twoUpstreams();
  for (const char* bad : {"", ":tag", "Alpine", "alpine:", "alpine:bad tag", "alpine@sha256:12",
                          "docker.io/", "a//b", "alpine:-x"}) {
    INFO(bad);
    CHECK(parseImageRef(config, bad).status().code() == Code::kInvalidArgument);
  }
}

TEST_CASE("ImageRef: without a default upstream an unrouted name is unknown",
          "[proxy][image_ref]") {
  Config config = twoUpstreams();
  config.upstreams[0].is_default = false;
  CHECK(parseImageRef(config, "alpine").status().code() == Code::kNotFound);
  CHECK(parseImageRef(config, "ghcr.io/org/app").isOk());
}

}  // namespace
}  // namespace regcache::proxy
