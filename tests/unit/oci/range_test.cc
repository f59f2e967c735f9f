// Range and Content-Range parsing (RFC 9110 single ranges; the distribution spec's PATCH form).
#include "proxy/range.h"

#include <catch2/catch.hpp>
#include <string>

using regcache::Code;
using regcache::proxy::parseContentRange;
using regcache::proxy::parseRange;

TEST_CASE("parseRange: satisfiable single ranges resolve and clamp", "[oci][range]") {
  struct Case {
    const char* header;
    uint64_t size, first, last;
  };
  auto c = GENERATE(values<Case>({
      {"bytes=0-0", 10, 0, 0},
      {"bytes=0-9", 10, 0, 9},
      {"bytes=2-5", 10, 2, 5},
      {"bytes=5-", 10, 5, 9},
      {"bytes=-3", 10, 7, 9},
      {"bytes=-100", 10, 0, 9},   // suffix longer than the body: all of it
      {"bytes=3-100", 10, 3, 9},  // last clamped to size-1
      {"bytes=9-9", 10, 9, 9},
      {"BYTES=1-2", 10, 1, 2},  // the unit is case-insensitive
      {" bytes=1-2 ", 10, 1, 2},
      {"bytes=1-2,", 10, 1, 2},                       // empty list elements are allowed
      {"bytes=0-99999999999999999999999", 10, 0, 9},  // huge last saturates, then clamps
  }));
  CAPTURE(c.header);
  auto r = parseRange(c.header, c.size);
  REQUIRE(r.isOk());
  REQUIRE(r->has_value());
  CHECK((*r)->first == c.first);
  CHECK((*r)->last == c.last);
  CHECK((*r)->length() == c.last - c.first + 1);
}

TEST_CASE("parseRange: unsatisfiable ranges are kConflict (416)", "[oci][range]") {
  struct Case {
    const char* header;
    uint64_t size;
  };
  auto c = GENERATE(values<Case>({
      {"bytes=10-", 10},
      {"bytes=10-20", 10},
      {"bytes=-0", 10},
      {"bytes=0-0", 0},
      {"bytes=99999999999999999999999-", 10},
  }));
  CAPTURE(c.header, c.size);
  auto r = parseRange(c.header, c.size);
  REQUIRE_FALSE(r.isOk());
  CHECK(r.status().code() == Code::kConflict);
}

TEST_CASE("parseRange: other units and multiple ranges are ignored", "[oci][range]") {
  auto header =
      GENERATE(as<std::string>{}, "items=0-1", "bytes=0-1,5-6", "bytes=0-1, 3-", "bytes=-1,-2");
  CAPTURE(header);
  auto r = parseRange(header, 10);
  REQUIRE(r.isOk());
  CHECK_FALSE(r->has_value());
}

TEST_CASE("parseRange: a suffix range of an empty body is ignored", "[oci][range]") {
  auto r = parseRange("bytes=-5", 0);
  REQUIRE(r.isOk());
  CHECK_FALSE(r->has_value());
}

TEST_CASE("parseRange: garbage is kInvalidArgument", "[oci][range]") {
  auto header = GENERATE(as<std::string>{}, "", "bytes", "bytes=", "bytes=,", "bytes=abc",
                         "bytes=1", "bytes=-", "bytes=5-2", "bytes=1-2-3", "bytes=a-b",
                         "bytes=0x1-2", "bytes=+1-2", "bytes=1-2,junk", "bytes = 1-2x");
  CAPTURE(header);
  auto r = parseRange(header, 10);
  REQUIRE_FALSE(r.isOk());
  CHECK(r.status().code() == Code::kInvalidArgument);
}

TEST_CASE("parseContentRange: accepts the spec's form and the RFC forms", "[oci][range]") {
  struct Case {
    const char* header;
    uint64_t first, last;
  };
  auto c = GENERATE(values<Case>({
      {"0-1023", 0, 1023},
      {"1024-2047", 1024, 2047},
      {"5-5", 5, 5},
      {"bytes 0-9/*", 0, 9},
      {"bytes 0-9/10", 0, 9},
      {"bytes 100-199/1000", 100, 199},
  }));
  CAPTURE(c.header);
  auto r = parseContentRange(c.header);
  REQUIRE(r.isOk());
  CHECK(r->first == c.first);
  CHECK(r->last == c.last);
}

TEST_CASE("parseContentRange: malformed or backwards ranges are refused", "[oci][range]") {
  auto header =
      GENERATE(as<std::string>{}, "", "-", "0-", "-5", "5-2", "a-b", "0-9/10", "bytes 0-9",
               "bytes 0-9/x", "bytes 0-9/9", "bytes=0-9", "0 - 9", "0-99999999999999999999999");
  CAPTURE(header);
  auto r = parseContentRange(header);
  REQUIRE_FALSE(r.isOk());
  CHECK(r.status().code() == Code::kInvalidArgument);
}
