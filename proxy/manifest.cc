// Manifest validation with simdjson's DOM: one pass over each object's members, dispatching on
// the keys we know, so every manifest costs a parse plus a walk of its descriptors.
#include "proxy/manifest.h"

#include <simdjson.h>

#include <array>
#include <span>

#include "cache/digest.h"

namespace regcache::proxy {

namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

constexpr std::string_view kSchema1 = "application/vnd.docker.distribution.manifest.v1+json";
constexpr std::string_view kSchema1Signed =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

Status fieldError(std::string_view path, std::string_view what) {
  return invalidArgument(std::string(path) + ": " + std::string(what));
}

std::string join(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : std::string(path) + "." + std::string(key);
}

std::string indexed(std::string_view path, size_t i) {
  return std::string(path) + "[" + std::to_string(i) + "]";
}

// ---------------------------------------------------------------------------------------------
// Media types
// ---------------------------------------------------------------------------------------------

bool isAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool isRestrictedNameChar(char c) {
  return isAlnum(c) || std::string_view("!#$&-^_.+").find(c) != std::string_view::npos;
}

// RFC 6838 section 4.2: restricted-name = alnum followed by up to 126 restricted-name-chars.
bool isRestrictedName(std::string_view s) {
  if (s.empty() || s.size() > 127 || !isAlnum(s[0])) {
    return false;
  }
  for (char c : s) {
    if (!isRestrictedNameChar(c)) {
      return false;
    }
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// `type/subtype`, ignoring any parameters after ';'.
bool isMediaTypeSyntax(std::string_view s) {
  s = trim(s.substr(0, s.find(';')));
  size_t slash = s.find('/');
  return slash != std::string_view::npos && isRestrictedName(s.substr(0, slash)) &&
         isRestrictedName(s.substr(slash + 1));
}

bool isSchema1(std::string_view media_type) {
  return media_type == kSchema1 || media_type == kSchema1Signed;
}

Status schema1Error() {
  return invalidArgument(
      "Docker schema 1 manifests are not supported; push an OCI or Docker schema 2 manifest");
}

// The Content-Type without parameters, lowercased (media types compare case-insensitively).
std::string bareContentType(std::string_view content_type) {
  std::string out(trim(content_type.substr(0, content_type.find(';'))));
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Members of an object
// ---------------------------------------------------------------------------------------------

struct Field {
  std::string_view key;
  std::optional<element> value;
};

// Fills `fields` from the members of `value`, which must be an object. A key we know that
// appears twice is refused: JSON parsers disagree on which copy wins, and a manifest that means
// different things to us and to the client that pulls it is a security hole.
Status collectFields(element value, std::span<Field> fields, std::string_view path) {
  simdjson::dom::object object;
  if (value.get(object) != simdjson::SUCCESS) {
    return fieldError(path.empty() ? "manifest" : path, "must be a JSON object");
  }
  for (simdjson::dom::key_value_pair member : object) {
    for (Field& field : fields) {
      if (field.key != member.key) {
        continue;
      }
      if (field.value) {
        return fieldError(join(path, field.key), "appears twice");
      }
      field.value = member.value;
    }
  }
  return Status::ok();
}

Result<std::string> stringValue(element value, std::string_view path) {
  std::string_view s;
  if (value.get(s) != simdjson::SUCCESS) {
    return fieldError(path, "must be a string");
  }
  return std::string(s);
}

Result<std::string> mediaTypeValue(element value, std::string_view path) {
  Result<std::string> s = stringValue(value, path);
  if (s && !isMediaTypeSyntax(s.value())) {
    return fieldError(path, "is not a media type (RFC 6838 type/subtype)");
  }
  return s;
}

// Annotations are a string-to-string map; kept as minified JSON for the referrers API.
Result<std::string> annotationsValue(element value, std::string_view path) {
  simdjson::dom::object object;
  if (value.get(object) != simdjson::SUCCESS) {
    return fieldError(path, "must be an object of strings");
  }
  for (simdjson::dom::key_value_pair member : object) {
    if (!member.value.is_string()) {
      return fieldError(join(path, member.key), "must be a string");
    }
  }
  return simdjson::minify(value);
}

// ---------------------------------------------------------------------------------------------
// Descriptors
// ---------------------------------------------------------------------------------------------

Result<uint64_t> sizeValue(element value, std::string_view path) {
  // simdjson types integers above INT64_MAX as UINT64: out of the spec's int64 range.
  int64_t size = 0;
  if (value.type() != element_type::INT64 || value.get(size) != simdjson::SUCCESS) {
    return fieldError(path, "must be an integer");
  }
  if (size < 0) {
    return fieldError(path, "must not be negative");
  }
  return static_cast<uint64_t>(size);
}

Result<Platform> platformValue(element value, std::string_view path) {
  enum { kOs, kArchitecture, kVariant };
  std::array<Field, 3> f{{{"os", {}}, {"architecture", {}}, {"variant", {}}}};
  if (Status s = collectFields(value, f, path); !s) {
    return s;
  }
  if (!f[kOs].value || !f[kArchitecture].value) {
    return fieldError(path, "needs os and architecture");
  }

  Platform platform;
  Result<std::string> os = stringValue(*f[kOs].value, join(path, "os"));
  Result<std::string> arch = stringValue(*f[kArchitecture].value, join(path, "architecture"));
  if (!os || !arch) {
    return os ? arch.status() : os.status();
  }
  platform.os = std::move(os.value());
  platform.architecture = std::move(arch.value());
  if (f[kVariant].value) {
    Result<std::string> variant = stringValue(*f[kVariant].value, join(path, "variant"));
    if (!variant) {
      return variant.status();
    }
    platform.variant = std::move(variant.value());
  }
  return platform;
}

// The optional members of a descriptor: artifactType, platform, annotations.
Status optionalDescriptorFields(std::span<Field> f, Descriptor& d, std::string_view path) {
  if (f[0].value) {
    Result<std::string> at = mediaTypeValue(*f[0].value, join(path, "artifactType"));
    if (!at) {
      return at.status();
    }
    d.artifact_type = std::move(at.value());
  }
  if (f[1].value) {
    Result<Platform> platform = platformValue(*f[1].value, join(path, "platform"));
    if (!platform) {
      return platform.status();
    }
    d.platform = std::move(platform.value());
  }
  if (f[2].value) {
    Result<std::string> annotations = annotationsValue(*f[2].value, join(path, "annotations"));
    if (!annotations) {
      return annotations.status();
    }
    d.annotations_json = std::move(annotations.value());
  }
  return Status::ok();
}

Result<Descriptor> descriptorValue(element value, std::string_view path) {
  enum { kMediaType, kDigest, kSize, kArtifactType, kPlatform, kAnnotations };
  std::array<Field, 6> f{{{"mediaType", {}},
                          {"digest", {}},
                          {"size", {}},
                          {"artifactType", {}},
                          {"platform", {}},
                          {"annotations", {}}}};
  if (Status s = collectFields(value, f, path); !s) {
    return s;
  }
  for (int required : {kMediaType, kDigest, kSize}) {
    if (!f[required].value) {
      return fieldError(join(path, f[required].key), "is required");
    }
  }

  Descriptor d;
  Result<std::string> media_type = mediaTypeValue(*f[kMediaType].value, join(path, "mediaType"));
  if (!media_type) {
    return media_type.status();
  }
  d.media_type = std::move(media_type.value());
  Result<std::string> digest = stringValue(*f[kDigest].value, join(path, "digest"));
  if (!digest) {
    return digest.status();
  }
  if (Result<cache::Digest> parsed = cache::Digest::parse(digest.value()); !parsed) {
    return fieldError(join(path, "digest"), "digest invalid: " + parsed.status().message());
  }
  d.digest = std::move(digest.value());
  Result<uint64_t> size = sizeValue(*f[kSize].value, join(path, "size"));
  if (!size) {
    return size.status();
  }
  d.size = size.value();
  if (Status s = optionalDescriptorFields(std::span(f).subspan(kArtifactType), d, path); !s) {
    return s;
  }
  return d;
}

Result<std::vector<Descriptor>> descriptorArray(element value, std::string_view path) {
  simdjson::dom::array array;
  if (value.get(array) != simdjson::SUCCESS) {
    return fieldError(path, "must be an array of descriptors");
  }
  std::vector<Descriptor> out;
  out.reserve(array.size());
  for (element item : array) {
    Result<Descriptor> d = descriptorValue(item, indexed(path, out.size()));
    if (!d) {
      return d.status();
    }
    out.push_back(std::move(d.value()));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The manifest
// ---------------------------------------------------------------------------------------------

enum TopKey {
  kSchemaVersion,
  kMediaType,
  kArtifactType,
  kConfig,
  kLayers,
  kManifests,
  kSubject,
  kAnnotations,
  kTopKeys
};

using TopFields = std::array<Field, kTopKeys>;

Status checkSchemaVersion(const TopFields& f) {
  if (!f[kSchemaVersion].value) {
    return invalidArgument("schemaVersion: is required");
  }
  element v = *f[kSchemaVersion].value;
  int64_t version = 0;
  if (v.type() != element_type::INT64 || v.get(version) != simdjson::SUCCESS) {
    return invalidArgument("schemaVersion: must be an integer");
  }
  if (version == 1) {
    return schema1Error();
  }
  if (version != 2) {
    return invalidArgument("schemaVersion: must be 2");
  }
  return Status::ok();
}

// The body's mediaType, else the Content-Type; both present must agree.
Result<std::string> resolveMediaType(const TopFields& f, std::string_view content_type) {
  std::string header = bareContentType(content_type);
  std::string body;
  if (f[kMediaType].value) {
    Result<std::string> s = stringValue(*f[kMediaType].value, "mediaType");
    if (!s) {
      return s.status();
    }
    body = std::move(s.value());
  }
  if (isSchema1(body)) {
    return schema1Error();
  }
  if (!body.empty() && !header.empty() && body != header) {
    return invalidArgument("mediaType \"" + body + "\" does not match Content-Type \"" + header +
                           "\"");
  }
  std::string resolved = body.empty() ? header : body;
  if (resolved.empty()) {
    return invalidArgument("manifest has no mediaType and no Content-Type");
  }
  if (!isManifestMediaType(resolved)) {
    return invalidArgument("unsupported manifest media type \"" + resolved + "\"");
  }
  return resolved;
}

Status parseImageParts(const TopFields& f, Manifest& m) {
  if (!f[kConfig].value) {
    return invalidArgument("config: is required in an image manifest");
  }
  if (!f[kLayers].value) {
    return invalidArgument("layers: is required in an image manifest");
  }
  Result<Descriptor> config = descriptorValue(*f[kConfig].value, "config");
  if (!config) {
    return config.status();
  }
  m.config = std::move(config.value());
  Result<std::vector<Descriptor>> layers = descriptorArray(*f[kLayers].value, "layers");
  if (!layers) {
    return layers.status();
  }
  m.layers = std::move(layers.value());
  return Status::ok();
}

Status parseIndexParts(const TopFields& f, Manifest& m) {
  if (!f[kManifests].value) {
    return invalidArgument("manifests: is required in an index");
  }
  Result<std::vector<Descriptor>> manifests = descriptorArray(*f[kManifests].value, "manifests");
  if (!manifests) {
    return manifests.status();
  }
  m.manifests = std::move(manifests.value());
  return Status::ok();
}

// subject, artifactType and annotations: shared by both shapes.
Status parseCommonParts(const TopFields& f, Manifest& m) {
  if (f[kSubject].value) {
    Result<Descriptor> subject = descriptorValue(*f[kSubject].value, "subject");
    if (!subject) {
      return subject.status();
    }
    m.subject = std::move(subject.value());
  }
  if (f[kArtifactType].value) {
    Result<std::string> at = mediaTypeValue(*f[kArtifactType].value, "artifactType");
    if (!at) {
      return at.status();
    }
    m.artifact_type = std::move(at.value());
  } else if (m.config) {
    m.artifact_type = m.config->media_type;
  }
  if (f[kAnnotations].value) {
    Result<std::string> annotations = annotationsValue(*f[kAnnotations].value, "annotations");
    if (!annotations) {
      return annotations.status();
    }
    m.annotations_json = std::move(annotations.value());
  }
  return Status::ok();
}

Result<element> parseJson(std::string_view bytes) {
  // One parser per thread: it keeps its buffers between manifests, so parsing allocates nothing
  // once warm. The returned element points into the parser and is valid until its next parse.
  thread_local simdjson::dom::parser parser;
  element root;
  simdjson::error_code error = parser.parse(bytes.data(), bytes.size()).get(root);
  if (error != simdjson::SUCCESS) {
    return invalidArgument(std::string("manifest is not valid JSON: ") +
                           simdjson::error_message(error));
  }
  return root;
}

}  // namespace

bool isManifestMediaType(std::string_view media_type) {
  return media_type == kOciManifest || media_type == kDockerManifest ||
         isIndexMediaType(media_type);
}

bool isIndexMediaType(std::string_view media_type) {
  return media_type == kOciIndex || media_type == kDockerManifestList;
}

Result<Manifest> parseManifest(std::string_view bytes, std::string_view content_type) {
  if (bytes.size() > kMaxManifestBytes) {
    return Status(Code::kTooLarge,
                  "manifest is larger than " + std::to_string(kMaxManifestBytes) + " bytes");
  }
  if (isSchema1(bareContentType(content_type))) {
    return schema1Error();
  }
  Result<element> root = parseJson(bytes);
  if (!root) {
    return root.status();
  }

  TopFields f{{{"schemaVersion", {}},
               {"mediaType", {}},
               {"artifactType", {}},
               {"config", {}},
               {"layers", {}},
               {"manifests", {}},
               {"subject", {}},
               {"annotations", {}}}};
  if (Status s = collectFields(root.value(), f, ""); !s) {
    return s;
  }
  // The version first: schema 1 bodies usually carry no mediaType, and deserve the clear error.
  if (Status s = checkSchemaVersion(f); !s) {
    return s;
  }
  Result<std::string> media_type = resolveMediaType(f, content_type);
  if (!media_type) {
    return media_type.status();
  }

  Manifest m;
  m.media_type = std::move(media_type.value());
  m.is_index = isIndexMediaType(m.media_type);
  Status parts = m.is_index ? parseIndexParts(f, m) : parseImageParts(f, m);
  if (!parts) {
    return parts;
  }
  if (Status s = parseCommonParts(f, m); !s) {
    return s;
  }
  return m;
}

}  // namespace regcache::proxy
