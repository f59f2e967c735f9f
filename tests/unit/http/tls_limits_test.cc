// TLS on the HTTP server (handshake, protocol floor, ALPN, certificate reload) and the abuse
// limits (header deadline, token bucket, request-target hygiene).
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "proxy/rate_limit.h"
#include "proxy/tls.h"
#include "tests/unit/http/test_support.h"

using namespace regcache::proxy::http;
using namespace regcache::proxy::http::testing;

namespace {

// A temp dir with a self-signed certificate and key made by `openssl req`.
struct TestCerts {
  std::filesystem::path dir;

  TestCerts() {
    char tmpl[] = "/tmp/regcache-tls-XXXXXX";
    dir = ::mkdtemp(tmpl);
    make("a");
    make("b");
  }
  ~TestCerts() { std::filesystem::remove_all(dir); }

  void make(const std::string& name) {
    std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
        "-days 2 -subj /CN=127.0.0.1 -keyout " +
        key(name) + " -out " + cert(name) + " >/dev/null 2>&1";
    REQUIRE(std::system(cmd.c_str()) == 0);
  }
  std::string cert(const std::string& name) const { return (dir / (name + ".crt")).string(); }
  std::string key(const std::string& name) const { return (dir / (name + ".key")).string(); }
};

// A blocking TLS client over TestClient's socket.
class TlsClient {
 public:
  TlsClient(uint16_t port, int max_version = 0, const unsigned char* alpn = nullptr,
            unsigned alpn_len = 0)
      : tcp_(port) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (max_version != 0) {
      SSL_CTX_set_min_proto_version(ctx_, TLS1_VERSION);
      SSL_CTX_set_max_proto_version(ctx_, max_version);
      SSL_CTX_set_security_level(ctx_, 0);
    }
    ssl_ = SSL_new(ctx_);
    if (alpn != nullptr) {
      SSL_set_alpn_protos(ssl_, alpn, alpn_len);
    }
    SSL_set_fd(ssl_, tcp_.fd());
    handshake_ok_ = SSL_connect(ssl_) == 1;
    ERR_clear_error();
  }
  ~TlsClient() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
  }

  bool handshakeOk() const { return handshake_ok_; }
  std::string alpn() const {
    const unsigned char* data = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl_, &data, &len);
    return std::string(reinterpret_cast<const char*>(data), len);
  }
  std::string serial() const {
    X509* cert = SSL_get1_peer_certificate(ssl_);
    if (cert == nullptr) {
      return "";
    }
    BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
    char* hex = BN_bn2hex(bn);
    std::string out = hex;
    OPENSSL_free(hex);
    BN_free(bn);
    X509_free(cert);
    return out;
  }
  // Sends a GET and returns the status line's code, or 0.
  int get(const std::string& target) {
    std::string request = "GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n";
    if (SSL_write(ssl_, request.data(), static_cast<int>(request.size())) <= 0) {
      return 0;
    }
    std::string got;
    char buf[4096];
    while (got.find("\r\n\r\n") == std::string::npos) {
      int n = SSL_read(ssl_, buf, sizeof buf);
      if (n <= 0) {
        return 0;
      }
      got.append(buf, static_cast<size_t>(n));
    }
    size_t length_at = got.find("Content-Length: ");
    size_t body_at = got.find("\r\n\r\n") + 4;
    size_t length = std::stoul(got.substr(length_at + 16));
    while (got.size() < body_at + length) {
      int n = SSL_read(ssl_, buf, sizeof buf);
      if (n <= 0) {
        return 0;
      }
      got.append(buf, static_cast<size_t>(n));
    }
    return std::stoi(got.substr(9, 3));
  }

 private:
  TestClient tcp_;
  SSL_CTX* ctx_;
  SSL* ssl_;
  bool handshake_ok_ = false;
};

std::unique_ptr<Handler> answerOk(std::shared_ptr<Exchange> exchange) {
  exchange->respond(textResponse(200, "ok"));
  return nullptr;
}

ServerOptions tlsOptions(const TestCerts& certs, const std::string& name = "a") {
  ServerOptions options;
  options.tls_cert = certs.cert(name);
  options.tls_key = certs.key(name);
  return options;
}

}  // namespace

TEST_CASE("Server TLS: a handshake and a GET work, with http/1.1 chosen by ALPN", "[http][tls]") {
  TestCerts certs;
  TestServer t(answerOk, tlsOptions(certs));
  REQUIRE(t.started);
  static constexpr unsigned char kBoth[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  TlsClient client(t.server.port(), 0, kBoth, sizeof kBoth);
  REQUIRE(client.handshakeOk());
  CHECK(client.alpn() == "http/1.1");
  CHECK(client.get("/v2/") == 200);
  CHECK(client.get("/v2/") == 200);  // keep-alive over TLS
}

TEST_CASE("Server TLS: a client offering only h2 gets no ALPN protocol", "[http][tls]") {
  TestCerts certs;
  TestServer t(answerOk, tlsOptions(certs));
  REQUIRE(t.started);
  static constexpr unsigned char kH2[] = {2, 'h', '2'};
  TlsClient client(t.server.port(), 0, kH2, sizeof kH2);
  REQUIRE(client.handshakeOk());
  CHECK(client.alpn().empty());
}

TEST_CASE("Server TLS: TLS 1.1 is refused", "[http][tls]") {
  TestCerts certs;
  TestServer t(answerOk, tlsOptions(certs));
  REQUIRE(t.started);
  TlsClient client(t.server.port(), TLS1_1_VERSION);
  CHECK_FALSE(client.handshakeOk());
}

TEST_CASE("Server TLS: a missing or mismatched key is a start-up error naming the file",
          "[http][tls]") {
  TestCerts certs;
  auto missing = TlsContext::load(certs.cert("a"), certs.dir.string() + "/nope.key");
  REQUIRE_FALSE(missing);
  CHECK(missing.status().message().find("nope.key") != std::string::npos);
  auto mismatched = TlsContext::load(certs.cert("a"), certs.key("b"));
  REQUIRE_FALSE(mismatched);
  CHECK(mismatched.status().message().find("does not match") != std::string::npos);

  ServerOptions options = tlsOptions(certs);
  options.tls_key = certs.key("b");
  TestServer t(answerOk, options);
  CHECK_FALSE(t.started);
}

TEST_CASE("Server TLS: reloadTls swaps the certificate for new connections only", "[http][tls]") {
  TestCerts certs;
  ServerOptions options = tlsOptions(certs);
  options.tls_cert = (certs.dir / "live.crt").string();
  options.tls_key = (certs.dir / "live.key").string();
  std::filesystem::copy_file(certs.cert("a"), options.tls_cert);
  std::filesystem::copy_file(certs.key("a"), options.tls_key);
  TestServer t(answerOk, options);
  REQUIRE(t.started);

  TlsClient old_client(t.server.port());
  REQUIRE(old_client.handshakeOk());
  std::string first_serial = old_client.serial();
  CHECK(first_serial == t.server.tlsSerial());

  // A broken file is refused and the old certificate keeps serving.
  { std::ofstream(options.tls_cert) << "not a certificate\n"; }
  regcache::Status broken = t.server.reloadTls();
  CHECK_FALSE(broken);
  CHECK(broken.message().find("live.crt") != std::string::npos);
  TlsClient during(t.server.port());
  REQUIRE(during.handshakeOk());
  CHECK(during.serial() == first_serial);
  CHECK(during.get("/v2/") == 200);

  // A good new pair is taken by new connections; the open one goes on with the old.
  std::filesystem::copy_file(certs.cert("b"), options.tls_cert,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(certs.key("b"), options.tls_key,
                             std::filesystem::copy_options::overwrite_existing);
  REQUIRE(t.server.reloadTls());
  TlsClient new_client(t.server.port());
  REQUIRE(new_client.handshakeOk());
  CHECK(new_client.serial() != first_serial);
  CHECK(new_client.get("/v2/") == 200);
  CHECK(old_client.get("/v2/") == 200);
}

TEST_CASE("Server: a client trickling its headers is cut at the total header deadline",
          "[http][limits]") {
  ServerOptions options;
  options.request_timeout = std::chrono::seconds(1);
  TestServer t(answerOk, options);
  REQUIRE(t.started);
  TestClient client(t.server.port());
  auto start = std::chrono::steady_clock::now();
  std::string request = "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  bool closed = false;
  for (char ch : request) {
    if (!client.send(std::string_view(&ch, 1)) || client.waitClosed(200)) {
      closed = true;
      break;
    }
  }
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(closed);
  CHECK(took < std::chrono::milliseconds(2500));  // a per-read timeout would never fire
}

TEST_CASE("Server: odd request targets are refused before the service sees them",
          "[http][limits]") {
  std::atomic<int> served{0};
  ServerOptions options;
  options.max_target_bytes = 100;
  TestServer t(
      [&](std::shared_ptr<Exchange> exchange) {
        ++served;
        return answerOk(std::move(exchange));
      },
      options);
  REQUIRE(t.started);
  for (std::string target : {"/v2/a/../b", "/v2/%2e%2E/x", "/v2/a\\b/manifests/1",
                             "/v2/a%5cb/manifests/1", "/v2/a%00/manifests/1", "/v2/./x"}) {
    TestClient client(t.server.port());
    REQUIRE(client.send("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto response = client.readResponse();
    REQUIRE(response);
    CHECK(response->status == 400);
    CHECK(response->body.find("\"errors\"") != std::string::npos);
  }
  TestClient client(t.server.port());
  REQUIRE(client.send("GET /v2/" + std::string(200, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto response = client.readResponse();
  REQUIRE(response);
  CHECK(response->status == 414);
  CHECK(served == 0);
}

TEST_CASE("Server: a client over its request rate gets 429 with Retry-After", "[http][limits]") {
  ServerOptions options;
  options.rate_per_second = 1;
  options.rate_burst = 3;
  TestServer t(answerOk, options);
  REQUIRE(t.started);
  TestClient client(t.server.port());
  std::vector<int> statuses;
  for (int i = 0; i < 5; ++i) {
    REQUIRE(client.send("GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto response = client.readResponse();
    REQUIRE(response);
    statuses.push_back(response->status);
    if (response->status == 429) {
      CHECK(response->header("retry-after") == "1");
      CHECK(response->body.find("TOOMANYREQUESTS") != std::string::npos);
    }
  }
  CHECK(statuses == std::vector<int>{200, 200, 200, 429, 429});
}

TEST_CASE("TokenBucket: refills at the rate up to the burst, and says when to retry", "[limits]") {
  using namespace std::chrono_literals;
  TokenBucket::Clock::time_point t0{};
  TokenBucket bucket(2, t0);
  CHECK(bucket.take(4, 2, t0));
  CHECK(bucket.take(4, 2, t0));
  std::chrono::duration<double> wait{};
  CHECK_FALSE(bucket.take(4, 2, t0, &wait));
  CHECK(wait.count() == Approx(0.25));
  CHECK_FALSE(bucket.take(4, 2, t0 + 200ms));
  CHECK(bucket.take(4, 2, t0 + 250ms));
  // A long idle time refills to the burst, not beyond.
  CHECK(bucket.full(4, 2, t0 + 10s));
  CHECK(bucket.take(4, 2, t0 + 10s));
  CHECK(bucket.take(4, 2, t0 + 10s));
  CHECK_FALSE(bucket.take(4, 2, t0 + 10s));
}

TEST_CASE("RateLimiter: clients are limited apart, and idle buckets are swept", "[limits]") {
  using namespace std::chrono_literals;
  RateLimiter limiter(1, 1, 16 * 4);
  TokenBucket::Clock::time_point t0 = TokenBucket::Clock::now();
  CHECK(limiter.admit("10.0.0.1", t0).allowed);
  RateLimiter::Decision refused = limiter.admit("10.0.0.1", t0);
  CHECK_FALSE(refused.allowed);
  CHECK(refused.retry_after_seconds == 1);
  CHECK(limiter.admit("10.0.0.2", t0).allowed);
  for (int i = 0; i < 1000; ++i) {
    (void)limiter.admit("10.1." + std::to_string(i / 256) + "." + std::to_string(i % 256), t0);
  }
  CHECK(limiter.clients() <= 16 * 4);
  (void)limiter.admit("10.0.0.3", t0 + 20s);
  CHECK(limiter.admit("10.0.0.1", t0 + 20s).allowed);
}
