// Manifest parsing and validation (simdjson): OCI image manifest and index, Docker schema2
// manifest and manifest list.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/status.h"

namespace regcache::proxy {

inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr size_t kMaxManifestBytes = 4 * 1024 * 1024;

// True for the four manifest media types above.
bool isManifestMediaType(std::string_view media_type);
// True for the two index types (OCI index, Docker manifest list).
bool isIndexMediaType(std::string_view media_type);

struct Platform {
  std::string os;
  std::string architecture;
  std::string variant;
};

struct Descriptor {
  std::string media_type;
  std::string digest;  // validated: sha256 or sha512
  uint64_t size = 0;
  std::string artifact_type;
  std::optional<Platform> platform;
  std::string annotations_json;  // raw JSON of "annotations", or empty
};

struct Manifest {
  std::string media_type;  // resolved (body's mediaType, else Content-Type)
  bool is_index = false;
  std::optional<Descriptor> config;   // image manifests
  std::vector<Descriptor> layers;     // image manifests: blobs
  std::vector<Descriptor> manifests;  // indexes: child manifests
  std::optional<Descriptor> subject;
  // For the referrers API: artifactType, else config.mediaType (image manifests), else empty.
  std::string artifact_type;
  std::string annotations_json;  // raw JSON of top-level "annotations", or empty
};

// Parses and validates `bytes` pushed with `content_type` (may be empty).
//  - the JSON must be an object with schemaVersion 2;
//  - the media type is the body's `mediaType` if present, else `content_type`; when both are
//    present they must match; it must be one of the four supported types;
//  - every descriptor needs a media type string (RFC 6838 `type/subtype` syntax: the image spec
//    forbids erroring on types unknown to us), a valid digest and an integer size >= 0;
//    an image manifest needs `config` and `layers`, an index needs `manifests`;
//  - platform, when present, needs string os and architecture; annotations must map strings to
//    strings; a known key that appears twice in one object is refused;
//  - Docker schema 1 (schemaVersion 1 or its media types) is refused with a message saying so.
// Errors are kInvalidArgument with a message saying what is wrong (MANIFEST_INVALID), or
// kTooLarge over kMaxManifestBytes.
Result<Manifest> parseManifest(std::string_view bytes, std::string_view content_type);

}  // namespace regcache::proxy
