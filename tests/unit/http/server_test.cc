// The HTTP/1.1 server against a raw-socket client: framing, keep-alive, pipelining, bodies in
// and out, errors and timeouts.
#include <event2/buffer.h>
#include <fcntl.h>
#include <stdlib.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <mutex>
#include <random>
#include <vector>

#include "tests/unit/http/test_support.h"

using namespace regcache::proxy::http;
using namespace regcache::proxy::http::testing;

namespace {

// Answers with "<method> <target>" as the body.
std::unique_ptr<Handler> echoTarget(std::shared_ptr<Exchange> exchange) {
  const Request& request = exchange->request();
  exchange->respond(textResponse(200, request.method + " " + request.target));
  return nullptr;
}

// Collects the body and answers with it once complete.
std::unique_ptr<Handler> echoBody(std::shared_ptr<Exchange> exchange) {
  auto handler = std::make_unique<LambdaHandler>();
  auto body = std::make_shared<std::string>();
  handler->on_body = [body](std::string_view data) {
    body->append(data);
    return true;
  };
  handler->on_end = [exchange, body] { exchange->respond(textResponse(200, *body)); };
  return handler;
}

[[maybe_unused]] long residentKiB() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::stol(line.substr(6));
    }
  }
  return 0;
}

}  // namespace

TEST_CASE("Server: a GET gets its body with Content-Length and a HEAD gets none", "[http]") {
  TestServer t([](std::shared_ptr<Exchange> exchange) {
    Response response = textResponse(200, "hello world");
    response.headers.add("Docker-Content-Digest", "sha256:abc");
    exchange->respond(std::move(response));
    return nullptr;
  });
  REQUIRE(t.started);
  TestClient client(t.server.port());

  REQUIRE(client.send("HEAD /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto head = client.readResponse(/*head=*/true);
  REQUIRE(head);
  CHECK(head->status == 200);
  CHECK(head->header("content-length") == "11");
  CHECK(head->header("docker-content-digest") == "sha256:abc");
  CHECK(head->has("date"));

  // Had the HEAD carried a body, this response would not parse.
  REQUIRE(client.send("GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto get = client.readResponse();
  REQUIRE(get);
  CHECK(get->status == 200);
  CHECK(get->body == "hello world");
  CHECK(get->header("content-length") == "11");
}

TEST_CASE("Server: HEAD announces head_length and 204 has no Content-Length", "[http]") {
  TestServer t([](std::shared_ptr<Exchange> exchange) {
    Response response;
    if (exchange->request().path == "/none") {
      response.status = 204;
    } else {
      response.head_length = 123456;
    }
    exchange->respond(std::move(response));
    return nullptr;
  });
  REQUIRE(t.started);
  TestClient client(t.server.port());

  REQUIRE(client.send("HEAD /blob HTTP/1.1\r\n\r\n"));
  auto head = client.readResponse(true);
  REQUIRE(head);
  CHECK(head->header("content-length") == "123456");

  REQUIRE(client.send("DELETE /none HTTP/1.1\r\n\r\n"));
  auto none = client.readResponse();
  REQUIRE(none);
  CHECK(none->status == 204);
  CHECK_FALSE(none->has("content-length"));
}

TEST_CASE("Server: keep-alive serves two requests on one connection", "[http]") {
  TestServer t(echoTarget);
  REQUIRE(t.started);
  TestClient client(t.server.port());

  REQUIRE(client.send("GET /one HTTP/1.1\r\n\r\n"));
  auto first = client.readResponse();
  REQUIRE(first);
  CHECK(first->body == "GET /one");
  CHECK_FALSE(first->has("connection"));

  REQUIRE(client.send("GET /two?x=1 HTTP/1.1\r\n\r\n"));
  auto second = client.readResponse();
  REQUIRE(second);
  CHECK(second->body == "GET /two?x=1");
}

TEST_CASE("Server: Connection: close is honoured", "[http]") {
  TestServer t(echoTarget);
  REQUIRE(t.started);
  TestClient client(t.server.port());

  REQUIRE(client.send("GET /a HTTP/1.1\r\nConnection: close\r\n\r\n"));
  auto response = client.readResponse();
  REQUIRE(response);
  CHECK(response->header("connection") == "close");
  CHECK(client.waitClosed(2000));
}

TEST_CASE("Server: pipelined requests are answered in order, one at a time", "[http]") {
  std::atomic<int> in_flight{0};
  std::atomic<int> max_in_flight{0};
  TestServer t([&](std::shared_ptr<Exchange> exchange) {
    int now = ++in_flight;
    max_in_flight = std::max(max_in_flight.load(), now);
    // The first answers late, from another thread via the loop: the others must wait.
    std::string path = exchange->request().path;
    auto respond = [exchange, path, &in_flight] {
      --in_flight;
      exchange->respond(textResponse(200, path));
    };
    if (path == "/1") {
      std::thread([exchange, respond] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        exchange->loop().post(respond);
      }).detach();
    } else {
      respond();
    }
    return nullptr;
  });
  REQUIRE(t.started);
  TestClient client(t.server.port());

  REQUIRE(client.send("GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n"));
  for (const char* expected : {"/1", "/2", "/3"}) {
    auto response = client.readResponse();
    REQUIRE(response);
    CHECK(response->body == expected);
  }
  CHECK(max_in_flight == 1);
}

TEST_CASE("Server: pipelined input beyond the input bound waits in the socket, then is served",
          "[http]") {
  // The first request is answered late: meanwhile the client sends 48 MiB more of pipelined
  // requests, past the 1 MiB the server holds unparsed and more than the socket buffers take
  // (at most 32 MiB received, 4 MiB sent, here). It stops reading, so the sender is still
  // blocked when the first answer comes, and resumes as the requests ahead are answered;
  // every one is, in order.
  TestServer t([](std::shared_ptr<Exchange> exchange) {
    if (exchange->request().path == "/slow") {
      std::thread([exchange] {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        exchange->loop().post([exchange] { echoTarget(exchange); });
      }).detach();
      return std::unique_ptr<Handler>();
    }
    return echoTarget(std::move(exchange));
  });
  REQUIRE(t.started);
  TestClient client(t.server.port(), 20000);

  constexpr int kRequests = 24000;
  const std::string padding(2200, 'p');
  std::string pipelined = "GET /slow HTTP/1.1\r\n\r\n";
  for (int i = 0; i < kRequests; ++i) {
    pipelined += "GET /r" + std::to_string(i) + " HTTP/1.1\r\nX-Pad: " + padding + "\r\n\r\n";
  }
  REQUIRE(pipelined.size() > (48u << 20));
  std::atomic<bool> sent{false};
  std::thread sender([&] { sent = client.send(pipelined); });

  auto first = client.readResponse();
  CHECK_FALSE(sent);  // the server stopped reading at its bound
  bool in_order = first && first->body == "GET /slow";
  for (int i = 0; i < kRequests && in_order; ++i) {
    auto response = client.readResponse();
    in_order = response && response->body == "GET /r" + std::to_string(i);
  }
  sender.join();
  CHECK(sent);
  CHECK(in_order);
}

TEST_CASE("Server: a request larger than the first read arrives whole, and so does the next",
          "[http]") {
  TestServer t([](std::shared_ptr<Exchange> exchange) {
    const std::string* big = exchange->request().headers.get("x-big");
    exchange->respond(textResponse(200, std::to_string(big == nullptr ? 0 : big->size())));
    return nullptr;
  });
  REQUIRE(t.started);
  TestClient client(t.server.port());

  // 40 KiB of headers in one send: several reads, each with more room than the last.
  for (size_t size : {size_t{40} << 10, size_t{10}}) {
    REQUIRE(client.send("GET /v2/ HTTP/1.1\r\nX-Big: " + std::string(size, 'h') + "\r\n\r\n"));
    auto response = client.readResponse();
    REQUIRE(response);
    CHECK(response->body == std::to_string(size));
  }
}

TEST_CASE("Server: a chunked request body arrives de-chunked and complete", "[http]") {
  TestServer t(echoBody);
  REQUIRE(t.started);
  TestClient client(t.server.port());

  REQUIRE(
      client.send("PATCH /v2/x/blobs/uploads/1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\nhello\r\n"));
  REQUIRE(client.send("1\r\n \r\n6;ext=1\r\nworld!\r\n0\r\n\r\n"));
  auto response = client.readResponse();
  REQUIRE(response);
  CHECK(response->body == "hello world!");
}

TEST_CASE("Server: a bad chunk size is answered with 400 and a close", "[http]") {
  std::atomic<bool> aborted{false};
  TestServer t([&](std::shared_ptr<Exchange>) {
    auto handler = std::make_unique<LambdaHandler>();
    handler->on_abort = [&] { aborted = true; };
    return handler;
  });
  REQUIRE(t.started);
  TestClient client(t.server.port());

  REQUIRE(client.send("PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"));
  auto response = client.readResponse();
  REQUIRE(response);
  CHECK(response->status == 400);
  CHECK(response->body.find("\"errors\"") != std::string::npos);
  CHECK(client.waitClosed(2000));
  CHECK(aborted);
}

TEST_CASE("Server: a Transfer-Encoding not ending in chunked gets 400, never the Service",
          "[http]") {
  std::atomic<int> dispatched{0};
  TestServer t([&](std::shared_ptr<Exchange> exchange) {
    ++dispatched;
    return echoTarget(std::move(exchange));  // answers at once, as GET /v2/ does
  });
  REQUIRE(t.started);

  for (const char* coding : {"gzip", "chunked, gzip", "chunked2"}) {
    CAPTURE(coding);
    TestClient client(t.server.port());
    REQUIRE(client.send(std::string("GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ") +
                        coding + "\r\n\r\nGET /v2/again HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto response = client.readResponse();
    REQUIRE(response);
    CHECK(response->status == 400);
    CHECK(response->body.find("Transfer-Encoding") != std::string::npos);
    CHECK(response->header("connection") == "close");
    CHECK(client.waitClosed(2000));
  }
  CHECK(dispatched == 0);

  // With chunked last, the same request is fine.
  TestClient client(t.server.port());
  REQUIRE(client.send(
      "GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"));
  auto response = client.readResponse();
  REQUIRE(response);
  CHECK(response->status == 200);
}

TEST_CASE("Server: Expect: 100-continue gets 100 and then the final response", "[http]") {
  TestServer t(echoBody);
  REQUIRE(t.started);
  TestClient client(t.server.port());

  REQUIRE(client.send("PUT /up HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"));
  std::string expected = "HTTP/1.1 100 Continue\r\n\r\n";
  auto interim = client.readExactly(expected.size());
  REQUIRE(interim);
  CHECK(*interim == expected);
  REQUIRE(client.send("data"));
  auto response = client.readResponse();
  REQUIRE(response);
  CHECK(response->status == 200);
  CHECK(response->body == "data");
}

TEST_CASE("Server: an early rejection sends no 100 and closes the connection", "[http]") {
  std::atomic<int> bodies{0};
  TestServer t([&](std::shared_ptr<Exchange> exchange) {
    exchange->respond(textResponse(413, "too big"));
    auto handler = std::make_unique<LambdaHandler>();
    handler->on_body = [&](std::string_view) {
      ++bodies;
      return true;
    };
    return handler;
  });
  REQUIRE(t.started);
  TestClient client(t.server.port());

  REQUIRE(
      client.send("PUT /up HTTP/1.1\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n"));
  auto response = client.readResponse();
  REQUIRE(response);
  CHECK(response->status == 413);
  CHECK(response->header("connection") == "close");
  CHECK(client.waitClosed(3000));
  CHECK(bodies == 0);
}

TEST_CASE("Server: a file body is sent whole from its offset and the fd is closed after",
          "[http]") {
  // 3 MiB goes by sendfile; 4 KiB is read and written with the head.
  size_t size = GENERATE(size_t{3 * 1024 * 1024 + 17}, size_t{4096 + 17});
  char path[] = "/tmp/regcache-http-test-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  std::string content(size, '\0');
  std::mt19937 random(42);
  for (char& ch : content) {
    ch = static_cast<char>(random());
  }
  REQUIRE(write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
  close(fd);

  std::atomic<int> served_fd{-1};
  TestServer t([&](std::shared_ptr<Exchange> exchange) {
    Response response;
    int file = open(path, O_RDONLY | O_CLOEXEC);
    served_fd = file;
    response.file = Response::File{file, 10, content.size() - 10};
    exchange->respond(std::move(response));
    return nullptr;
  });
  REQUIRE(t.started);
  TestClient client(t.server.port());

  REQUIRE(client.send("GET /blob HTTP/1.1\r\n\r\n"));
  auto response = client.readResponse();
  REQUIRE(response);
  CHECK(response->header("content-length") == std::to_string(content.size() - 10));
  CHECK(response->body == content.substr(10));
  // After the response the server no longer holds the file open.
  std::string fd_link = "/proc/self/fd/" + std::to_string(served_fd.load());
  CHECK(eventually([&] {
    char target[256] = {};
    ssize_t n = readlink(fd_link.c_str(), target, sizeof target - 1);
    return n < 0 || std::string(target, static_cast<size_t>(n)) != path;
  }));
  unlink(path);
}

namespace {

// Gives "first-", then waits; wake-up adds "second" and finishes.
class SteppedSource : public BodySource {
 public:
  void start(std::function<void()> wake) override { wake_ = std::move(wake); }
  Pull pull(evbuffer* out, size_t) override {
    if (step_ == 0) {
      step_ = 1;
      evbuffer_add(out, "first-", 6);
      return Pull::kWait;
    }
    if (step_ == 1) {
      return Pull::kWait;  // pulled again before the wake: still nothing
    }
    evbuffer_add(out, "second", 6);
    return Pull::kDone;
  }
  void release() {
    step_ = 2;
    wake_();
  }

 private:
  int step_ = 0;
  std::function<void()> wake_;
};

}  // namespace

TEST_CASE("Server: a BodySource that waits resumes on wake, chunked or with a length", "[http]") {
  bool with_length = GENERATE(false, true);
  TestServer t([with_length](std::shared_ptr<Exchange> exchange) {
    auto source = std::make_shared<SteppedSource>();
    Response response;
    response.source = source;
    if (with_length) {
      response.source_length = 12;
    }
    exchange->respond(std::move(response));
    std::thread([exchange, source] {
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
      exchange->loop().post([source] { source->release(); });
    }).detach();
    return nullptr;
  });
  REQUIRE(t.started);
  TestClient client(t.server.port());

  REQUIRE(client.send("GET /blob HTTP/1.1\r\n\r\n"));
  auto response = client.readResponse();
  REQUIRE(response);
  CHECK(response->body == "first-second");
  if (with_length) {
    CHECK(response->header("content-length") == "12");
  } else {
    CHECK(response->header("transfer-encoding") == "chunked");
  }
  // And the connection carries on.
  REQUIRE(client.send("GET /blob HTTP/1.1\r\n\r\n"));
  auto again = client.readResponse();
  REQUIRE(again);
  CHECK(again->body == "first-second");
}

TEST_CASE("Server: a failing BodySource closes the connection", "[http]") {
  class FailingSource : public BodySource {
   public:
    Pull pull(evbuffer* out, size_t) override {
      evbuffer_add(out, "partial", 7);
      return Pull::kFailed;
    }
  };
  TestServer t([](std::shared_ptr<Exchange> exchange) {
    Response response;
    response.source = std::make_shared<FailingSource>();
    response.source_length = 100;
    exchange->respond(std::move(response));
    return nullptr;
  });
  REQUIRE(t.started);
  TestClient client(t.server.port());

  REQUIRE(client.send("GET /blob HTTP/1.1\r\n\r\n"));
  CHECK_FALSE(client.readResponse());  // truncated: never a complete wrong body
  CHECK(client.waitClosed(2000));
}

TEST_CASE("Server: headers beyond max_header_bytes are answered with 431", "[http]") {
  ServerOptions options;
  options.max_header_bytes = 1024;
  TestServer t(echoTarget, options);
  REQUIRE(t.started);
  TestClient client(t.server.port());

  REQUIRE(client.send("GET / HTTP/1.1\r\nX-Big: " + std::string(4096, 'a') + "\r\n\r\n"));
  auto response = client.readResponse();
  REQUIRE(response);
  CHECK(response->status == 431);
  CHECK(client.waitClosed(2000));
}

TEST_CASE("Server: a malformed request is answered with 400 and a close", "[http]") {
  TestServer t(echoTarget);
  REQUIRE(t.started);
  TestClient client(t.server.port());

  REQUIRE(client.send("THIS IS NOT HTTP\r\n\r\n"));
  auto response = client.readResponse();
  REQUIRE(response);
  CHECK(response->status == 400);
  CHECK(response->header("content-type") == "application/json");
  CHECK(response->body.find("\"code\":\"UNSUPPORTED\"") != std::string::npos);
  CHECK(client.waitClosed(2000));
}

TEST_CASE("Server: a client leaving mid-body aborts the handler exactly once", "[http]") {
  std::atomic<int> aborts{0};
  std::atomic<int> ends{0};
  std::atomic<size_t> received{0};
  std::mutex mu;
  std::weak_ptr<Exchange> seen;
  TestServer t([&](std::shared_ptr<Exchange> exchange) {
    {
      std::lock_guard lock(mu);
      seen = exchange;
    }
    auto handler = std::make_unique<LambdaHandler>();
    handler->on_body = [&](std::string_view data) {
      received += data.size();
      return true;
    };
    handler->on_end = [&] { ++ends; };
    handler->on_abort = [&, exchange] {
      CHECK_FALSE(exchange->alive());
      ++aborts;
      exchange->respond(textResponse(200, "too late"));  // a no-op now
    };
    return handler;
  });
  REQUIRE(t.started);
  {
    TestClient client(t.server.port());
    REQUIRE(client.send("PUT /up HTTP/1.1\r\nContent-Length: 100000\r\n\r\n"));
    REQUIRE(client.send(std::string(1000, 'x')));
    REQUIRE(eventually([&] { return received == 1000; }));
  }
  CHECK(eventually([&] { return aborts == 1; }));
  CHECK(ends == 0);
  // Everything of the exchange is freed (the handler held it).
  CHECK(eventually([&] {
    std::lock_guard lock(mu);
    return seen.expired();
  }));
  CHECK(aborts == 1);
}

TEST_CASE("Server: an idle keep-alive connection is closed after idle_timeout", "[http]") {
  ServerOptions options;
  options.idle_timeout = std::chrono::seconds(1);
  TestServer t(echoTarget, options);
  REQUIRE(t.started);
  TestClient client(t.server.port());

  REQUIRE(client.send("GET / HTTP/1.1\r\n\r\n"));
  REQUIRE(client.readResponse());
  auto start = std::chrono::steady_clock::now();
  CHECK(client.waitClosed(4000));
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(500));
}

TEST_CASE("Server: a stalled request body is closed after request_timeout", "[http]") {
  ServerOptions options;
  options.request_timeout = std::chrono::seconds(1);
  std::atomic<int> aborts{0};
  TestServer t(
      [&](std::shared_ptr<Exchange>) {
        auto handler = std::make_unique<LambdaHandler>();
        handler->on_abort = [&] { ++aborts; };
        return handler;
      },
      options);
  REQUIRE(t.started);
  TestClient client(t.server.port());

  REQUIRE(client.send("PUT /up HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"));
  CHECK(client.waitClosed(4000));
  CHECK(eventually([&] { return aborts == 1; }));
}

TEST_CASE("Server: a response that takes longer than idle_timeout still arrives", "[http]") {
  // The read timer runs on while a handler works (so the read event never leaves epoll); its
  // firing then must not cut the exchange.
  ServerOptions options;
  options.idle_timeout = std::chrono::seconds(1);
  std::thread late;
  TestServer t(
      [&](std::shared_ptr<Exchange> exchange) {
        late = std::thread([exchange] {
          std::this_thread::sleep_for(std::chrono::milliseconds(2500));
          exchange->loop().post([exchange] { exchange->respond(textResponse(200, "late")); });
        });
        return nullptr;
      },
      options);
  REQUIRE(t.started);
  TestClient client(t.server.port());

  REQUIRE(client.send("GET /slow HTTP/1.1\r\n\r\n"));
  auto response = client.readResponse();
  late.join();
  REQUIRE(response);
  CHECK(response->body == "late");
  CHECK(client.waitClosed(4000));  // and the idle timeout applies again afterwards
}

TEST_CASE("Server: a client that stops reading is cut after write_timeout", "[http]") {
  // What the socket would not take arms the write event, with its timeout.
  ServerOptions options;
  options.write_timeout = std::chrono::seconds(1);
  TestServer t(
      [&](std::shared_ptr<Exchange> exchange) {
        exchange->respond(textResponse(200, std::string(64 << 20, 'x')));
        return nullptr;
      },
      options);
  REQUIRE(t.started);
  TestClient client(t.server.port());

  REQUIRE(client.send("GET /big HTTP/1.1\r\n\r\n"));  // and never read
  REQUIRE(eventually([&] { return t.server.connections() == 1; }));
  CHECK(eventually([&] { return t.server.connections() == 0; }, 5000));
}

TEST_CASE("Server: a 64 MiB body streams through in bounded memory", "[http]") {
  constexpr size_t kSize = 64u << 20;
  std::atomic<size_t> received{0};
  std::atomic<size_t> largest_piece{0};
  TestServer t([&](std::shared_ptr<Exchange> exchange) {
    auto handler = std::make_unique<LambdaHandler>();
    handler->on_body = [&](std::string_view data) {
      received += data.size();
      largest_piece = std::max(largest_piece.load(), data.size());
      return true;
    };
    handler->on_end = [&, exchange] {
      exchange->respond(textResponse(201, std::to_string(received.load())));
    };
    return handler;
  });
  REQUIRE(t.started);
#if !defined(__SANITIZE_ADDRESS__)
  long rss_before = residentKiB();
#endif
  TestClient client(t.server.port(), 20000);

  REQUIRE(client.send("PUT /up HTTP/1.1\r\nContent-Length: " + std::to_string(kSize) + "\r\n\r\n"));
  std::string block(1 << 20, 'b');
  for (size_t sent = 0; sent < kSize; sent += block.size()) {
    REQUIRE(client.send(block));
  }
  auto response = client.readResponse();
  REQUIRE(response);
  CHECK(response->status == 201);
  CHECK(response->body == std::to_string(kSize));
  CHECK(largest_piece <= (1u << 20));
#if !defined(__SANITIZE_ADDRESS__)
  CHECK(residentKiB() - rss_before < 24 * 1024);  // ASan's quarantine keeps freed memory
#endif
}

TEST_CASE("Server: stop closes open connections and is idempotent", "[http]") {
  std::atomic<int> aborts{0};
  auto t = std::make_unique<TestServer>([&](std::shared_ptr<Exchange>) {
    auto handler = std::make_unique<LambdaHandler>();
    handler->on_abort = [&] { ++aborts; };
    return handler;  // never answers
  });
  REQUIRE(t->started);
  TestClient client(t->server.port());
  REQUIRE(client.send("GET /hang HTTP/1.1\r\n\r\n"));
  CHECK(eventually([&] { return client.connected(); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));

  std::thread waiter([&] { t->server.wait(); });
  t->server.stop();
  t->server.stop();
  waiter.join();
  CHECK(aborts == 1);
  CHECK(client.waitClosed(2000));
}

TEST_CASE("Server: requests carry id, peer, path, query and headers", "[http]") {
  std::mutex mu;
  std::vector<Request> seen;
  TestServer t([&](std::shared_ptr<Exchange> exchange) {
    {
      std::lock_guard lock(mu);
      seen.push_back(exchange->request());
    }
    exchange->addLogField("cache=hit");
    exchange->respond(textResponse(200, "ok"));
    return nullptr;
  });
  REQUIRE(t.started);
  TestClient client(t.server.port());
  REQUIRE(
      client.send("GET /v2/library/x/tags/list?n=10&last=a%2Fb HTTP/1.1\r\n"
                  "Accept: a\r\nACCEPT: b\r\n\r\nGET / HTTP/1.1\r\n\r\n"));
  REQUIRE(client.readResponse());
  REQUIRE(client.readResponse());

  std::lock_guard lock(mu);
  REQUIRE(seen.size() == 2);
  const Request& request = seen[0];
  CHECK(request.path == "/v2/library/x/tags/list");
  CHECK(request.query == "n=10&last=a%2Fb");
  CHECK(request.queryParam("last") == std::optional<std::string>("a/b"));
  CHECK(request.queryParam("n") == std::optional<std::string>("10"));
  CHECK_FALSE(request.queryParam("m"));
  CHECK(*request.headers.get("accept") == "a");
  CHECK(request.peer.rfind("127.0.0.1:", 0) == 0);
  CHECK(seen[1].id > request.id);
}

TEST_CASE("Server: HTTP/1.0 closes unless keep-alive is asked for", "[http]") {
  TestServer t(echoTarget);
  REQUIRE(t.started);

  TestClient plain(t.server.port());
  REQUIRE(plain.send("GET /old HTTP/1.0\r\n\r\n"));
  auto response = plain.readResponse();
  REQUIRE(response);
  CHECK(response->body == "GET /old");
  CHECK(response->header("connection") == "close");
  CHECK(plain.waitClosed(2000));

  TestClient kept(t.server.port());
  REQUIRE(kept.send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  auto first = kept.readResponse();
  REQUIRE(first);
  CHECK(first->header("connection") == "keep-alive");
  REQUIRE(kept.send("GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  auto second = kept.readResponse();
  REQUIRE(second);
  CHECK(second->body == "GET /b");
}

TEST_CASE("Server: a request followed by a half-close is still answered", "[http]") {
  TestServer t(echoTarget);
  REQUIRE(t.started);
  TestClient client(t.server.port());

  REQUIRE(client.send("GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"));
  shutdown(client.fd(), SHUT_WR);
  auto first = client.readResponse();
  auto second = client.readResponse();
  REQUIRE(first);
  REQUIRE(second);
  CHECK(second->body == "GET /2");
  CHECK(client.waitClosed(2000));
}

TEST_CASE("Server: an absolute-form target has the same path and query", "[http]") {
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> seen;
  TestServer t([&](std::shared_ptr<Exchange> exchange) {
    {
      std::lock_guard lock(mu);
      seen.emplace_back(exchange->request().path, exchange->request().query);
    }
    exchange->respond(textResponse(200, "ok"));
    return nullptr;
  });
  REQUIRE(t.started);
  TestClient client(t.server.port());
  REQUIRE(
      client.send("GET http://mirror:5000/v2/x/tags/list?n=1 HTTP/1.1\r\n\r\n"
                  "GET http://mirror:5000 HTTP/1.1\r\n\r\n"));
  REQUIRE(client.readResponse());
  REQUIRE(client.readResponse());

  std::lock_guard lock(mu);
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] == std::make_pair(std::string("/v2/x/tags/list"), std::string("n=1")));
  CHECK(seen[1].first == "/");
}

TEST_CASE("Server: connections are spread evenly over the loops, whatever the kernel picks",
          "[http]") {
  // Each connection stays open and makes one request; the handler notes the loop thread.
  std::mutex mu;
  std::map<std::thread::id, int> per_thread;
  ServerOptions options;
  options.threads = 4;
  TestServer t(
      [&](std::shared_ptr<Exchange> exchange) {
        {
          std::lock_guard lock(mu);
          ++per_thread[std::this_thread::get_id()];
        }
        exchange->respond(textResponse(200, "ok"));
        return nullptr;
      },
      options);
  REQUIRE(t.started);

  constexpr int kConnections = 32;
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < kConnections; ++i) {
    clients.push_back(std::make_unique<TestClient>(t.server.port()));
    REQUIRE(clients.back()->send("GET / HTTP/1.1\r\n\r\n"));
    auto response = clients.back()->readResponse();
    REQUIRE(response);
    CHECK(response->status == 200);
  }
  std::lock_guard lock(mu);
  REQUIRE(per_thread.size() == 4);
  for (const auto& [thread, requests] : per_thread) {
    CHECK(requests == kConnections / 4);
  }
}
