// Manifest validation: OCI image manifests and indexes, Docker schema 2, and what is refused.
#include "proxy/manifest.h"

#include <catch2/catch.hpp>
#include <string>

using regcache::Code;
using regcache::proxy::isIndexMediaType;
using regcache::proxy::isManifestMediaType;
using regcache::proxy::kDockerManifest;
using regcache::proxy::kDockerManifestList;
using regcache::proxy::kMaxManifestBytes;
using regcache::proxy::kOciIndex;
using regcache::proxy::kOciManifest;
using regcache::proxy::parseManifest;

namespace {

std::string digestOf(char c) { return "sha256:" + std::string(64, c); }

const std::string kImage = R"({
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "config": {
    "mediaType": "application/vnd.oci.image.config.v1+json",
    "digest": ")" + digestOf('a') +
                           R"(",
    "size": 7023
  },
  "layers": [
    {
      "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
      "digest": ")" + digestOf('b') +
                           R"(",
      "size": 32654
    },
    {
      "mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
      "digest": "sha512:)" +
                           std::string(128, 'c') + R"(",
      "size": 0,
      "annotations": { "org.opencontainers.image.title": "layer two" }
    }
  ],
  "annotations": {
    "com.example.key1": "value1",
    "com.example.key2": "value2"
  }
})";

const std::string kIndex = R"({
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "manifests": [
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": ")" + digestOf('1') +
                           R"(",
      "size": 7143,
      "platform": { "architecture": "ppc64le", "os": "linux" }
    },
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": ")" + digestOf('2') +
                           R"(",
      "size": 7682,
      "platform": { "architecture": "arm", "os": "linux", "variant": "v7" }
    }
  ]
})";

const std::string kDockerV2 = R"({
  "schemaVersion": 2,
  "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
  "config": {
    "mediaType": "application/vnd.docker.container.image.v1+json",
    "size": 1469,
    "digest": ")" + digestOf('d') +
                              R"("
  },
  "layers": [
    {
      "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
      "size": 3370706,
      "digest": ")" + digestOf('e') +
                              R"("
    }
  ]
})";

// A manifest whose layers[0] is replaced by `layer`.
std::string imageWithLayer(const std::string& layer) {
  return R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
    "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" +
         digestOf('a') + R"(","size":2},"layers":[)" + layer + "]}";
}

std::string layer(const std::string& media_type, const std::string& digest,
                  const std::string& size) {
  return R"({"mediaType":)" + media_type + R"(,"digest":)" + digest + R"(,"size":)" + size + "}";
}

void requireInvalid(const std::string& body, std::string_view content_type,
                    const std::string& message_part) {
  auto m = parseManifest(body, content_type);
  REQUIRE_FALSE(m.isOk());
  CHECK(m.status().code() == Code::kInvalidArgument);
  CHECK_THAT(m.status().message(), Catch::Contains(message_part));
}

}  // namespace

TEST_CASE("isManifestMediaType: the four manifest types, and which are indexes",
          "[oci][manifest]") {
  CHECK(isManifestMediaType(kOciManifest));
  CHECK(isManifestMediaType(kOciIndex));
  CHECK(isManifestMediaType(kDockerManifest));
  CHECK(isManifestMediaType(kDockerManifestList));
  CHECK_FALSE(isManifestMediaType("application/json"));
  CHECK(isIndexMediaType(kOciIndex));
  CHECK(isIndexMediaType(kDockerManifestList));
  CHECK_FALSE(isIndexMediaType(kOciManifest));
}

TEST_CASE("parseManifest: an OCI image manifest yields its config, layers and annotations",
          "[oci][manifest]") {
  auto m = parseManifest(kImage, kOciManifest);
  REQUIRE(m.isOk());
  CHECK(m->media_type == kOciManifest);
  CHECK_FALSE(m->is_index);
  REQUIRE(m->config.has_value());
  CHECK(m->config->media_type == "application/vnd.oci.image.config.v1+json");
  CHECK(m->config->digest == digestOf('a'));
  CHECK(m->config->size == 7023);
  REQUIRE(m->layers.size() == 2);
  CHECK(m->layers[0].size == 32654);
  CHECK(m->layers[1].digest == "sha512:" + std::string(128, 'c'));
  CHECK(m->layers[1].size == 0);
  CHECK(m->layers[1].annotations_json == R"({"org.opencontainers.image.title":"layer two"})");
  CHECK(m->layers[0].annotations_json.empty());
  CHECK(m->manifests.empty());
  CHECK_FALSE(m->subject.has_value());
  CHECK(m->artifact_type == "application/vnd.oci.image.config.v1+json");
  CHECK(m->annotations_json == R"({"com.example.key1":"value1","com.example.key2":"value2"})");
}

TEST_CASE("parseManifest: the media type comes from the body when no Content-Type is given",
          "[oci][manifest]") {
  auto m = parseManifest(kImage, "");
  REQUIRE(m.isOk());
  CHECK(m->media_type == kOciManifest);
}

TEST_CASE("parseManifest: the media type comes from Content-Type when the body has none",
          "[oci][manifest]") {
  std::string body = R"({"schemaVersion":2,"manifests":[]})";
  auto m = parseManifest(body, "application/vnd.oci.image.index.v1+json; charset=utf-8");
  REQUIRE(m.isOk());
  CHECK(m->media_type == kOciIndex);
  CHECK(m->is_index);
  CHECK(m->manifests.empty());
}

TEST_CASE("parseManifest: an OCI index yields its entries with platforms", "[oci][manifest]") {
  auto m = parseManifest(kIndex, kOciIndex);
  REQUIRE(m.isOk());
  CHECK(m->is_index);
  CHECK_FALSE(m->config.has_value());
  REQUIRE(m->manifests.size() == 2);
  REQUIRE(m->manifests[0].platform.has_value());
  CHECK(m->manifests[0].platform->os == "linux");
  CHECK(m->manifests[0].platform->architecture == "ppc64le");
  CHECK(m->manifests[0].platform->variant.empty());
  CHECK(m->manifests[1].platform->variant == "v7");
  CHECK(m->manifests[1].digest == digestOf('2'));
  CHECK(m->artifact_type.empty());
}

TEST_CASE("parseManifest: a Docker schema 2 manifest and list parse like OCI ones",
          "[oci][manifest]") {
  auto m = parseManifest(kDockerV2, kDockerManifest);
  REQUIRE(m.isOk());
  CHECK(m->media_type == kDockerManifest);
  CHECK(m->config->media_type == "application/vnd.docker.container.image.v1+json");
  REQUIRE(m->layers.size() == 1);
  CHECK(m->layers[0].size == 3370706);

  std::string list = R"({"schemaVersion":2,
    "mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",
    "manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
      "digest":")" + digestOf('f') +
                     R"(","size":528,
      "platform":{"architecture":"amd64","os":"linux","os.features":["sse4"]}}]})";
  auto l = parseManifest(list, kDockerManifestList);
  REQUIRE(l.isOk());
  CHECK(l->is_index);
  REQUIRE(l->manifests.size() == 1);
  CHECK(l->manifests[0].platform->architecture == "amd64");
}

TEST_CASE("parseManifest: subject and artifactType are captured for referrers", "[oci][manifest]") {
  std::string body = R"({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "artifactType": "application/vnd.example.sbom.v1",
    "config": {"mediaType": "application/vnd.oci.empty.v1+json",
               "digest": ")" +
                     digestOf('4') + R"(", "size": 2, "data": "e30="},
    "layers": [{"mediaType": "application/spdx+json", "digest": ")" +
                     digestOf('5') +
                     R"(", "size": 1234}],
    "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": ")" +
                     digestOf('6') + R"(", "size": 7682},
    "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
  })";
  auto m = parseManifest(body, kOciManifest);
  REQUIRE(m.isOk());
  CHECK(m->artifact_type == "application/vnd.example.sbom.v1");
  REQUIRE(m->subject.has_value());
  CHECK(m->subject->digest == digestOf('6'));
  CHECK(m->subject->size == 7682);
  CHECK(m->annotations_json == R"({"org.opencontainers.image.created":"2024-01-01T00:00:00Z"})");
}

TEST_CASE("parseManifest: an index may carry artifactType and descriptor artifactType",
          "[oci][manifest]") {
  std::string body = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
    "artifactType":"application/vnd.example.bundle",
    "manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
                     digestOf('7') +
                     R"(","size":1,"artifactType":"application/vnd.example.sig"}]})";
  auto m = parseManifest(body, "");
  REQUIRE(m.isOk());
  CHECK(m->artifact_type == "application/vnd.example.bundle");
  CHECK(m->manifests[0].artifact_type == "application/vnd.example.sig");
}

TEST_CASE("parseManifest: unknown descriptor media types are accepted, as the spec requires",
          "[oci][manifest]") {
  auto m = parseManifest(
      imageWithLayer(layer(R"("application/x-made-up+tar")", '"' + digestOf('b') + '"', "1")),
      kOciManifest);
  REQUIRE(m.isOk());
  CHECK(m->layers[0].media_type == "application/x-made-up+tar");
}

TEST_CASE("parseManifest: a missing config or layers is refused", "[oci][manifest]") {
  requireInvalid(R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
    "layers":[]})",
                 "", "config");
  requireInvalid(R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
    "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" +
                     digestOf('a') + R"(","size":2}})",
                 "", "layers");
  requireInvalid(R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"})", "",
                 "manifests");
}

TEST_CASE("parseManifest: bad descriptors are refused with the field named", "[oci][manifest]") {
  struct Case {
    std::string layer;
    std::string message;
  };
  const std::string t = R"("application/vnd.oci.image.layer.v1.tar")";
  const std::string d = '"' + digestOf('b') + '"';
  auto c = GENERATE_COPY(values<Case>({
      {layer(t, R"("sha256:abc")", "1"), "layers[0].digest"},
      {layer(t, '"' + std::string("sha256:") + std::string(64, 'B') + '"', "1"),
       "layers[0].digest"},
      {layer(t, R"("md5:d41d8cd98f00b204e9800998ecf8427e")", "1"), "layers[0].digest"},
      {layer(t, "42", "1"), "layers[0].digest: must be a string"},
      {layer(t, d, "-1"), "layers[0].size: must not be negative"},
      {layer(t, d, "1.5"), "layers[0].size"},
      {layer(t, d, R"("12")"), "layers[0].size"},
      {layer(t, d, "18446744073709551615"), "layers[0].size"},
      {layer("7", d, "1"), "layers[0].mediaType"},
      {layer(R"("not a media type")", d, "1"), "layers[0].mediaType"},
      {R"({"digest":)" + d + R"(,"size":1})", "layers[0].mediaType: is required"},
      {R"({"mediaType":)" + t + R"(,"size":1})", "layers[0].digest: is required"},
      {R"({"mediaType":)" + t + R"(,"digest":)" + d + "}", "layers[0].size: is required"},
      {R"("just a string")", "layers[0]: must be a JSON object"},
      {R"({"mediaType":)" + t + R"(,"digest":)" + d + R"(,"size":1,"annotations":{"k":1}})",
       "layers[0].annotations.k"},
      {R"({"mediaType":)" + t + R"(,"digest":)" + d + R"(,"size":1,"digest":)" + d + "}",
       "appears twice"},
  }));
  CAPTURE(c.layer);
  requireInvalid(imageWithLayer(c.layer), kOciManifest, c.message);
}

TEST_CASE("parseManifest: an index platform needs os and architecture", "[oci][manifest]") {
  std::string body = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
    "manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
                     digestOf('7') + R"(","size":1,"platform":{"os":"linux"}}]})";
  requireInvalid(body, "", "manifests[0].platform");
}

TEST_CASE("parseManifest: a body mediaType that contradicts Content-Type is refused",
          "[oci][manifest]") {
  requireInvalid(kImage, kOciIndex, "does not match Content-Type");
  requireInvalid(kIndex, kDockerManifestList, "does not match Content-Type");
}

TEST_CASE("parseManifest: unsupported or missing top-level media types are refused",
          "[oci][manifest]") {
  requireInvalid(R"({"schemaVersion":2,"config":{},"layers":[]})", "", "no mediaType");
  requireInvalid(R"({"schemaVersion":2,"layers":[]})", "application/json", "unsupported");
  requireInvalid(R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.layer.v1.tar",
    "layers":[]})",
                 "", "unsupported");
}

TEST_CASE("parseManifest: schemaVersion must be the integer 2", "[oci][manifest]") {
  requireInvalid(R"({"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]})", "",
                 "schemaVersion");
  requireInvalid(R"({"schemaVersion":3,"manifests":[]})", kOciIndex, "schemaVersion");
  requireInvalid(R"({"schemaVersion":"2","manifests":[]})", kOciIndex, "schemaVersion");
  requireInvalid(R"({"schemaVersion":2.0,"manifests":[]})", kOciIndex, "schemaVersion");
}

TEST_CASE("parseManifest: Docker schema 1 is refused with a clear message", "[oci][manifest]") {
  std::string schema1 = R"({"schemaVersion":1,"name":"library/busybox","tag":"latest",
    "architecture":"amd64","fsLayers":[],"history":[]})";
  requireInvalid(schema1, "", "schema 1");
  requireInvalid(schema1, "application/vnd.docker.distribution.manifest.v1+prettyjws", "schema 1");
  requireInvalid("{}", "application/vnd.docker.distribution.manifest.v1+json", "schema 1");
  requireInvalid(
      R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v1+json"})",
      "", "schema 1");
}

TEST_CASE("parseManifest: bytes that are not a JSON object are refused", "[oci][manifest]") {
  requireInvalid("this is not json", kOciManifest, "manifest is not valid JSON: ");
  requireInvalid(R"({"schemaVersion":2,)", kOciManifest, "manifest is not valid JSON: ");
  requireInvalid("", kOciManifest, "manifest is not valid JSON: ");
  requireInvalid("[1,2]", kOciManifest, "must be a JSON object");
}

TEST_CASE("parseManifest: a manifest over 4 MiB is kTooLarge", "[oci][manifest]") {
  std::string body = kImage;
  body.resize(kMaxManifestBytes + 1, ' ');
  auto m = parseManifest(body, kOciManifest);
  REQUIRE_FALSE(m.isOk());
  CHECK(m.status().code() == Code::kTooLarge);

  body.resize(kMaxManifestBytes);  // exactly the limit is fine
  CHECK(parseManifest(body, kOciManifest).isOk());
}

TEST_CASE("parseManifest: consecutive parses on one thread do not share results",
          "[oci][manifest]") {
  auto first = parseManifest(kImage, kOciManifest);
  auto second = parseManifest(kIndex, kOciIndex);
  REQUIRE(first.isOk());
  REQUIRE(second.isOk());
  CHECK(first->layers.size() == 2);
  CHECK(first->annotations_json.find("key1") != std::string::npos);
}
