// The upstream client against a fake registry on loopback: responses, keep-alive, redirects,
// cancellation and re-entrancy.
#include <event2/buffer.h>

#include <catch2/catch.hpp>
#include <mutex>

#include "tests/unit/upstream/fake_upstream.h"

namespace regcache::upstream {
namespace {

using namespace std::chrono_literals;
using testing::FakeUpstream;
using testing::fastOptions;
using testing::get;
using testing::Outcome;
using testing::respond;
namespace http = regcache::proxy::http;
using testing::Seen;
using testing::TestLoop;

TEST_CASE("Client: a GET delivers status, lowercased headers and body", "[upstream]") {
  FakeUpstream fake([](const Seen&, const std::string&) {
    return respond(200, "hello",
                   {{"Docker-Content-Digest", "sha256:abc"}, {"Content-Type", "text/plain"}});
  });
  REQUIRE(fake.started());
  TestLoop loop;
  Client client(loop.base(), std::make_shared<TokenCache>());
  UpstreamOptions options = fastOptions(fake.url());

  Request request = get("/v2/library/alpine/manifests/latest?x=1");
  request.headers.emplace_back("Accept", "application/vnd.oci.image.index.v1+json");
  Outcome outcome;
  client.start(options, request, outcome.callbacks());
  CHECK(client.active() == 1);
  REQUIRE(loop.runUntil([&] { return outcome.finished(); }));

  REQUIRE(outcome.status->isOk());
  CHECK(outcome.heads == 1);
  CHECK(outcome.dones == 1);
  CHECK(outcome.head.status == 200);
  REQUIRE(outcome.head.header("docker-content-digest") != nullptr);
  CHECK(*outcome.head.header("docker-content-digest") == "sha256:abc");
  CHECK(outcome.head.contentLength() == std::optional<uint64_t>(5));
  CHECK(outcome.head.final_url == fake.url() + "/v2/library/alpine/manifests/latest?x=1");
  CHECK(outcome.body == "hello");
  CHECK(client.active() == 0);

  std::vector<Seen> seen = fake.requests();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].method == "GET");
  CHECK(seen[0].query == "x=1");
  CHECK(seen[0].header("accept") == "application/vnd.oci.image.index.v1+json");
  CHECK(seen[0].header("user-agent") == "regcache");
  CHECK_FALSE(seen[0].has("authorization"));
}

TEST_CASE("Client: HEAD delivers the headers and no body", "[upstream]") {
  FakeUpstream fake([](const Seen&, const std::string&) {
    http::Response response = respond(200, "", {{"Docker-Content-Digest", "sha256:def"}});
    response.head_length = 1234;
    return response;
  });
  TestLoop loop;
  Client client(loop.base(), nullptr);
  UpstreamOptions options = fastOptions(fake.url());

  Request request = get("/v2/a/manifests/1");
  request.method = "HEAD";
  Outcome outcome;
  client.start(options, request, outcome.callbacks());
  REQUIRE(loop.runUntil([&] { return outcome.finished(); }));

  REQUIRE(outcome.status->isOk());
  CHECK(outcome.heads == 1);
  CHECK(outcome.head.status == 200);
  CHECK(outcome.head.contentLength() == std::optional<uint64_t>(1234));
  CHECK(outcome.body.empty());
  REQUIRE(fake.requests().size() == 1);
  CHECK(fake.requests()[0].method == "HEAD");
}

TEST_CASE("Client: sequential requests reuse one keep-alive connection", "[upstream]") {
  FakeUpstream fake([](const Seen&, const std::string&) { return respond(200, "x"); });
  TestLoop loop;
  Client client(loop.base(), nullptr);
  UpstreamOptions options = fastOptions(fake.url());

  for (int i = 0; i < 3; ++i) {
    Outcome outcome;
    client.start(options, get("/v2/a/blobs/" + std::to_string(i)), outcome.callbacks());
    REQUIRE(loop.runUntil([&] { return outcome.finished(); }));
    REQUIRE(outcome.status->isOk());
  }

  std::vector<Seen> seen = fake.requests();
  REQUIRE(seen.size() == 3);
  CHECK(seen[1].peer == seen[0].peer);
  CHECK(seen[2].peer == seen[0].peer);
}

TEST_CASE("Client: a 404 is delivered as a response, not an error", "[upstream]") {
  FakeUpstream fake([](const Seen&, const std::string&) {
    return respond(404, R"({"errors":[{"code":"MANIFEST_UNKNOWN"}]})");
  });
  TestLoop loop;
  Client client(loop.base(), nullptr);
  UpstreamOptions options = fastOptions(fake.url());

  Outcome outcome;
  client.start(options, get("/v2/a/manifests/nope"), outcome.callbacks());
  REQUIRE(loop.runUntil([&] { return outcome.finished(); }));
  REQUIRE(outcome.status->isOk());
  CHECK(outcome.head.status == 404);
  CHECK(outcome.body.find("MANIFEST_UNKNOWN") != std::string::npos);
  CHECK(fake.requests().size() == 1);
}

TEST_CASE("Client: a redirect to another host drops Authorization, the same host keeps it",
          "[upstream]") {
  FakeUpstream cdn([](const Seen&, const std::string&) { return respond(200, "layer-bytes"); },
                   "127.0.0.2");
  REQUIRE(cdn.started());
  std::string cdn_url = cdn.url();
  FakeUpstream registry([cdn_url](const Seen& request, const std::string&) {
    if (request.path == "/v2/x/blobs/cdn") {
      return respond(307, "", {{"Location", cdn_url + "/signed/blob?sig=s3cret"}});
    }
    if (request.path == "/v2/x/blobs/moved") {
      return respond(307, "", {{"Location", "/v2/x/blobs/here"}});
    }
    return respond(200, "same-host-bytes");
  });
  TestLoop loop;
  auto tokens = std::make_shared<TokenCache>();
  tokens->put("fake", "repository:x:pull", "the-token", std::chrono::seconds(300));
  Client client(loop.base(), tokens);
  UpstreamOptions options = fastOptions(registry.url());

  SECTION("cross-host: the CDN sees no credentials") {
    Request request = get("/v2/x/blobs/cdn", "x");
    request.streaming = true;
    Outcome outcome;
    client.start(options, request, outcome.callbacks());
    REQUIRE(loop.runUntil([&] { return outcome.finished(); }));

    REQUIRE(outcome.status->isOk());
    CHECK(outcome.head.status == 200);
    CHECK(outcome.body == "layer-bytes");
    CHECK(outcome.head.final_url == cdn_url + "/signed/blob?sig=s3cret");
    REQUIRE(registry.requests().size() == 1);
    CHECK(registry.requests()[0].header("authorization") == "Bearer the-token");
    REQUIRE(cdn.requests().size() == 1);
    CHECK(cdn.requests()[0].query == "sig=s3cret");
    CHECK_FALSE(cdn.requests()[0].has("authorization"));
  }

  SECTION("same host: the token goes along") {
    Request request = get("/v2/x/blobs/moved", "x");
    request.streaming = true;
    Outcome outcome;
    client.start(options, request, outcome.callbacks());
    REQUIRE(loop.runUntil([&] { return outcome.finished(); }));

    REQUIRE(outcome.status->isOk());
    CHECK(outcome.body == "same-host-bytes");
    std::vector<Seen> seen = registry.requests();
    REQUIRE(seen.size() == 2);
    CHECK(seen[1].path == "/v2/x/blobs/here");
    CHECK(seen[0].header("authorization") == "Bearer the-token");
    CHECK(seen[1].header("authorization") == "Bearer the-token");
    CHECK(cdn.requests().empty());
  }
}

// Lets a test tell a waiting body source, from the client's side, that it may go on.
struct Gate {
  std::mutex mu;
  proxy::Loop* loop = nullptr;  // guarded by mu
  std::function<void()> wake;   // guarded by mu
  bool open = false;            // guarded by mu

  void release() {
    std::lock_guard<std::mutex> lock(mu);
    open = true;
    if (loop != nullptr && wake) {
      loop->post(wake);
    }
  }
};

// Sends `first` bytes, waits until the gate opens (if ever), then answers `then` (kFailed cuts
// the connection). The wait makes sure the first bytes reached the client before the cut.
class GatedSource : public http::BodySource {
 public:
  GatedSource(size_t first, Pull then, std::shared_ptr<Gate> gate, proxy::Loop* loop)
      : first_(first), then_(then), gate_(std::move(gate)), loop_(loop) {}
  void start(std::function<void()> wake) override {
    std::lock_guard<std::mutex> lock(gate_->mu);
    gate_->loop = loop_;
    gate_->wake = std::move(wake);
  }
  Pull pull(evbuffer* out, size_t max_bytes) override {
    if (!sent_) {
      std::string chunk(std::min(max_bytes, first_), 'b');
      evbuffer_add(out, chunk.data(), chunk.size());
      sent_ = true;
    }
    std::lock_guard<std::mutex> lock(gate_->mu);
    return gate_->open ? then_ : Pull::kWait;
  }

 private:
  size_t first_;
  Pull then_;
  std::shared_ptr<Gate> gate_;
  proxy::Loop* loop_;
  bool sent_ = false;
};

http::Response sourceResponse(const Seen& seen, size_t first, http::BodySource::Pull then,
                              uint64_t length, std::shared_ptr<Gate> gate = nullptr) {
  http::Response response;
  if (gate == nullptr) {
    gate = std::make_shared<Gate>();
  }
  response.source = std::make_shared<GatedSource>(first, then, std::move(gate), seen.loop);
  response.source_length = length;
  return response;
}

TEST_CASE("Client: a streamed body cut short fails without a retry once bytes were delivered",
          "[upstream]") {
  auto gate = std::make_shared<Gate>();
  FakeUpstream fake([gate](const Seen& seen, const std::string&) {
    return sourceResponse(seen, 1000, http::BodySource::Pull::kFailed, 2000, gate);
  });
  TestLoop loop;
  Client client(loop.base(), nullptr);
  UpstreamOptions options = fastOptions(fake.url());

  Request request = get("/v2/a/blobs/sha256:1");
  request.streaming = true;
  Outcome outcome;
  Callbacks callbacks = outcome.callbacks();
  callbacks.on_data = [&](std::string_view data) {
    outcome.body.append(data);
    if (outcome.body.size() == 1000) {
      gate->release();
    }
    return true;
  };
  client.start(options, request, std::move(callbacks));
  REQUIRE(loop.runUntil([&] { return outcome.finished(); }));

  CHECK(outcome.status->code() == Code::kUnavailable);
  CHECK(outcome.heads == 1);
  CHECK(outcome.head.status == 200);
  CHECK(outcome.body == std::string(1000, 'b'));
  CHECK(fake.requests().size() == 1);
}

TEST_CASE("Client: a non-streaming body cut short is retried", "[upstream]") {
  std::atomic<int> calls{0};
  auto gate = std::make_shared<Gate>();
  gate->open = true;  // cut at once: nothing is delivered before the retry anyway
  FakeUpstream fake([&calls, gate](const Seen& seen, const std::string&) {
    if (calls++ == 0) {
      return sourceResponse(seen, 10, http::BodySource::Pull::kFailed, 20, gate);
    }
    return respond(200, std::string(20, 'm'));
  });
  TestLoop loop;
  Client client(loop.base(), nullptr);
  UpstreamOptions options = fastOptions(fake.url());

  Outcome outcome;
  client.start(options, get("/v2/a/manifests/1"), outcome.callbacks());
  REQUIRE(loop.runUntil([&] { return outcome.finished(); }));

  REQUIRE(outcome.status->isOk());
  CHECK(outcome.heads == 1);
  CHECK(outcome.body == std::string(20, 'm'));
  CHECK(fake.requests().size() == 2);
}

TEST_CASE("Client: a streamed body that stalls fails after stall_timeout", "[upstream]") {
  FakeUpstream fake([](const Seen& seen, const std::string&) {
    return sourceResponse(seen, 100, http::BodySource::Pull::kWait, 2000);
  });
  TestLoop loop;
  Client client(loop.base(), nullptr);
  UpstreamOptions options = fastOptions(fake.url());
  options.stall_timeout = 1s;

  Request request = get("/v2/a/blobs/sha256:2");
  request.streaming = true;
  Outcome outcome;
  auto started = std::chrono::steady_clock::now();
  client.start(options, request, outcome.callbacks());
  REQUIRE(loop.runUntil([&] { return outcome.finished(); }));
  auto elapsed = std::chrono::steady_clock::now() - started;

  CHECK(outcome.status->code() == Code::kUnavailable);
  CHECK(outcome.body.size() == 100);
  CHECK(elapsed >= 900ms);
  CHECK(elapsed < 5s);
  CHECK(fake.requests().size() == 1);
}

TEST_CASE("Client: a paused body waits for resume, without a stall timeout", "[upstream]") {
  const std::string blob(4 << 20, 'p');
  FakeUpstream fake([&blob](const Seen&, const std::string&) { return respond(200, blob); });
  TestLoop loop;
  Client client(loop.base(), nullptr);
  UpstreamOptions options = fastOptions(fake.url());
  options.stall_timeout = 300ms;

  Request request = get("/v2/a/blobs/sha256:4");
  request.streaming = true;
  Outcome outcome;
  Callbacks callbacks = outcome.callbacks();
  Client::TransferId id = 0;
  int deliveries = 0;
  callbacks.on_data = [&](std::string_view data) {
    outcome.body.append(data);
    if (++deliveries == 1) client.pause(id);
    return true;
  };
  id = client.start(options, request, std::move(callbacks));
  REQUIRE(loop.runUntil([&] { return deliveries > 0; }));
  loop.runFor(1000ms);  // past three stall timeouts
  CHECK(deliveries == 1);
  CHECK_FALSE(outcome.finished());
  size_t before = outcome.body.size();
  CHECK(before < blob.size());

  client.resume(id);
  REQUIRE(loop.runUntil([&] { return outcome.finished(); }));
  REQUIRE(outcome.status->isOk());
  CHECK(outcome.body == blob);
  CHECK(deliveries > 1);
  CHECK(fake.requests().size() == 1);
}

TEST_CASE("Client: on_data returning false aborts the transfer", "[upstream]") {
  FakeUpstream fake([](const Seen&, const std::string&) { return respond(200, "abc"); });
  TestLoop loop;
  Client client(loop.base(), nullptr);
  UpstreamOptions options = fastOptions(fake.url());

  Request request = get("/v2/a/blobs/sha256:3");
  request.streaming = true;
  Outcome outcome;
  Callbacks callbacks = outcome.callbacks();
  callbacks.on_data = [](std::string_view) { return false; };
  client.start(options, request, std::move(callbacks));
  REQUIRE(loop.runUntil([&] { return outcome.finished(); }));

  CHECK(outcome.status->code() == Code::kUnavailable);
  CHECK(outcome.status->message() == "aborted");
  CHECK(fake.requests().size() == 1);
}

TEST_CASE("Client: a cancelled transfer runs no callback", "[upstream]") {
  FakeUpstream fake([](const Seen& seen, const std::string&) {
    if (seen.path == "/quick") {
      return respond(200, "ok");
    }
    return sourceResponse(seen, 100, http::BodySource::Pull::kWait, 2000);
  });
  TestLoop loop;
  Client client(loop.base(), nullptr);
  UpstreamOptions options = fastOptions(fake.url());
  Request request = get("/v2/a/blobs/sha256:4");
  request.streaming = true;

  SECTION("cancelled before the loop ran") {
    Outcome outcome;
    Client::TransferId id = client.start(options, request, outcome.callbacks());
    client.cancel(id);
    client.cancel(id);      // twice: ignored
    client.cancel(id + 7);  // unknown: ignored
    CHECK(client.active() == 0);
    loop.runFor(200ms);
    CHECK(outcome.heads == 0);
    CHECK(outcome.dones == 0);
  }

  SECTION("cancelled from its own on_data") {
    Outcome outcome;
    Client::TransferId id = 0;
    Callbacks callbacks = outcome.callbacks();
    int chunks = 0;
    callbacks.on_data = [&](std::string_view) {
      ++chunks;
      client.cancel(id);
      return true;
    };
    id = client.start(options, request, std::move(callbacks));
    REQUIRE(loop.runUntil([&] { return chunks > 0; }));
    CHECK(client.active() == 0);
    loop.runFor(200ms);
    CHECK(chunks == 1);
    CHECK(outcome.dones == 0);
  }

  SECTION("each of two finishing transfers cancels the other: one on_done runs") {
    Request quick = get("/quick");
    Outcome a;
    Outcome b;
    Client::TransferId a_id = 0;
    Client::TransferId b_id = 0;
    Callbacks a_callbacks = a.callbacks();
    a_callbacks.on_done = [&](Status) {
      ++a.dones;
      client.cancel(b_id);
    };
    Callbacks b_callbacks = b.callbacks();
    b_callbacks.on_done = [&](Status) {
      ++b.dones;
      client.cancel(a_id);
    };
    a_id = client.start(options, quick, std::move(a_callbacks));
    b_id = client.start(options, quick, std::move(b_callbacks));
    REQUIRE(loop.runUntil([&] { return a.dones + b.dones > 0; }));
    loop.runFor(100ms);
    CHECK(a.dones + b.dones == 1);
    CHECK(client.active() == 0);
  }
}

TEST_CASE("Client: destroying the client inside a callback is safe and silences the rest",
          "[upstream]") {
  FakeUpstream fake([](const Seen& seen, const std::string&) {
    return sourceResponse(seen, 100, http::BodySource::Pull::kWait, 2000);
  });
  TestLoop loop;
  auto client = std::make_unique<Client>(loop.base(), nullptr);
  UpstreamOptions options = fastOptions(fake.url());
  Request request = get("/v2/a/blobs/sha256:5");
  request.streaming = true;

  Outcome other;
  client->start(options, request, other.callbacks());
  Outcome outcome;
  Callbacks callbacks = outcome.callbacks();
  callbacks.on_data = [&](std::string_view) {
    client.reset();
    return true;
  };
  client->start(options, request, std::move(callbacks));
  REQUIRE(loop.runUntil([&] { return client == nullptr; }));
  loop.runFor(200ms);
  CHECK(outcome.dones == 0);
  CHECK(other.dones == 0);
}

}  // namespace
}  // namespace regcache::upstream
