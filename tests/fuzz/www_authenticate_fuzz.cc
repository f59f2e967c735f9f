// Fuzzes upstream auth parsing: WWW-Authenticate challenges (one or several) and the token
// endpoint's JSON answer.
//
// Input: the whole input is tried as a WWW-Authenticate value and as a token response.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/fuzz_check.h"
#include "upstream/auth.h"
#include "upstream/client.h"

namespace regcache::upstream {
namespace {

bool isLowercase(std::string_view s) {
  for (char c : s) {
    if (c >= 'A' && c <= 'Z') {
      return false;
    }
  }
  return true;
}

void checkChallenges(std::string_view header) {
  Result<std::vector<Challenge>> all = parseChallenges(header);
  Result<Challenge> first = parseChallenge(header);
  FUZZ_CHECK(all.isOk() == first.isOk());
  if (!all) {
    FUZZ_CHECK(all.status().code() == Code::kInvalidArgument);
    return;
  }
  FUZZ_CHECK(!all->empty());
  for (const Challenge& challenge : *all) {
    FUZZ_CHECK(!challenge.scheme.empty() && isLowercase(challenge.scheme));
    // The token URL is built from the challenge; it must start with the realm as given.
    std::string url = tokenUrl(challenge, "repository:library/alpine:pull");
    FUZZ_CHECK(url.starts_with(challenge.realm));
  }
  const Challenge& front = all->front();
  FUZZ_CHECK(first->scheme == front.scheme && first->realm == front.realm &&
             first->service == front.service && first->scope == front.scope);
}

void checkTokenResponse(std::string_view body) {
  Result<TokenGrant> grant = parseTokenResponse(body);
  if (!grant) {
    FUZZ_CHECK(grant.status().code() == Code::kInvalidArgument);
    return;
  }
  FUZZ_CHECK(!grant->token.empty());
  FUZZ_CHECK(grant->expires_in.count() >= 1);
}

}  // namespace
}  // namespace regcache::upstream

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  regcache::upstream::checkChallenges(input);
  regcache::upstream::checkTokenResponse(input);
  return 0;
}
