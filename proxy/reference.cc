// Repository names, tags and manifest references, matched by hand: these run on every request,
// and a character loop is both faster and easier to bound than std::regex.
#include "proxy/reference.h"

namespace regcache::proxy {

namespace {

bool isLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

bool isTagChar(char c) {
  return isLowerAlnum(c) || (c >= 'A' && c <= 'Z') || c == '_' || c == '.' || c == '-';
}

// Length of the separator `\.|_|__|-+` starting at `s[i]`, or 0 when there is none.
size_t separatorLength(std::string_view s, size_t i) {
  if (s[i] == '.') {
    return 1;
  }
  if (s[i] == '_') {
    return (i + 1 < s.size() && s[i + 1] == '_') ? 2 : 1;
  }
  size_t n = 0;
  while (i + n < s.size() && s[i + n] == '-') {
    ++n;
  }
  return n;
}

// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`. Every separator must sit between two
// alphanumeric runs, so the component can neither start nor end with one, and two separators
// never touch ("a._b" and "a___b" fail because the second separator finds no run before it).
bool isValidComponent(std::string_view s) {
  size_t i = 0;
  while (true) {
    size_t run = i;
    while (i < s.size() && isLowerAlnum(s[i])) {
      ++i;
    }
    if (i == run) {
      return false;  // empty, or a separator where an alphanumeric run must be
    }
    if (i == s.size()) {
      return true;
    }
    size_t sep = separatorLength(s, i);
    if (sep == 0) {
      return false;  // a character outside the grammar
    }
    i += sep;
  }
}

}  // namespace

bool isValidRepository(std::string_view name) {
  if (name.empty() || name.size() > kMaxRepositoryLength) {
    return false;
  }
  size_t start = 0;
  while (true) {
    size_t slash = name.find('/', start);
    std::string_view component = name.substr(start, slash - start);
    if (!isValidComponent(component)) {
      return false;
    }
    if (slash == std::string_view::npos) {
      return true;
    }
    start = slash + 1;
  }
}

bool isValidRepositoryComponent(std::string_view component) {
  return component.size() <= kMaxRepositoryLength && isValidComponent(component);
}

bool isValidTag(std::string_view tag) {
  if (tag.empty() || tag.size() > 128) {
    return false;
  }
  if (tag[0] == '.' || tag[0] == '-') {
    return false;
  }
  for (char c : tag) {
    if (!isTagChar(c)) {
      return false;
    }
  }
  return true;
}

Result<Reference> parseReference(std::string_view text) {
  Reference ref;
  if (text.find(':') != std::string_view::npos) {
    Result<cache::Digest> digest = cache::Digest::parse(text);
    if (!digest) {
      return invalidArgument("digest invalid: " + digest.status().message());
    }
    ref.digest = std::move(digest.value());
    return ref;
  }
  if (!isValidTag(text)) {
    return invalidArgument("tag invalid: must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}");
  }
  ref.tag = std::string(text);
  return ref;
}

}  // namespace regcache::proxy
