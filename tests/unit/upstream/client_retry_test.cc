// The upstream client's retry policy: 5xx and connection failures with backoff, 429 with
// Retry-After, and what is delivered when the attempts run out.
#include <curl/curl.h>

#include <catch2/catch.hpp>
#include <ctime>

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

// Answers the first `failures` requests with `failure`, then 200 "ok".
FakeUpstream::Route failThenSucceed(std::shared_ptr<std::atomic<int>> calls, int failures,
                                    std::function<http::Response()> failure) {
  return [calls, failures, failure](const Seen&, const std::string&) {
    if ((*calls)++ < failures) {
      return failure();
    }
    return respond(200, "ok");
  };
}

std::chrono::milliseconds gap(const Seen& a, const Seen& b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b.at - a.at);
}

TEST_CASE("Client: 503 twice then 200 delivers the 200 after three attempts", "[upstream]") {
  auto calls = std::make_shared<std::atomic<int>>(0);
  FakeUpstream fake(failThenSucceed(calls, 2, [] { return respond(503, "busy"); }));
  TestLoop loop;
  Client client(loop.base(), nullptr);
  UpstreamOptions options = fastOptions(fake.url());
  options.max_attempts = 3;
  bool streaming = GENERATE(false, true);
  INFO("streaming=" << streaming);

  Request request = get("/v2/a/manifests/1");
  request.streaming = streaming;
  Outcome outcome;
  client.start(options, request, outcome.callbacks());
  REQUIRE(loop.runUntil([&] { return outcome.finished(); }));

  REQUIRE(outcome.status->isOk());
  CHECK(outcome.heads == 1);
  CHECK(outcome.head.status == 200);
  CHECK(outcome.body == "ok");  // the 503 bodies were never delivered
  CHECK(fake.requests().size() == 3);
}

TEST_CASE("Client: exhausted retries deliver the last 5xx as the response", "[upstream]") {
  FakeUpstream fake([](const Seen&, const std::string&) { return respond(503, "still busy"); });
  TestLoop loop;
  Client client(loop.base(), nullptr);
  UpstreamOptions options = fastOptions(fake.url());
  options.max_attempts = 3;

  Outcome outcome;
  client.start(options, get("/v2/a/manifests/1"), outcome.callbacks());
  REQUIRE(loop.runUntil([&] { return outcome.finished(); }));

  REQUIRE(outcome.status->isOk());
  CHECK(outcome.heads == 1);
  CHECK(outcome.head.status == 503);
  CHECK(outcome.body == "still busy");
  CHECK(fake.requests().size() == 3);
}

TEST_CASE("Client: backoff doubles between attempts", "[upstream]") {
  FakeUpstream fake([](const Seen&, const std::string&) { return respond(502, ""); });
  TestLoop loop;
  Client client(loop.base(), nullptr);
  UpstreamOptions options = fastOptions(fake.url());
  options.max_attempts = 3;
  options.backoff_base = 100ms;

  Outcome outcome;
  client.start(options, get("/v2/a/manifests/1"), outcome.callbacks());
  REQUIRE(loop.runUntil([&] { return outcome.finished(); }));

  std::vector<Seen> seen = fake.requests();
  REQUIRE(seen.size() == 3);
  // Equal jitter: the wait after attempt n is within [base * 2^(n-1) / 2, base * 2^(n-1)].
  CHECK(gap(seen[0], seen[1]) >= 45ms);
  CHECK(gap(seen[1], seen[2]) >= 95ms);
  CHECK(gap(seen[1], seen[2]) < 1000ms);
}

TEST_CASE("Client: 429 waits for Retry-After, then succeeds", "[upstream]") {
  auto calls = std::make_shared<std::atomic<int>>(0);
  std::string retry_after = GENERATE(std::string("1"), std::string("date"));
  INFO("Retry-After: " << retry_after);
  FakeUpstream fake(failThenSucceed(calls, 1, [retry_after] {
    std::string value = retry_after;
    if (value == "date") {
      // Two seconds ahead at one-second resolution: a wait of more than one second.
      time_t when = std::time(nullptr) + 2;
      char text[64];
      tm parts;
      gmtime_r(&when, &parts);
      strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &parts);
      value = text;
    }
    return respond(429, "slow down", {{"Retry-After", value}});
  }));
  TestLoop loop;
  Client client(loop.base(), nullptr);
  UpstreamOptions options = fastOptions(fake.url());

  Outcome outcome;
  client.start(options, get("/v2/a/manifests/1"), outcome.callbacks());
  REQUIRE(loop.runUntil([&] { return outcome.finished(); }));

  CHECK(outcome.head.status == 200);
  std::vector<Seen> seen = fake.requests();
  REQUIRE(seen.size() == 2);
  CHECK(gap(seen[0], seen[1]) >= 900ms);
  CHECK(gap(seen[0], seen[1]) < 3000ms);
}

TEST_CASE("Client: a Retry-After beyond max_retry_after is capped", "[upstream]") {
  auto calls = std::make_shared<std::atomic<int>>(0);
  FakeUpstream fake(failThenSucceed(calls, 1, [] {
    return respond(429, "", {{"Retry-After", "3600"}});
  }));
  TestLoop loop;
  Client client(loop.base(), nullptr);
  UpstreamOptions options = fastOptions(fake.url());
  options.max_retry_after = 50ms;

  Outcome outcome;
  client.start(options, get("/v2/a/manifests/1"), outcome.callbacks());
  REQUIRE(loop.runUntil([&] { return outcome.finished(); }, 5s));
  CHECK(outcome.head.status == 200);
  std::vector<Seen> seen = fake.requests();
  REQUIRE(seen.size() == 2);
  CHECK(gap(seen[0], seen[1]) >= 45ms);
}

TEST_CASE("Client: a refused connection ends kUnavailable after the retries", "[upstream]") {
  TestLoop loop;
  Client client(loop.base(), nullptr);
  UpstreamOptions options =
      fastOptions("http://127.0.0.1:" + std::to_string(testing::unusedPort()));
  options.max_attempts = 3;
  options.backoff_base = 20ms;

  Outcome outcome;
  auto started = std::chrono::steady_clock::now();
  client.start(options, get("/v2/a/manifests/1"), outcome.callbacks());
  REQUIRE(loop.runUntil([&] { return outcome.finished(); }));
  auto elapsed = std::chrono::steady_clock::now() - started;

  REQUIRE_FALSE(outcome.status->isOk());
  CHECK(outcome.status->code() == Code::kUnavailable);
  CHECK(outcome.status->message().find("connect") != std::string::npos);
  CHECK(outcome.heads == 0);
  CHECK(outcome.dones == 1);
  CHECK(elapsed >= 30ms);  // two backoffs of at least 10 ms and 20 ms
  CHECK(client.active() == 0);
}

TEST_CASE("Client: a 4xx other than 401 and 429 is not retried", "[upstream]") {
  FakeUpstream fake([](const Seen&, const std::string&) { return respond(403, "denied"); });
  TestLoop loop;
  Client client(loop.base(), nullptr);
  UpstreamOptions options = fastOptions(fake.url());

  Outcome outcome;
  client.start(options, get("/v2/a/manifests/1"), outcome.callbacks());
  REQUIRE(loop.runUntil([&] { return outcome.finished(); }));
  CHECK(outcome.head.status == 403);
  CHECK(fake.requests().size() == 1);
}

}  // namespace
}  // namespace regcache::upstream
