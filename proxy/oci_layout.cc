// The image layout's small files: index.json written by hand, read back with the manifest
// parser (it is an image index) plus a look at each descriptor's annotations.
#include "proxy/oci_layout.h"

#include <simdjson.h>

#include <cstdio>

#include "proxy/manifest.h"

namespace regcache::proxy {

namespace {

// The string value of `key` in an annotations object (minified JSON), or empty.
std::string annotation(std::string_view annotations_json, std::string_view key) {
  if (annotations_json.empty()) return {};
  simdjson::dom::parser parser;
  simdjson::dom::object object;
  if (parser.parse(annotations_json.data(), annotations_json.size()).get(object) !=
      simdjson::SUCCESS) {
    return {};
  }
  std::string_view value;
  if (object[key].get(value) != simdjson::SUCCESS) return {};
  return std::string(value);
}

std::string descriptorJson(const LayoutImage& image) {
  std::string out = "{\"mediaType\":" + jsonString(image.media_type) +
                    ",\"digest\":" + jsonString(image.digest) +
                    ",\"size\":" + std::to_string(image.size);
  std::string annotations;
  if (!image.ref_name.empty()) {
    annotations += jsonString(kRefNameAnnotation) + ":" + jsonString(image.ref_name);
  }
  if (!image.repository.empty()) {
    if (!annotations.empty()) annotations += ",";
    annotations += jsonString(kRepositoryAnnotation) + ":" + jsonString(image.repository);
  }
  if (!annotations.empty()) out += ",\"annotations\":{" + annotations + "}";
  return out + "}";
}

}  // namespace

std::string jsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escape[8];
      std::snprintf(escape, sizeof escape, "\\u%04x", static_cast<unsigned char>(c));
      out += escape;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string layoutIndexJson(const std::vector<LayoutImage>& images) {
  std::string out =
      "{\"schemaVersion\":2,\"mediaType\":" + jsonString(kOciIndex) + ",\"manifests\":[";
  for (size_t i = 0; i < images.size(); ++i) {
    if (i > 0) out += ",";
    out += descriptorJson(images[i]);
  }
  return out + "]}\n";
}

Result<std::vector<LayoutImage>> parseLayoutIndex(std::string_view json) {
  auto index = parseManifest(json, kOciIndex);
  if (!index) return invalidArgument("index.json: " + index.status().message());
  if (!index->is_index) return invalidArgument("index.json: not an image index");
  std::vector<LayoutImage> images;
  for (const auto& d : index->manifests) {
    images.push_back(LayoutImage{d.media_type, d.digest, d.size,
                                 annotation(d.annotations_json, kRefNameAnnotation),
                                 annotation(d.annotations_json, kRepositoryAnnotation)});
  }
  return images;
}

Status checkOciLayout(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::dom::object object;
  if (parser.parse(json.data(), json.size()).get(object) != simdjson::SUCCESS) {
    return invalidArgument("oci-layout: not a JSON object");
  }
  std::string_view version;
  if (object["imageLayoutVersion"].get(version) != simdjson::SUCCESS) {
    return invalidArgument("oci-layout: no imageLayoutVersion");
  }
  if (!version.starts_with("1.")) {
    return invalidArgument("oci-layout: unsupported imageLayoutVersion " + std::string(version));
  }
  return Status::ok();
}

std::string blobEntryName(const cache::Digest& digest) {
  return "blobs/" + std::string(digest.algorithmName()) + "/" + digest.hex();
}

Result<cache::Digest> digestOfEntryName(std::string_view name) {
  if (name.starts_with("./")) name.remove_prefix(2);
  if (!name.starts_with("blobs/")) return invalidArgument("not a blob entry: " + std::string(name));
  name.remove_prefix(6);
  size_t slash = name.find('/');
  if (slash == std::string_view::npos) {
    return invalidArgument("not a blob entry: " + std::string(name));
  }
  std::string text = std::string(name.substr(0, slash)) + ":" + std::string(name.substr(slash + 1));
  return cache::Digest::parse(text);
}

}  // namespace regcache::proxy
