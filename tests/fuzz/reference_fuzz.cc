// Fuzzes the registry's name grammar: repository names, tags, references, digests, request
// paths, percent-decoding and the routing of a name to a local or upstream repository.
//
// Input: the text up to the first '\n' is the path, name or reference; what follows it, if
// anything, is the `ns` query parameter for resolveRepository.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cache/digest.h"
#include "proxy/config.h"
#include "proxy/reference.h"
#include "proxy/routes.h"
#include "tests/fuzz/fuzz_check.h"

namespace regcache::proxy {
namespace {

bool isLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// What every valid repository name must look like, checked without the parser's own loop.
void checkValidRepository(std::string_view name) {
  FUZZ_CHECK(!name.empty() && name.size() <= kMaxRepositoryLength);
  FUZZ_CHECK(name.find("//") == std::string_view::npos);
  FUZZ_CHECK(isLowerAlnum(name.front()) && isLowerAlnum(name.back()));
  for (char c : name) {
    FUZZ_CHECK(isLowerAlnum(c) || c == '.' || c == '_' || c == '-' || c == '/');
  }
  size_t start = 0;
  while (true) {
    size_t slash = name.find('/', start);
    FUZZ_CHECK(isValidRepositoryComponent(name.substr(start, slash - start)));
    if (slash == std::string_view::npos) {
      break;
    }
    start = slash + 1;
  }
}

void checkDigest(std::string_view text) {
  Result<cache::Digest> digest = cache::Digest::parse(text);
  if (!digest) {
    FUZZ_CHECK(digest.status().code() == Code::kInvalidArgument);
    return;
  }
  FUZZ_CHECK(digest->hex().size() == 64 || digest->hex().size() == 128);
  FUZZ_CHECK(digest->str() == text);
  Result<cache::Digest> again = cache::Digest::parse(digest->str());
  FUZZ_CHECK(again.isOk() && *again == *digest);
}

void checkTagAndReference(std::string_view text) {
  if (isValidTag(text)) {
    FUZZ_CHECK(!text.empty() && text.size() <= 128);
    FUZZ_CHECK(text.front() != '.' && text.front() != '-');
    FUZZ_CHECK(text.find(':') == std::string_view::npos);
    FUZZ_CHECK(text.find('/') == std::string_view::npos);
  }
  Result<Reference> reference = parseReference(text);
  if (!reference) {
    FUZZ_CHECK(reference.status().code() == Code::kInvalidArgument);
    return;
  }
  FUZZ_CHECK(reference->str() == text);
  FUZZ_CHECK(reference->isDigest() ? reference->tag.empty() : isValidTag(reference->tag));
}

// Percent-encodes every byte but the unreserved ones: decoding it must give `text` back.
std::string encodeAll(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (char ch : text) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (isLowerAlnum(ch) || ch == '-' || ch == '.') {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

void checkPercentDecode(std::string_view text) {
  Result<std::string> decoded = percentDecode(text);
  if (!decoded) {
    FUZZ_CHECK(decoded.status().code() == Code::kInvalidArgument);
    return;
  }
  FUZZ_CHECK(decoded->size() <= text.size());
  FUZZ_CHECK(decoded->find('\0') == std::string::npos);
  Result<std::string> round_trip = percentDecode(encodeAll(*decoded));
  FUZZ_CHECK(round_trip.isOk() && *round_trip == *decoded);
}

Config makeConfig(bool with_default) {
  Config config;
  config.upstreams = {
      UpstreamConfig{
          .name = "docker.io", .url = "https://registry-1.docker.io", .is_default = with_default},
      UpstreamConfig{.name = "ghcr.io", .url = "https://ghcr.io"},
      UpstreamConfig{.name = "registry.example.com:5000",
                     .url = "http://registry.example.com:5000"},
  };
  config.local_namespaces = {"local", "team-a"};
  return config;
}

void checkResolve(const Config& config, std::string_view name, std::string_view ns) {
  Result<Repository> repository = resolveRepository(config, name, ns);
  if (!repository) {
    FUZZ_CHECK(repository.status().code() == Code::kNotFound);
    return;
  }
  if (repository->isLocal()) {
    FUZZ_CHECK(ns.empty());
    FUZZ_CHECK(repository->key == name);
    std::string_view first = name.substr(0, name.find('/'));
    FUZZ_CHECK(first == "local" || first == "team-a");
    return;
  }
  const UpstreamConfig* upstream = repository->upstream;
  FUZZ_CHECK(upstream >= config.upstreams.data() &&
             upstream < config.upstreams.data() + config.upstreams.size());
  FUZZ_CHECK(repository->key == upstream->name + "/" + repository->remote);
  FUZZ_CHECK(ns.empty() || ns == upstream->name);
  // A valid name stays valid on the upstream: a prefix is cut or "library/" added, no more
  // (the latter may take a name of the maximum length past it).
  std::string_view remote = repository->remote;
  FUZZ_CHECK(isValidRepository(remote) ||
             (remote.starts_with("library/") && isValidRepository(remote.substr(8))));
}

void checkRoute(std::string_view path, std::string_view ns) {
  Result<Route> route = parseRoute(path);
  if (!route) {
    Code code = route.status().code();
    FUZZ_CHECK(code == Code::kNotFound || code == Code::kInvalidArgument);
    return;
  }
  FUZZ_CHECK(path.starts_with("/v2"));
  if (route->endpoint == Endpoint::kBase || route->endpoint == Endpoint::kCatalog) {
    FUZZ_CHECK(route->name.empty());
    return;
  }
  checkValidRepository(route->name);
  FUZZ_CHECK(route->reference.find('\0') == std::string::npos);

  static const Config with_default = makeConfig(true);
  static const Config without_default = makeConfig(false);
  checkResolve(with_default, route->name, ns);
  checkResolve(without_default, route->name, ns);
  checkResolve(with_default, route->name, {});
}

}  // namespace
}  // namespace regcache::proxy

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace regcache::proxy;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t newline = input.find('\n');
  std::string_view text = input.substr(0, newline);
  std::string_view ns =
      newline == std::string_view::npos ? std::string_view() : input.substr(newline + 1);

  if (isValidRepository(text)) {
    checkValidRepository(text);
  }
  if (isValidRepositoryComponent(text)) {
    FUZZ_CHECK(text.find('/') == std::string_view::npos);
    FUZZ_CHECK(text.size() > kMaxRepositoryLength || isValidRepository(text));
  }
  checkDigest(text);
  checkTagAndReference(text);
  checkPercentDecode(text);
  checkRoute(text, ns);
  return 0;
}
