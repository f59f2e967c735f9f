// The distribution spec's grammar for repository names and tags, and manifest references.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "cache/digest.h"
#include "cache/status.h"

namespace regcache::proxy {

// Longest repository name accepted (the spec lets registries cap it; clients cap host+name at
// 255 characters).
inline constexpr size_t kMaxRepositoryLength = 255;

// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, at most
// kMaxRepositoryLength characters.
bool isValidRepository(std::string_view name);

// One `/`-free component of the grammar above: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` (e.g. a local
// namespace such as "local").
bool isValidRepositoryComponent(std::string_view component);

// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
bool isValidTag(std::string_view tag);

// The <reference> of /v2/<name>/manifests/<reference>: a tag or a digest.
struct Reference {
  std::string tag;                      // set when it is a tag
  std::optional<cache::Digest> digest;  // set when it is a digest
  bool isDigest() const { return digest.has_value(); }
  // The reference as written: the tag or "sha256:...".
  std::string str() const { return digest ? digest->str() : tag; }
};

// A reference containing ':' must be a valid digest (kInvalidArgument, "digest invalid");
// otherwise it must be a valid tag.
Result<Reference> parseReference(std::string_view text);

}  // namespace regcache::proxy
