// Tests for the image layout's small files: index.json, oci-layout and blob entry names.
#include "proxy/oci_layout.h"

#include <catch2/catch.hpp>

#include "proxy/manifest.h"

namespace regcache::proxy {
namespace {

const std::string kDigest = "sha256:" + std::string(64, 'a');

TEST_CASE("OciLayout: index.json round-trips its descriptors and annotations",
          "[proxy][oci_layout]") {
  std::vector<LayoutImage> images = {
      {std::string(kOciIndex), kDigest, 321, "docker.io/library/alpine:3.19",
       "docker.io/library/alpine"},
      {std::string(kOciManifest), "sha256:" + std::string(64, 'b'), 12, "", "local/app"},
  };
  auto parsed = parseLayoutIndex(layoutIndexJson(images));
  REQUIRE(parsed.isOk());
  REQUIRE(parsed->size() == 2);
  CHECK((*parsed)[0].ref_name == "docker.io/library/alpine:3.19");
  CHECK((*parsed)[0].repository == "docker.io/library/alpine");
  CHECK((*parsed)[0].size == 321);
  CHECK((*parsed)[1].ref_name.empty());
  CHECK((*parsed)[1].media_type == kOciManifest);
}

TEST_CASE("OciLayout: blob entry names map to digests and back", "[proxy][oci_layout]") {
  auto digest = cache::Digest::parse(kDigest);
  REQUIRE(digest.isOk());
  CHECK(blobEntryName(*digest) == "blobs/sha256/" + std::string(64, 'a'));
  CHECK(digestOfEntryName("./blobs/sha256/" + std::string(64, 'a'))->str() == kDigest);
  CHECK(!digestOfEntryName("blobs/sha256/xyz").isOk());
  CHECK(!digestOfEntryName("index.json").isOk());
  CHECK(checkOciLayout(kOciLayoutContent).isOk());
  CHECK(!checkOciLayout("{\"imageLayoutVersion\":\"2.0.0\"}").isOk());
}

}  // namespace
}  // namespace regcache::proxy
