// WWW-Authenticate parsing, the token endpoint's URL and answer, and the token cache.
#include "upstream/auth.h"

#include <catch2/catch.hpp>

#include "upstream/client.h"

namespace regcache::upstream {
namespace {

TEST_CASE("parseChallenge: reads the challenge forms registries send", "[upstream][auth]") {
  struct Row {
    const char* header;
    const char* scheme;
    const char* realm;
    const char* service;
    const char* scope;
  };
  const Row rows[] = {
      // Docker Hub's exact form.
      {R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",)"
       R"(scope="repository:library/alpine:pull")",
       "bearer", "https://auth.docker.io/token", "registry.docker.io",
       "repository:library/alpine:pull"},
      // A comma inside a quoted value does not end the parameter.
      {R"(Bearer realm="https://ghcr.io/token",service="ghcr.io",)"
       R"(scope="repository:org/app:pull,push")",
       "bearer", "https://ghcr.io/token", "ghcr.io", "repository:org/app:pull,push"},
      // Scheme and parameter names ignore case; spaces around '=' and ','; token values.
      {R"(BEARER  Realm = "https://r/t" ,  SERVICE=svc.example)", "bearer", "https://r/t",
       "svc.example", ""},
      // quoted-pair escapes.
      {R"(Bearer realm="https://r/\"q\"\\x",service="a\,b")", "bearer", R"(https://r/"q"\x)", "a,b",
       ""},
      // Unknown parameters are skipped; a repeated one keeps its first value.
      {R"(Bearer error="invalid_token", realm="https://r/t", realm="https://evil/t")", "bearer",
       "https://r/t", "", ""},
      // An empty list element is allowed.
      {R"(Bearer ,realm="https://r/t")", "bearer", "https://r/t", "", ""},
      {R"(Basic realm="Registry Realm")", "basic", "Registry Realm", "", ""},
      {"Basic", "basic", "", "", ""},
      {"basic realm=registry", "basic", "registry", "", ""},
      // A token68 credential form parses; only the scheme is kept.
      {"Negotiate YIIBhwYGKwYBBQUCoIIB==", "negotiate", "", "", ""},
  };
  for (const Row& row : rows) {
    INFO(row.header);
    Result<Challenge> challenge = parseChallenge(row.header);
    REQUIRE(challenge.isOk());
    CHECK(challenge->scheme == row.scheme);
    CHECK(challenge->realm == row.realm);
    CHECK(challenge->service == row.service);
    CHECK(challenge->scope == row.scope);
  }
}

TEST_CASE("parseChallenge: refuses malformed values", "[upstream][auth]") {
  const char* rows[] = {
      "",
      "   ",
      R"(realm="x")",
      R"("Bearer")",
      R"(Bearer realm="https://r/t)",
      R"(Bearer realm="x" junk)",
      R"(Bearer realm="x"\)",
      R"(Bearer a b)",
      R"(Bearer realm=,service="x")",
      "Bearer realm=\"x\\",
  };
  for (const char* header : rows) {
    INFO(header);
    Result<Challenge> challenge = parseChallenge(header);
    REQUIRE_FALSE(challenge.isOk());
    CHECK(challenge.status().code() == Code::kInvalidArgument);
  }
}

TEST_CASE("parseChallenges: splits several challenges in one value", "[upstream][auth]") {
  Result<std::vector<Challenge>> all =
      parseChallenges(R"(Basic realm="b, c", Bearer realm="https://r/t",service="s", Negotiate)");
  REQUIRE(all.isOk());
  REQUIRE(all->size() == 3);
  CHECK((*all)[0].scheme == "basic");
  CHECK((*all)[0].realm == "b, c");
  CHECK((*all)[1].scheme == "bearer");
  CHECK((*all)[1].realm == "https://r/t");
  CHECK((*all)[1].service == "s");
  CHECK((*all)[2].scheme == "negotiate");
}

TEST_CASE("tokenUrl: adds service and scope, percent-encoded", "[upstream][auth]") {
  Challenge challenge;
  challenge.realm = "https://auth.docker.io/token";
  challenge.service = "registry.docker.io";
  CHECK(tokenUrl(challenge, "repository:library/alpine:pull") ==
        "https://auth.docker.io/token?service=registry.docker.io"
        "&scope=repository%3Alibrary%2Falpine%3Apull");

  challenge.realm = "https://r/t?client=x";
  challenge.service = "";
  CHECK(tokenUrl(challenge, "a b") == "https://r/t?client=x&scope=a%20b");
  CHECK(tokenUrl(challenge, "") == "https://r/t?client=x");
}

TEST_CASE("parseTokenResponse: token or access_token, expires_in defaults to 60 s",
          "[upstream][auth]") {
  Result<TokenGrant> docker =
      parseTokenResponse(R"({"token":"abc","access_token":"abc","expires_in":300,)"
                         R"("issued_at":"2026-12-03T10:00:00Z"})");
  REQUIRE(docker.isOk());
  CHECK(docker->token == "abc");
  CHECK(docker->expires_in == std::chrono::seconds(300));

  Result<TokenGrant> oauth = parseTokenResponse(R"({"access_token":"x\"y"})");
  REQUIRE(oauth.isOk());
  CHECK(oauth->token == "x\"y");
  CHECK(oauth->expires_in == std::chrono::seconds(60));

  CHECK_FALSE(parseTokenResponse("{}").isOk());
  CHECK_FALSE(parseTokenResponse(R"({"token":""})").isOk());
  CHECK_FALSE(parseTokenResponse("not json").isOk());
}

TEST_CASE("TokenCache: keeps a token per upstream and scope until shortly before expiry",
          "[upstream][auth]") {
  auto now = std::make_shared<std::chrono::steady_clock::time_point>();
  TokenCache cache([now] { return *now; });

  cache.put("docker.io", "repository:a:pull", "t1", std::chrono::seconds(300));
  CHECK(cache.get("docker.io", "repository:a:pull") == std::optional<std::string>("t1"));
  CHECK_FALSE(cache.get("docker.io", "repository:b:pull"));
  CHECK_FALSE(cache.get("ghcr.io", "repository:a:pull"));

  *now += std::chrono::seconds(285);
  CHECK(cache.get("docker.io", "repository:a:pull"));
  *now += std::chrono::seconds(10);  // 295 s: inside the 10 s safety margin
  CHECK_FALSE(cache.get("docker.io", "repository:a:pull"));

  cache.put("docker.io", "repository:a:pull", "t2", std::chrono::seconds(0));
  CHECK_FALSE(cache.get("docker.io", "repository:a:pull"));
}

}  // namespace
}  // namespace regcache::upstream
