// Fuzzes the byte-range parsers: a blob GET's `Range` and an upload PATCH's `Content-Range`.
//
// Input: the first 8 bytes (little-endian) are the representation size, the rest the header
// text. Shorter inputs are all text, against a size of 1000.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/range.h"
#include "tests/fuzz/fuzz_check.h"

namespace regcache::proxy {
namespace {

void checkRange(std::string_view header, uint64_t size) {
  Result<std::optional<ByteRange>> range = parseRange(header, size);
  if (!range) {
    Code code = range.status().code();
    FUZZ_CHECK(code == Code::kInvalidArgument || code == Code::kConflict);
    return;
  }
  if (!range->has_value()) {
    return;  // ignored: the whole body is sent
  }
  const ByteRange& r = **range;
  FUZZ_CHECK(size > 0);
  FUZZ_CHECK(r.first <= r.last && r.last < size);
  FUZZ_CHECK(r.length() >= 1 && r.length() <= size);

  // The range written back in canonical form means the same bytes.
  std::string canonical = "bytes=" + std::to_string(r.first) + "-" + std::to_string(r.last);
  Result<std::optional<ByteRange>> again = parseRange(canonical, size);
  FUZZ_CHECK(again.isOk() && again->has_value());
  FUZZ_CHECK((*again)->first == r.first && (*again)->last == r.last);
}

void checkContentRange(std::string_view header) {
  Result<ByteRange> range = parseContentRange(header);
  if (!range) {
    FUZZ_CHECK(range.status().code() == Code::kInvalidArgument);
    return;
  }
  FUZZ_CHECK(range->first <= range->last);
  FUZZ_CHECK(range->last < UINT64_MAX);  // so length() cannot wrap to 0

  std::string canonical = std::to_string(range->first) + "-" + std::to_string(range->last);
  Result<ByteRange> again = parseContentRange(canonical);
  FUZZ_CHECK(again.isOk() && again->first == range->first && again->last == range->last);
}

}  // namespace
}  // namespace regcache::proxy

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint64_t representation_size = 1000;
  if (size >= 8) {
    representation_size = 0;
    for (int i = 7; i >= 0; --i) {
      representation_size = (representation_size << 8) | data[i];
    }
    data += 8;
    size -= 8;
  }
  std::string_view header(reinterpret_cast<const char*>(data), size);
  regcache::proxy::checkRange(header, representation_size);
  regcache::proxy::checkContentRange(header);
  return 0;
}
