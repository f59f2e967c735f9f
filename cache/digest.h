// Content digests (`algorithm:hex`) and the incremental hasher that verifies blobs as they stream.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "cache/status.h"

namespace regcache::cache {

enum class DigestAlgorithm { kSha256, kSha512 };

// A validated digest. Only sha256 and sha512 are accepted, with lowercase hex of the exact
// length (64 or 128), as the image spec's registered algorithms require.
class Digest {
 public:
  // Parses "sha256:<64 hex>" or "sha512:<128 hex>". Anything else is kInvalidArgument.
  static Result<Digest> parse(std::string_view text);

  DigestAlgorithm algorithm() const { return algorithm_; }
  std::string_view algorithmName() const;
  // Lowercase hex, without the algorithm prefix.
  const std::string& hex() const { return hex_; }
  // "sha256:abcd...".
  std::string str() const;

  bool operator==(const Digest& other) const = default;

 private:
  friend class Hasher;  // builds a Digest from bytes it has hashed, without re-validating
  Digest(DigestAlgorithm a, std::string hex) : algorithm_(a), hex_(std::move(hex)) {}
  DigestAlgorithm algorithm_ = DigestAlgorithm::kSha256;
  std::string hex_;
};

// Incremental hash over streamed bytes (OpenSSL EVP). Not thread-safe; movable.
class Hasher {
 public:
  explicit Hasher(DigestAlgorithm algorithm = DigestAlgorithm::kSha256);
  ~Hasher();
  Hasher(Hasher&&) noexcept;
  Hasher& operator=(Hasher&&) noexcept;
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  void update(const void* data, size_t len);
  void update(std::string_view s) { update(s.data(), s.size()); }
  // Finishes the hash; the Hasher must not be updated afterwards.
  Digest finish();

  DigestAlgorithm algorithm() const { return algorithm_; }

 private:
  DigestAlgorithm algorithm_;
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

// Digest of a whole buffer with the given algorithm.
Digest digestOf(std::string_view data, DigestAlgorithm algorithm = DigestAlgorithm::kSha256);

}  // namespace regcache::cache
