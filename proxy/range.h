// Byte ranges: the `Range` header of blob GETs and the `Content-Range` of upload PATCHes.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "cache/status.h"

namespace regcache::proxy {

struct ByteRange {
  uint64_t first = 0;  // inclusive
  uint64_t last = 0;   // inclusive
  uint64_t length() const { return last - first + 1; }
};

// Parses an RFC 9110 `Range` header against a representation of `size` bytes.
// Only a single range of unit "bytes" is served: "bytes=a-b", "bytes=a-" and "bytes=-n"; `last`
// is clamped to size-1.
//  - nullopt in the Result: the header should be ignored (an unknown unit, or several ranges,
//    or a suffix range of an empty representation), so the whole body is sent with 200;
//  - kInvalidArgument: syntactically bad;
//  - kConflict: unsatisfiable (first >= size, or a zero suffix), which is answered with 416.
Result<std::optional<ByteRange>> parseRange(std::string_view header, uint64_t size);

// Parses an upload PATCH `Content-Range`: "a-b" (the distribution spec's form), also accepting
// "bytes a-b/*" and "bytes a-b/total". kInvalidArgument when malformed or b < a.
Result<ByteRange> parseContentRange(std::string_view header);

}  // namespace regcache::proxy
