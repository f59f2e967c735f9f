// Routing: which API endpoint a request path names, and which repository (local, or on which
// upstream) its <name> means, by the rules of DESIGN.md.
#pragma once

#include <string>
#include <string_view>

#include "cache/status.h"
#include "proxy/config.h"

namespace regcache::proxy {

enum class Endpoint {
  kBase,         // /v2/
  kCatalog,      // /v2/_catalog
  kTags,         // /v2/<name>/tags/list
  kManifest,     // /v2/<name>/manifests/<reference>
  kBlob,         // /v2/<name>/blobs/<digest>
  kUploadStart,  // /v2/<name>/blobs/uploads/
  kUpload,       // /v2/<name>/blobs/uploads/<uuid>
  kReferrers,    // /v2/<name>/referrers/<digest>
};

struct Route {
  Endpoint endpoint = Endpoint::kBase;
  std::string name;       // <name> as the client wrote it, percent-decoded and validated
  std::string reference;  // <reference>, <digest> or <uuid>, percent-decoded, not validated
};

// Splits a request path (still percent-encoded, without the query). kNotFound for a path that
// is no API endpoint; kInvalidArgument (NAME_INVALID) when <name> breaks the name grammar or
// the path has odd encodings (NUL, a percent-encoded '/', "." or "..", a bad escape).
Result<Route> parseRoute(std::string_view path);

// Where a repository lives.
struct Repository {
  std::string key;  // the index key: "local/app", or "<upstream name>/<remote name>"
  const UpstreamConfig* upstream = nullptr;  // nullptr: a local repository
  std::string remote;                        // the name on the upstream ("library/alpine")

  bool isLocal() const { return upstream == nullptr; }
};

// Applies DESIGN.md's routing rules to <name>, with the request's `ns` query parameter (empty
// when absent). kNotFound (NAME_UNKNOWN) with a message naming the configured upstreams when
// `ns` or the name selects no upstream and no local namespace.
Result<Repository> resolveRepository(const Config& config, std::string_view name,
                                     std::string_view ns);

// Percent-decodes `text`. kInvalidArgument on a malformed escape or a decoded NUL.
Result<std::string> percentDecode(std::string_view text);

}  // namespace regcache::proxy
