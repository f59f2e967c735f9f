// Repository names, tags and references against the distribution spec's grammar.
#include "proxy/reference.h"

#include <catch2/catch.hpp>
#include <string>

using regcache::Code;
using regcache::proxy::isValidRepository;
using regcache::proxy::isValidRepositoryComponent;
using regcache::proxy::isValidTag;
using regcache::proxy::parseReference;

namespace {
const std::string kHex64(64, 'a');
}

TEST_CASE("isValidRepository: accepts names the spec's regex matches", "[oci][reference]") {
  auto name = GENERATE(as<std::string>{}, "a", "a/b", "a__b", "a--b", "a---b", "a.b-c_d/e",
                       "library/ubuntu", "0", "9a/8b/7c", "org/team/app.v2", "a_b.c-d__e",
                       "x/y/z/w/v", "abc123", std::string(255, 'a'));
  CAPTURE(name);
  CHECK(isValidRepository(name));
}

TEST_CASE("isValidRepository: refuses names outside the grammar or too long", "[oci][reference]") {
  auto name = GENERATE(as<std::string>{}, "", "A", "aB", "a/", "/a", "a//b", "a___b", "a..b", "-a",
                       "a-", ".a", "a.", "_a", "a_", "a._b", "a-.b", "a/-b", "a/b-", "a b", "a:b",
                       "a@b", "ä", "a\\b", "a/B", std::string(256, 'a'));
  CAPTURE(name);
  CHECK_FALSE(isValidRepository(name));
}

TEST_CASE("isValidRepository: the length limit counts the whole name", "[oci][reference]") {
  std::string ok = std::string(127, 'a') + "/" + std::string(127, 'b');  // 255
  CHECK(isValidRepository(ok));
  CHECK_FALSE(isValidRepository(ok + "c"));
}

TEST_CASE("isValidRepositoryComponent: one component, no slash", "[oci][reference]") {
  CHECK(isValidRepositoryComponent("local"));
  CHECK(isValidRepositoryComponent("my-team_1"));
  CHECK_FALSE(isValidRepositoryComponent("a/b"));
  CHECK_FALSE(isValidRepositoryComponent(""));
  CHECK_FALSE(isValidRepositoryComponent("Local"));
}

TEST_CASE("isValidTag: accepts up to 128 characters of the tag alphabet", "[oci][reference]") {
  auto tag = GENERATE(as<std::string>{}, "latest", "v1.2.3", "_", "a", "A", "9", "1.0-rc_1",
                      "UPPER.lower-_.", "_hidden", std::string(128, 'x'));
  CAPTURE(tag);
  CHECK(isValidTag(tag));
}

TEST_CASE("isValidTag: refuses empty, too long, bad start or bad characters", "[oci][reference]") {
  auto tag = GENERATE(as<std::string>{}, "", ".hidden", "-x", "a/b", "a:b", "a+b", "a b", "é",
                      std::string(129, 'x'), "sha256:" + std::string(64, 'a'));
  CAPTURE(tag);
  CHECK_FALSE(isValidTag(tag));
}

TEST_CASE("parseReference: a tag stays a tag", "[oci][reference]") {
  auto ref = parseReference("v1.0");
  REQUIRE(ref.isOk());
  CHECK_FALSE(ref->isDigest());
  CHECK(ref->tag == "v1.0");
  CHECK(ref->str() == "v1.0");
}

TEST_CASE("parseReference: a valid digest becomes a digest", "[oci][reference]") {
  auto sha256 = parseReference("sha256:" + kHex64);
  REQUIRE(sha256.isOk());
  CHECK(sha256->isDigest());
  CHECK(sha256->str() == "sha256:" + kHex64);
  CHECK(sha256->tag.empty());

  auto sha512 = parseReference("sha512:" + std::string(128, '0'));
  REQUIRE(sha512.isOk());
  CHECK(sha512->isDigest());
}

TEST_CASE("parseReference: anything with ':' that is not a valid digest is 'digest invalid'",
          "[oci][reference]") {
  auto text = GENERATE(as<std::string>{}, "sha256:abc", "sha256:" + std::string(64, 'A'),
                       "md5:" + std::string(32, 'a'), "sha256:" + std::string(65, 'a'), ":",
                       "latest:", "sha512:" + kHex64);
  CAPTURE(text);
  auto ref = parseReference(text);
  REQUIRE_FALSE(ref.isOk());
  CHECK(ref.status().code() == Code::kInvalidArgument);
  CHECK(ref.status().message().rfind("digest invalid", 0) == 0);
}

TEST_CASE("parseReference: an invalid tag is refused", "[oci][reference]") {
  auto text = GENERATE(as<std::string>{}, "", ".x", "-x", "a/b", std::string(129, 'a'));
  CAPTURE(text);
  auto ref = parseReference(text);
  REQUIRE_FALSE(ref.isOk());
  CHECK(ref.status().code() == Code::kInvalidArgument);
  CHECK(ref.status().message().rfind("tag invalid", 0) == 0);
}
