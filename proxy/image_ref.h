// Image references as users type them on the command line (`regcache warm alpine:3.19`), and
// which repository of the cache they name.
#pragma once

#include <string>
#include <string_view>

#include "cache/status.h"
#include "proxy/config.h"
#include "proxy/reference.h"
#include "proxy/routes.h"

namespace regcache::proxy {

struct ImageRef {
  Repository repository;  // routed as a request for its name would be
  Reference reference;    // a tag ("latest" when none was written) or a digest

  // The full reference: "<repository key>:<tag>" or "<repository key>@<digest>", e.g.
  // "docker.io/library/alpine:3.19". What export writes as org.opencontainers.image.ref.name.
  std::string str() const;
};

// Parses `[NAME][:TAG][@DIGEST]` where NAME's first component selects an upstream when it is
// one's name ("docker.io/library/alpine", "ghcr.io/org/app"), a local namespace when it is
// one, else the default upstream ("alpine" is docker.io's "library/alpine"): DESIGN.md's
// routing rules without ns=. A missing tag means "latest"; with both a tag and a digest the
// digest wins. kInvalidArgument for a malformed name, tag or digest; kNotFound when no
// upstream or namespace takes the name. The result points into `config`, which must outlive it.
Result<ImageRef> parseImageRef(const Config& config, std::string_view text);

}  // namespace regcache::proxy
