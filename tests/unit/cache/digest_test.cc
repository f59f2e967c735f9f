// Tests for digest parsing and hashing.
#include "cache/digest.h"

#include <catch2/catch.hpp>
#include <string>

namespace regcache::cache {
namespace {

const std::string kEmptySha256 =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const std::string kAbcSha256 =
    "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const std::string kAbcSha512 =
    "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
    "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";

TEST_CASE("Digest: parses a sha256 digest and prints it back", "[cache][digest]") {
  Result<Digest> d = Digest::parse(kAbcSha256);
  REQUIRE(d.isOk());
  CHECK(d->algorithm() == DigestAlgorithm::kSha256);
  CHECK(d->algorithmName() == "sha256");
  CHECK(d->hex() == kAbcSha256.substr(7));
  CHECK(d->str() == kAbcSha256);
}

TEST_CASE("Digest: parses a sha512 digest and prints it back", "[cache][digest]") {
  Result<Digest> d = Digest::parse(kAbcSha512);
  REQUIRE(d.isOk());
  CHECK(d->algorithm() == DigestAlgorithm::kSha512);
  CHECK(d->algorithmName() == "sha512");
  CHECK(d->hex().size() == 128);
  CHECK(d->str() == kAbcSha512);
}

TEST_CASE("Digest: rejects malformed digests as invalid argument", "[cache][digest]") {
  const std::string hex64 = kAbcSha256.substr(7);
  std::string upper = kAbcSha256;
  upper[10] = 'B';
  std::string text;
  SECTION("uppercase hex") { text = upper; }
  SECTION("too short") { text = "sha256:" + hex64.substr(1); }
  SECTION("too long") { text = kAbcSha256 + "0"; }
  SECTION("sha512 prefix with sha256 length") { text = "sha512:" + hex64; }
  SECTION("unknown algorithm") { text = "sha384:" + hex64; }
  SECTION("uppercase algorithm") { text = "SHA256:" + hex64; }
  SECTION("missing colon") { text = "sha256" + hex64; }
  SECTION("non-hex digit") { text = "sha256:g" + hex64.substr(1); }
  SECTION("bare hex") { text = hex64; }
  SECTION("empty") { text = ""; }
  Result<Digest> d = Digest::parse(text);
  REQUIRE_FALSE(d.isOk());
  CHECK(d.status().code() == Code::kInvalidArgument);
}

TEST_CASE("Digest: equal when algorithm and hex match", "[cache][digest]") {
  CHECK(Digest::parse(kAbcSha256).value() == Digest::parse(kAbcSha256).value());
  CHECK_FALSE(Digest::parse(kAbcSha256).value() == Digest::parse(kEmptySha256).value());
}

TEST_CASE("Hasher: matches the standard test vectors", "[cache][digest]") {
  CHECK(digestOf("").str() == kEmptySha256);
  CHECK(digestOf("abc").str() == kAbcSha256);
  CHECK(digestOf("abc", DigestAlgorithm::kSha512).str() == kAbcSha512);
}

TEST_CASE("Hasher: hashing in pieces equals hashing at once", "[cache][digest]") {
  std::string data;
  for (int i = 0; i < 200000; ++i) {
    data.push_back(static_cast<char>((i * 7919) % 251));
  }
  for (DigestAlgorithm algorithm : {DigestAlgorithm::kSha256, DigestAlgorithm::kSha512}) {
    Hasher hasher(algorithm);
    size_t pos = 0;
    for (size_t step = 1; pos < data.size(); step = step * 3 + 1) {
      size_t n = std::min(step % 9001, data.size() - pos);
      hasher.update(data.data() + pos, n);
      pos += n;
    }
    hasher.update("");
    CHECK(hasher.finish() == digestOf(data, algorithm));
  }
}

TEST_CASE("Hasher: a moved hasher keeps its state", "[cache][digest]") {
  Hasher first;
  first.update("a");
  Hasher second(std::move(first));
  second.update("b");
  Hasher third;
  third = std::move(second);
  third.update("c");
  CHECK(third.algorithm() == DigestAlgorithm::kSha256);
  CHECK(third.finish().str() == kAbcSha256);
}

}  // namespace
}  // namespace regcache::cache
