// Byte ranges: RFC 9110 `Range` for blob GETs, and the upload PATCH `Content-Range`.
#include "proxy/range.h"

#include <limits>
#include <string>
#include <vector>

namespace regcache::proxy {

namespace {

constexpr uint64_t kMaxU64 = std::numeric_limits<uint64_t>::max();

bool isDigit(char c) { return c >= '0' && c <= '9'; }

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] - 'A' + 'a') : a[i];
    if (x != b[i]) {
      return false;
    }
  }
  return true;
}

// 1*DIGIT as a number. Values beyond uint64 saturate to its maximum: a position that large is
// past the end of any representation, and the callers clamp or refuse it as such.
std::optional<uint64_t> parseDigits(std::string_view s) {
  if (s.empty()) {
    return std::nullopt;
  }
  uint64_t v = 0;
  for (char c : s) {
    if (!isDigit(c)) {
      return std::nullopt;
    }
    uint64_t d = static_cast<uint64_t>(c - '0');
    v = v > (kMaxU64 - d) / 10 ? kMaxU64 : v * 10 + d;
  }
  return v;
}

// One range-spec, syntax only: `first-last`, `first-` (last = max) or `-suffix`.
struct RangeSpec {
  bool suffix = false;
  uint64_t first = 0;
  uint64_t last = kMaxU64;  // or the suffix length
};

Result<RangeSpec> parseRangeSpec(std::string_view spec) {
  size_t dash = spec.find('-');
  if (dash == std::string_view::npos) {
    return invalidArgument("range spec has no '-'");
  }
  std::string_view left = spec.substr(0, dash);
  std::string_view right = spec.substr(dash + 1);
  RangeSpec r;
  if (left.empty()) {
    std::optional<uint64_t> n = parseDigits(right);
    if (!n) {
      return invalidArgument("bad suffix length in range");
    }
    r.suffix = true;
    r.last = *n;
    return r;
  }
  std::optional<uint64_t> first = parseDigits(left);
  std::optional<uint64_t> last =
      right.empty() ? std::optional<uint64_t>(kMaxU64) : parseDigits(right);
  if (!first || !last) {
    return invalidArgument("bad position in range");
  }
  if (*last < *first) {
    return invalidArgument("range ends before it starts");
  }
  r.first = *first;
  r.last = *last;
  return r;
}

// Splits the range-set on commas; empty list elements are allowed by RFC 9110's list rule.
std::vector<std::string_view> splitRangeSet(std::string_view set) {
  std::vector<std::string_view> specs;
  while (true) {
    size_t comma = set.find(',');
    std::string_view item = trimOws(set.substr(0, comma));
    if (!item.empty()) {
      specs.push_back(item);
    }
    if (comma == std::string_view::npos) {
      return specs;
    }
    set.remove_prefix(comma + 1);
  }
}

// Resolves a syntactically valid spec against the representation size.
Result<std::optional<ByteRange>> resolve(const RangeSpec& r, uint64_t size) {
  if (r.suffix) {
    if (r.last == 0) {
      return conflict("zero-length suffix range");
    }
    if (size == 0) {
      // Satisfiable per RFC 9110, but the answer is the whole (empty) body: no range to send.
      return std::optional<ByteRange>();
    }
    uint64_t n = r.last < size ? r.last : size;
    return std::optional<ByteRange>(ByteRange{size - n, size - 1});
  }
  if (r.first >= size) {
    return conflict("range starts at or past the end of the content");
  }
  return std::optional<ByteRange>(ByteRange{r.first, r.last < size ? r.last : size - 1});
}

}  // namespace

Result<std::optional<ByteRange>> parseRange(std::string_view header, uint64_t size) {
  header = trimOws(header);
  size_t eq = header.find('=');
  if (eq == std::string_view::npos) {
    return invalidArgument("Range header has no '='");
  }
  if (!equalsIgnoreCase(trimOws(header.substr(0, eq)), "bytes")) {
    return std::optional<ByteRange>();  // a unit we do not serve: send the whole body
  }

  std::vector<std::string_view> items = splitRangeSet(header.substr(eq + 1));
  if (items.empty()) {
    return invalidArgument("Range header lists no range");
  }
  std::vector<RangeSpec> specs;
  for (std::string_view item : items) {
    Result<RangeSpec> spec = parseRangeSpec(item);
    if (!spec) {
      return spec.status();
    }
    specs.push_back(spec.value());
  }

  // Several ranges would need multipart/byteranges; RFC 9110 lets a server ignore them instead.
  if (specs.size() > 1) {
    return std::optional<ByteRange>();
  }
  return resolve(specs[0], size);
}

Result<ByteRange> parseContentRange(std::string_view header) {
  header = trimOws(header);
  std::optional<uint64_t> total;
  if (header.substr(0, 6) == "bytes ") {
    header = trimOws(header.substr(6));
    size_t slash = header.find('/');
    if (slash == std::string_view::npos) {
      return invalidArgument("Content-Range lacks '/total'");
    }
    std::string_view complete = header.substr(slash + 1);
    if (complete != "*") {
      total = parseDigits(complete);
      if (!total) {
        return invalidArgument("Content-Range has a bad total length");
      }
    }
    header = header.substr(0, slash);
  }

  size_t dash = header.find('-');
  if (dash == std::string_view::npos) {
    return invalidArgument("Content-Range must be \"first-last\"");
  }
  std::optional<uint64_t> first = parseDigits(header.substr(0, dash));
  std::optional<uint64_t> last = parseDigits(header.substr(dash + 1));
  if (!first || !last || *last == kMaxU64) {
    return invalidArgument("Content-Range must be \"first-last\" with decimal positions");
  }
  if (*last < *first) {
    return invalidArgument("Content-Range ends before it starts");
  }
  if (total && *last >= *total) {
    return invalidArgument("Content-Range ends past its total length");
  }
  return ByteRange{*first, *last};
}

}  // namespace regcache::proxy
