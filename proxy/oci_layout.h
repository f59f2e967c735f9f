// The OCI image layout (image-spec image-layout.md) as export writes it and import reads it:
// the `oci-layout` marker, `index.json` with one descriptor per image, and blob entry names.
//
// Each image's descriptor carries two annotations: `org.opencontainers.image.ref.name`, the
// full reference ("docker.io/library/alpine:3.19", which skopeo's oci-archive: transport
// accepts as the image name), and `io.regcache.repository`, the repository key it was cached
// under, so import restores it under its original upstream and name.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cache/digest.h"
#include "cache/status.h"

namespace regcache::proxy {

inline constexpr std::string_view kOciLayoutName = "oci-layout";
inline constexpr std::string_view kLayoutIndexName = "index.json";
inline constexpr std::string_view kOciLayoutContent = "{\"imageLayoutVersion\":\"1.0.0\"}";
inline constexpr std::string_view kRefNameAnnotation = "org.opencontainers.image.ref.name";
inline constexpr std::string_view kRepositoryAnnotation = "io.regcache.repository";
// index.json is read into memory: bound it (about 40,000 images).
inline constexpr size_t kMaxLayoutIndexBytes = 16 * 1024 * 1024;

// One image of a layout: a top-level descriptor of index.json.
struct LayoutImage {
  std::string media_type;
  std::string digest;
  uint64_t size = 0;
  std::string ref_name;    // empty when the descriptor has none
  std::string repository;  // empty when the descriptor has none
};

// index.json for `images`, in order (an OCI image index, schemaVersion 2).
std::string layoutIndexJson(const std::vector<LayoutImage>& images);

// Parses index.json: an image index whose descriptors become LayoutImages.
// kInvalidArgument with the reason when it is not one.
Result<std::vector<LayoutImage>> parseLayoutIndex(std::string_view json);

// Checks the oci-layout file: a JSON object whose imageLayoutVersion is 1.x.
Status checkOciLayout(std::string_view json);

// "blobs/<alg>/<hex>".
std::string blobEntryName(const cache::Digest& digest);
// The digest a "blobs/<alg>/<hex>" entry name stands for (a leading "./" is allowed).
// kInvalidArgument for any other name.
Result<cache::Digest> digestOfEntryName(std::string_view name);

// `s` as a JSON string literal, quotes included.
std::string jsonString(std::string_view s);

}  // namespace regcache::proxy
