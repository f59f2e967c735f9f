// Request paths to endpoints, and names to repositories.
#include "proxy/routes.h"

#include <vector>

#include "proxy/reference.h"

namespace regcache::proxy {

namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::vector<std::string_view> splitSegments(std::string_view path) {
  std::vector<std::string_view> segments;
  size_t start = 0;
  while (true) {
    size_t slash = path.find('/', start);
    segments.push_back(
        path.substr(start, slash == std::string_view::npos ? path.npos : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return segments;
}

// Joins segments [0, end) with '/', decoding each; a decoded '/' inside a segment is refused
// so that the name's structure is the one the client's path shows.
Result<std::string> joinName(const std::vector<std::string_view>& segments, size_t end) {
  std::string name;
  for (size_t i = 0; i < end; ++i) {
    auto decoded = percentDecode(segments[i]);
    if (!decoded || decoded->find('/') != std::string::npos) {
      return invalidArgument("invalid repository name encoding");
    }
    if (i > 0) name.push_back('/');
    name += *decoded;
  }
  if (!isValidRepository(name)) {
    return invalidArgument("invalid repository name: " + name);
  }
  return name;
}

Result<Route> makeRoute(Endpoint endpoint, const std::vector<std::string_view>& segments,
                        size_t name_end, std::string_view reference) {
  auto name = joinName(segments, name_end);
  if (!name) return name.status();
  auto decoded = percentDecode(reference);
  if (!decoded) return decoded.status();
  return Route{endpoint, std::move(*name), std::move(*decoded)};
}

}  // namespace

Result<std::string> percentDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) {
        return invalidArgument("malformed percent escape");
      }
      int hi = hexValue(text[i + 1]);
      int lo = hexValue(text[i + 2]);
      if (hi < 0 || lo < 0) return invalidArgument("malformed percent escape");
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (c == '\0') return invalidArgument("NUL in path");
    out.push_back(c);
  }
  return out;
}

Result<Route> parseRoute(std::string_view path) {
  if (path == "/v2" || path == "/v2/") return Route{Endpoint::kBase, {}, {}};
  if (!path.starts_with("/v2/")) return notFound("not an API path");
  path.remove_prefix(4);
  if (path == "_catalog") return Route{Endpoint::kCatalog, {}, {}};

  auto segments = splitSegments(path);
  size_t n = segments.size();
  if (n >= 3 && segments[n - 2] == "tags" && segments[n - 1] == "list") {
    return makeRoute(Endpoint::kTags, segments, n - 2, {});
  }
  if (n >= 4 && segments[n - 3] == "blobs" && segments[n - 2] == "uploads") {
    Endpoint endpoint = segments[n - 1].empty() ? Endpoint::kUploadStart : Endpoint::kUpload;
    return makeRoute(endpoint, segments, n - 3, segments[n - 1]);
  }
  if (n >= 3 && segments[n - 2] == "blobs" && segments[n - 1] == "uploads") {
    return makeRoute(Endpoint::kUploadStart, segments, n - 2, {});
  }
  if (n >= 3 && !segments[n - 1].empty()) {
    std::string_view kind = segments[n - 2];
    if (kind == "manifests")
      return makeRoute(Endpoint::kManifest, segments, n - 2, segments[n - 1]);
    if (kind == "blobs") return makeRoute(Endpoint::kBlob, segments, n - 2, segments[n - 1]);
    if (kind == "referrers") {
      return makeRoute(Endpoint::kReferrers, segments, n - 2, segments[n - 1]);
    }
  }
  return notFound("not an API path");
}

Result<Repository> resolveRepository(const Config& config, std::string_view name,
                                     std::string_view ns) {
  auto upstreamNames = [&config] {
    std::string names;
    for (const auto& u : config.upstreams) {
      if (!names.empty()) names += ", ";
      names += u.name;
    }
    return names.empty() ? std::string("none") : names;
  };
  auto onUpstream = [](const UpstreamConfig& upstream, std::string_view remote) {
    std::string remote_name(remote);
    // Docker Hub's official images live under library/.
    if (upstream.name == "docker.io" && remote_name.find('/') == std::string::npos) {
      remote_name = "library/" + remote_name;
    }
    return Repository{upstream.name + "/" + remote_name, &upstream, remote_name};
  };

  if (!ns.empty()) {
    const UpstreamConfig* upstream = config.upstream(ns);
    if (upstream == nullptr) {
      return notFound("ns=" + std::string(ns) +
                      " names no configured upstream; configured: " + upstreamNames());
    }
    return onUpstream(*upstream, name);
  }

  size_t slash = name.find('/');
  std::string_view first = name.substr(0, slash);
  if (slash != std::string_view::npos) {
    if (const UpstreamConfig* upstream = config.upstream(first)) {
      return onUpstream(*upstream, name.substr(slash + 1));
    }
  }
  for (const auto& local : config.local_namespaces) {
    if (first == local) return Repository{std::string(name), nullptr, {}};
  }
  if (const UpstreamConfig* upstream = config.defaultUpstream()) {
    return onUpstream(*upstream, name);
  }
  return notFound("repository " + std::string(name) +
                  " is in no local namespace and no default upstream is configured");
}

}  // namespace regcache::proxy
