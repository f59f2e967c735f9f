// The upstream client's registry auth against a fake registry and token endpoint shaped like
// Docker Hub's.
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <catch2/catch.hpp>
#include <sstream>

#include "tests/unit/upstream/fake_upstream.h"

namespace regcache::upstream {
namespace {

using namespace std::chrono_literals;
using testing::FakeUpstream;
using testing::fastOptions;
using testing::get;
using testing::Outcome;
using testing::respond;
using testing::Seen;
using testing::TestLoop;
namespace http = regcache::proxy::http;

constexpr char kManifest[] = "/v2/library/alpine/manifests/latest";
constexpr char kUserPassBase64[] = "dXNlcjpwYXNz";  // "user:pass"

// A registry whose manifest wants `Bearer tok-N` and whose /token endpoint hands out tok-1,
// tok-2, ... for the right service, scope and Basic credentials.
struct DockerLikeRegistry {
  std::atomic<int> tokens_issued{0};
  std::atomic<bool> reject_all_tokens{false};
  FakeUpstream fake{[this](const Seen& r, const std::string& base) { return route(r, base); }};

  http::Response route(const Seen& r, const std::string& base) {
    if (r.path == "/token") {
      bool right_query =
          r.query == "service=registry.test&scope=repository%3Alibrary%2Falpine%3Apull";
      bool anonymous = !r.has("authorization");
      bool right_user = r.header("authorization") == std::string("Basic ") + kUserPassBase64;
      if (!right_query || !(anonymous || right_user)) {
        return respond(401, R"({"details":"incorrect username or password"})");
      }
      std::string token = "tok-" + std::to_string(++tokens_issued);
      return respond(200, R"({"token":")" + token + R"(","expires_in":300})");
    }
    std::string auth = r.header("authorization");
    if (!reject_all_tokens && auth.rfind("Bearer tok-", 0) == 0) {
      return respond(200, "manifest-bytes", {{"Docker-Content-Digest", "sha256:m"}});
    }
    std::string challenge = "Bearer realm=\"" + base +
                            "/token\",service=\"registry.test\","
                            "scope=\"repository:library/alpine:pull\"";
    return respond(401, R"({"errors":[{"code":"UNAUTHORIZED"}]})",
                   {{"WWW-Authenticate", challenge}});
  }
};

Outcome fetch(TestLoop& loop, Client& client, const UpstreamOptions& options,
              std::string path = kManifest) {
  Outcome outcome;
  client.start(options, get(std::move(path), "library/alpine"), outcome.callbacks());
  REQUIRE(loop.runUntil([&] { return outcome.finished(); }));
  return outcome;
}

TEST_CASE("Client: a Bearer challenge is answered with a token, which later requests reuse",
          "[upstream][auth]") {
  DockerLikeRegistry registry;
  TestLoop loop;
  Client client(loop.base(), std::make_shared<TokenCache>());
  UpstreamOptions options = fastOptions(registry.fake.url());
  options.username = "user";
  options.password = "pass";

  Outcome first = fetch(loop, client, options);
  REQUIRE(first.status->isOk());
  CHECK(first.heads == 1);
  CHECK(first.head.status == 200);
  CHECK(first.body == "manifest-bytes");  // the 401's body is not delivered
  std::vector<Seen> seen = registry.fake.requests();
  REQUIRE(seen.size() == 3);
  CHECK_FALSE(seen[0].has("authorization"));
  CHECK(seen[1].path == "/token");
  CHECK(seen[1].header("authorization") == std::string("Basic ") + kUserPassBase64);
  CHECK(seen[2].header("authorization") == "Bearer tok-1");

  Outcome second = fetch(loop, client, options);
  REQUIRE(second.status->isOk());
  CHECK(second.head.status == 200);
  CHECK(registry.fake.count("/token") == 1);
  seen = registry.fake.requests();
  REQUIRE(seen.size() == 4);
  CHECK(seen[3].header("authorization") == "Bearer tok-1");
}

TEST_CASE("Client: anonymous token requests carry no credentials", "[upstream][auth]") {
  DockerLikeRegistry registry;
  TestLoop loop;
  Client client(loop.base(), std::make_shared<TokenCache>());
  UpstreamOptions options = fastOptions(registry.fake.url());

  Outcome outcome = fetch(loop, client, options);
  REQUIRE(outcome.status->isOk());
  CHECK(outcome.head.status == 200);
  std::vector<Seen> seen = registry.fake.requests();
  REQUIRE(seen.size() == 3);
  CHECK_FALSE(seen[1].has("authorization"));
}

TEST_CASE("Client: an expired token is fetched again", "[upstream][auth]") {
  DockerLikeRegistry registry;
  auto now =
      std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
  auto tokens = std::make_shared<TokenCache>([now] { return *now; });
  TestLoop loop;
  Client client(loop.base(), tokens);
  UpstreamOptions options = fastOptions(registry.fake.url());

  REQUIRE(fetch(loop, client, options).head.status == 200);
  *now += 100s;
  REQUIRE(fetch(loop, client, options).head.status == 200);
  CHECK(registry.fake.count("/token") == 1);

  *now += 300s;  // past tok-1's 300 s
  Outcome outcome = fetch(loop, client, options);
  CHECK(outcome.head.status == 200);
  CHECK(registry.fake.count("/token") == 2);
  std::vector<Seen> seen = registry.fake.requests();
  CHECK_FALSE(seen[seen.size() - 3].has("authorization"));
  CHECK(seen.back().header("authorization") == "Bearer tok-2");
}

TEST_CASE("Client: a cached token the registry rejects is replaced by a fresh one",
          "[upstream][auth]") {
  DockerLikeRegistry registry;
  auto tokens = std::make_shared<TokenCache>();
  tokens->put("fake", "repository:library/alpine:pull", "revoked", 300s);
  TestLoop loop;
  Client client(loop.base(), tokens);
  UpstreamOptions options = fastOptions(registry.fake.url());

  Outcome outcome = fetch(loop, client, options);
  CHECK(outcome.head.status == 200);
  std::vector<Seen> seen = registry.fake.requests();
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].header("authorization") == "Bearer revoked");
  CHECK(seen[2].header("authorization") == "Bearer tok-1");
  CHECK(tokens->get("fake", "repository:library/alpine:pull") ==
        std::optional<std::string>("tok-1"));
}

TEST_CASE("Client: refused credentials deliver the registry's 401", "[upstream][auth]") {
  DockerLikeRegistry registry;
  TestLoop loop;
  Client client(loop.base(), std::make_shared<TokenCache>());
  UpstreamOptions options = fastOptions(registry.fake.url());
  options.username = "user";
  options.password = "wrong";

  Outcome outcome = fetch(loop, client, options);
  REQUIRE(outcome.status->isOk());
  CHECK(outcome.heads == 1);
  CHECK(outcome.head.status == 401);
  CHECK(outcome.head.header("www-authenticate") != nullptr);
  CHECK(outcome.body.find("UNAUTHORIZED") != std::string::npos);
  CHECK(registry.fake.count(kManifest) == 1);
  CHECK(registry.fake.count("/token") == 1);
}

TEST_CASE("Client: a second 401 after a fresh token is delivered", "[upstream][auth]") {
  DockerLikeRegistry registry;
  registry.reject_all_tokens = true;
  TestLoop loop;
  Client client(loop.base(), std::make_shared<TokenCache>());
  UpstreamOptions options = fastOptions(registry.fake.url());

  Outcome outcome = fetch(loop, client, options);
  REQUIRE(outcome.status->isOk());
  CHECK(outcome.head.status == 401);
  CHECK(registry.fake.count(kManifest) == 2);
  CHECK(registry.fake.count("/token") == 1);
}

TEST_CASE("Client: a Basic challenge is answered with the configured credentials",
          "[upstream][auth]") {
  FakeUpstream fake([](const Seen& r, const std::string&) {
    if (r.header("authorization") == std::string("Basic ") + kUserPassBase64) {
      return respond(200, "private");
    }
    return respond(401, "", {{"WWW-Authenticate", R"(Basic realm="Registry Realm")"}});
  });
  TestLoop loop;
  Client client(loop.base(), std::make_shared<TokenCache>());
  UpstreamOptions options = fastOptions(fake.url());

  SECTION("with credentials: one retry, then 200") {
    options.username = "user";
    options.password = "pass";
    Outcome outcome = fetch(loop, client, options, "/v2/p/manifests/1");
    CHECK(outcome.head.status == 200);
    CHECK(outcome.body == "private");
    std::vector<Seen> seen = fake.requests();
    REQUIRE(seen.size() == 2);
    CHECK_FALSE(seen[0].has("authorization"));
  }

  SECTION("without credentials: the 401 is delivered") {
    Outcome outcome = fetch(loop, client, options, "/v2/p/manifests/1");
    REQUIRE(outcome.status->isOk());
    CHECK(outcome.head.status == 401);
    CHECK(fake.requests().size() == 1);
  }
}

TEST_CASE("Client: Basic credentials do not follow a redirect to another host",
          "[upstream][auth]") {
  FakeUpstream cdn([](const Seen&, const std::string&) { return respond(200, "blob"); },
                   "127.0.0.2");
  REQUIRE(cdn.started());
  std::string cdn_url = cdn.url();
  FakeUpstream fake([cdn_url](const Seen& r, const std::string&) {
    if (r.header("authorization") == std::string("Basic ") + kUserPassBase64) {
      return respond(307, "", {{"Location", cdn_url + "/blob"}});
    }
    return respond(401, "", {{"WWW-Authenticate", R"(Basic realm="Registry Realm")"}});
  });
  TestLoop loop;
  Client client(loop.base(), std::make_shared<TokenCache>());
  UpstreamOptions options = fastOptions(fake.url());
  options.username = "user";
  options.password = "pass";

  Request request = get("/v2/p/blobs/sha256:1", "p");
  request.streaming = true;
  Outcome outcome;
  client.start(options, request, outcome.callbacks());
  REQUIRE(loop.runUntil([&] { return outcome.finished(); }));

  CHECK(outcome.head.status == 200);
  CHECK(outcome.body == "blob");
  CHECK(fake.requests().size() == 2);
  REQUIRE(cdn.requests().size() == 1);
  CHECK_FALSE(cdn.requests()[0].has("authorization"));
}

TEST_CASE("Client: no token, password or Authorization header reaches the log",
          "[upstream][auth]") {
  std::ostringstream captured;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(captured);
  auto previous = spdlog::default_logger();
  auto capture = std::make_shared<spdlog::logger>("capture", sink);
  capture->set_level(spdlog::level::trace);
  spdlog::set_default_logger(capture);
  {
    DockerLikeRegistry registry;
    TestLoop loop;
    Client client(loop.base(), std::make_shared<TokenCache>());
    UpstreamOptions options = fastOptions(registry.fake.url());
    options.username = "user";
    options.password = "pass";
    CHECK(fetch(loop, client, options).head.status == 200);
  }
  spdlog::set_default_logger(previous);

  std::string log = captured.str();
  CHECK(log.find("upstream.request") != std::string::npos);  // the capture worked
  CHECK(log.find("tok-1") == std::string::npos);
  CHECK(log.find(kUserPassBase64) == std::string::npos);
  CHECK(log.find("pass") == std::string::npos);
  CHECK(log.find("Bearer tok") == std::string::npos);
}

}  // namespace
}  // namespace regcache::upstream
