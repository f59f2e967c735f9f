// Digest parsing and the OpenSSL-backed incremental hasher.
#include "cache/digest.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <utility>

namespace regcache::cache {

namespace {

constexpr std::string_view kSha256Prefix = "sha256:";
constexpr std::string_view kSha512Prefix = "sha512:";

bool isLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

// The EVP_MD for an algorithm, fetched once per process. OpenSSL 3 does an implicit provider
// lookup on every EVP_DigestInit_ex given EVP_sha256(); an explicitly fetched EVP_MD skips it,
// which matters when many small manifests are hashed. The handles live until exit on purpose.
const EVP_MD* evpDigest(DigestAlgorithm algorithm) {
  static const EVP_MD* sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  static const EVP_MD* sha512 = EVP_MD_fetch(nullptr, "SHA512", nullptr);
  const EVP_MD* md = algorithm == DigestAlgorithm::kSha256 ? sha256 : sha512;
  if (md == nullptr) {
    // No default provider: the process cannot verify any content, so there is nothing to serve.
    std::abort();
  }
  return md;
}

std::string toHex(const unsigned char* bytes, size_t len) {
  static constexpr char kHexDigits[] = "0123456789abcdef";
  std::string hex(len * 2, '\0');
  for (size_t i = 0; i < len; ++i) {
    hex[2 * i] = kHexDigits[bytes[i] >> 4];
    hex[2 * i + 1] = kHexDigits[bytes[i] & 0x0f];
  }
  return hex;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Digest
// ---------------------------------------------------------------------------------------------

Result<Digest> Digest::parse(std::string_view text) {
  DigestAlgorithm algorithm;
  std::string_view hex;
  if (text.starts_with(kSha256Prefix)) {
    algorithm = DigestAlgorithm::kSha256;
    hex = text.substr(kSha256Prefix.size());
    if (hex.size() != 64) {
      return invalidArgument("sha256 digest needs 64 hex digits");
    }
  } else if (text.starts_with(kSha512Prefix)) {
    algorithm = DigestAlgorithm::kSha512;
    hex = text.substr(kSha512Prefix.size());
    if (hex.size() != 128) {
      return invalidArgument("sha512 digest needs 128 hex digits");
    }
  } else {
    return invalidArgument("digest must be sha256:<hex> or sha512:<hex>");
  }

  if (!isLowerHex(hex)) {
    return invalidArgument("digest hex must be lowercase [0-9a-f]");
  }
  return Digest(algorithm, std::string(hex));
}

std::string_view Digest::algorithmName() const {
  return algorithm_ == DigestAlgorithm::kSha256 ? "sha256" : "sha512";
}

std::string Digest::str() const {
  std::string out;
  std::string_view name = algorithmName();
  out.reserve(name.size() + 1 + hex_.size());
  out.append(name).append(1, ':').append(hex_);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Hasher
// ---------------------------------------------------------------------------------------------

struct Hasher::Ctx {
  EVP_MD_CTX* md_ctx = nullptr;
  ~Ctx() { EVP_MD_CTX_free(md_ctx); }
};

Hasher::Hasher(DigestAlgorithm algorithm) : algorithm_(algorithm), ctx_(std::make_unique<Ctx>()) {
  ctx_->md_ctx = EVP_MD_CTX_new();
  // Both fail only when memory is exhausted; a Hasher has no way to report it, and a half-made
  // one would silently accept unverified bytes.
  if (ctx_->md_ctx == nullptr ||
      EVP_DigestInit_ex(ctx_->md_ctx, evpDigest(algorithm), nullptr) != 1) {
    std::abort();
  }
}

Hasher::~Hasher() = default;
Hasher::Hasher(Hasher&&) noexcept = default;
Hasher& Hasher::operator=(Hasher&&) noexcept = default;

void Hasher::update(const void* data, size_t len) {
  if (len == 0) {
    return;
  }
  EVP_DigestUpdate(ctx_->md_ctx, data, len);
}

Digest Hasher::finish() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_->md_ctx, md, &len);
  return Digest(algorithm_, toHex(md, len));
}

Digest digestOf(std::string_view data, DigestAlgorithm algorithm) {
  Hasher hasher(algorithm);
  hasher.update(data);
  return hasher.finish();
}

}  // namespace regcache::cache
