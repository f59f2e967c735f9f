// Fuzzes manifest validation: OCI image manifests and indexes, Docker schema2 manifests and
// manifest lists, and the schema 1 refusal.
//
// Input: the first byte picks the Content-Type the manifest is pushed with (see
// kContentTypes); the rest is the body.
#include <simdjson.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cache/digest.h"
#include "proxy/manifest.h"
#include "tests/fuzz/fuzz_check.h"

namespace regcache::proxy {
namespace {

constexpr std::array<std::string_view, 10> kContentTypes = {
    "",
    kOciManifest,
    kOciIndex,
    kDockerManifest,
    kDockerManifestList,
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/json",
    "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
    "APPLICATION/VND.OCI.IMAGE.INDEX.V1+JSON",
    "application/vnd.oci.artifact.manifest.v1+json",
};

// What the manifest's media type must be when a Content-Type was sent: the header without
// parameters, lowercased.
std::string bare(std::string_view content_type) {
  std::string_view s = content_type.substr(0, content_type.find(';'));
  while (!s.empty() && s.back() == ' ') {
    s.remove_suffix(1);
  }
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

bool isJsonObject(const std::string& json) {
  simdjson::dom::parser parser;
  simdjson::dom::object object;
  return parser.parse(json).get(object) == simdjson::SUCCESS;
}

void checkDescriptor(const Descriptor& d) {
  FUZZ_CHECK(d.media_type.find('/') != std::string::npos);
  Result<cache::Digest> digest = cache::Digest::parse(d.digest);
  FUZZ_CHECK(digest.isOk() && digest->str() == d.digest);
  FUZZ_CHECK(d.annotations_json.empty() || isJsonObject(d.annotations_json));
}

void checkManifest(std::string_view bytes, std::string_view content_type) {
  Result<Manifest> manifest = parseManifest(bytes, content_type);
  if (!manifest) {
    Code code = manifest.status().code();
    FUZZ_CHECK(code == Code::kInvalidArgument || code == Code::kTooLarge);
    FUZZ_CHECK(!manifest.status().message().empty());
    return;
  }
  const Manifest& m = *manifest;
  FUZZ_CHECK(bytes.size() <= kMaxManifestBytes);
  FUZZ_CHECK(isManifestMediaType(m.media_type));
  FUZZ_CHECK(m.is_index == isIndexMediaType(m.media_type));
  if (!content_type.empty()) {
    FUZZ_CHECK(m.media_type == bare(content_type));
  }
  if (m.is_index) {
    FUZZ_CHECK(!m.config.has_value() && m.layers.empty());
  } else {
    FUZZ_CHECK(m.config.has_value() && m.manifests.empty());
    checkDescriptor(*m.config);
  }
  for (const Descriptor& d : m.layers) {
    checkDescriptor(d);
  }
  for (const Descriptor& d : m.manifests) {
    checkDescriptor(d);
  }
  if (m.subject) {
    checkDescriptor(*m.subject);
  }
  FUZZ_CHECK(m.annotations_json.empty() || isJsonObject(m.annotations_json));

  // Validation is a pure function of its input.
  Result<Manifest> again = parseManifest(bytes, content_type);
  FUZZ_CHECK(again.isOk() && again->media_type == m.media_type &&
             again->layers.size() == m.layers.size() &&
             again->manifests.size() == m.manifests.size());
}

}  // namespace
}  // namespace regcache::proxy

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using regcache::proxy::kContentTypes;
  if (size == 0) {
    return 0;
  }
  std::string_view content_type = kContentTypes[data[0] % kContentTypes.size()];
  std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  regcache::proxy::checkManifest(body, content_type);
  return 0;
}
