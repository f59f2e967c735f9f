// Registry auth pieces the Client uses internally: every challenge in a WWW-Authenticate
// value, the token endpoint's URL, and its JSON answer. Pure functions, any thread.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "cache/status.h"
#include "upstream/client.h"

namespace regcache::upstream {

// Every challenge in one WWW-Authenticate value, in order ("Bearer realm=..., Basic realm=..."
// is two). kInvalidArgument when any part is malformed.
Result<std::vector<Challenge>> parseChallenges(std::string_view header);

// The token request for a Bearer challenge: the realm with `service` and `scope` added as
// query parameters (each only when non-empty), percent-encoded.
std::string tokenUrl(const Challenge& challenge, std::string_view scope);

// A token endpoint's answer: {"token": ..} or {"access_token": ..}, with "expires_in" in
// seconds (60 when absent, as the Docker token spec says).
struct TokenGrant {
  std::string token;
  std::chrono::seconds expires_in{60};
};
// kInvalidArgument when the body is not JSON or holds no token.
Result<TokenGrant> parseTokenResponse(std::string_view body);

}  // namespace regcache::upstream
