// The TOML configuration: the DESIGN.md sample, defaults, and every refusal naming file and line.
#include "proxy/config.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

using regcache::Code;
using regcache::proxy::Config;
using regcache::proxy::defaultConfig;
using regcache::proxy::loadConfig;
using regcache::proxy::parseConfig;
using regcache::proxy::parseDuration;
using regcache::proxy::parseListen;
using regcache::proxy::parseSize;
using namespace std::chrono_literals;

namespace {

// The sample from DESIGN.md, verbatim.
const char* kDesignSample = R"(listen = "0.0.0.0:5000"
data_dir = "/var/lib/regcache"
max_cache_size = "200GiB"        # cached (not pushed) content is evicted, least recently used first
offline = false                  # true: never contact upstreams, serve what is cached

[tls]                            # optional
cert = "/etc/regcache/tls.crt"
key = "/etc/regcache/tls.key"

[auth]                           # optional
htpasswd = "/etc/regcache/htpasswd"   # bcrypt entries, as made by `htpasswd -B`
anonymous_pull = true

[[upstream]]
name = "docker.io"               # the ns= value and the path prefix that select this upstream
url = "https://registry-1.docker.io"
default = true                   # also serves bare names (Docker's registry-mirrors sends those)
tag_ttl = "5m"                   # how long a tag's digest is trusted before revalidation
username = ""
password_file = ""
http_proxy = ""                  # an outbound proxy for this upstream; else HTTPS_PROXY/NO_PROXY

[[upstream]]
name = "ghcr.io"
url = "https://ghcr.io"

[local]
namespaces = ["local"]           # pushes are accepted here and nowhere else
)";

std::string errorOf(const std::string& text) {
  auto c = parseConfig(text, "regcache.toml");
  REQUIRE_FALSE(c.isOk());
  CHECK(c.status().code() == Code::kInvalidArgument);
  return c.status().message();
}

}  // namespace

TEST_CASE("defaultConfig: runs as DESIGN.md's embedded defaults say", "[oci][config]") {
  Config c = defaultConfig();
  CHECK(c.listen == "0.0.0.0:5000");
  CHECK(c.data_dir == "./regcache-data");
  REQUIRE(c.upstreams.size() == 1);
  CHECK(c.upstreams[0].name == "docker.io");
  CHECK(c.upstreams[0].url == "https://registry-1.docker.io");
  CHECK(c.upstreams[0].is_default);
  CHECK(c.upstreams[0].tag_ttl == 5min);
  CHECK(c.local_namespaces == std::vector<std::string>{"local"});
  CHECK_FALSE(c.tls_cert.has_value());
  CHECK(c.anonymous_pull);
  REQUIRE(c.defaultUpstream() != nullptr);
  CHECK(c.defaultUpstream()->name == "docker.io");
}

TEST_CASE("parseConfig: the full DESIGN.md sample parses", "[oci][config]") {
  auto c = parseConfig(kDesignSample, "regcache.toml");
  REQUIRE(c.isOk());
  CHECK(c->listen == "0.0.0.0:5000");
  CHECK(c->data_dir == "/var/lib/regcache");
  CHECK(c->max_cache_size == 200ull << 30);
  CHECK_FALSE(c->offline);
  CHECK(c->tls_cert == "/etc/regcache/tls.crt");
  CHECK(c->tls_key == "/etc/regcache/tls.key");
  CHECK(c->htpasswd == "/etc/regcache/htpasswd");
  CHECK(c->anonymous_pull);
  REQUIRE(c->upstreams.size() == 2);
  CHECK(c->upstreams[0].name == "docker.io");
  CHECK(c->upstreams[0].is_default);
  CHECK(c->upstreams[0].tag_ttl == 5min);
  CHECK(c->upstreams[1].name == "ghcr.io");
  CHECK(c->upstreams[1].url == "https://ghcr.io");
  CHECK_FALSE(c->upstreams[1].is_default);
  CHECK(c->upstreams[1].tag_ttl == 300s);
  CHECK(c->local_namespaces == std::vector<std::string>{"local"});
  CHECK(c->defaultUpstream() == &c->upstreams[0]);
  CHECK(c->upstream("ghcr.io") == &c->upstreams[1]);
  CHECK(c->upstream("quay.io") == nullptr);
}

TEST_CASE("parseConfig: the extra keys are read", "[oci][config]") {
  auto c = parseConfig(R"(
log_level = "debug"
log_format = "json"
max_upload_size = "10GiB"
upload_ttl = "12h"
threads = 2
max_cache_size = 1048576
offline = true
)",
                       "x.toml");
  REQUIRE(c.isOk());
  CHECK(c->log_level == "debug");
  CHECK(c->log_format == "json");
  CHECK(c->max_upload_size == 10ull << 30);
  CHECK(c->upload_ttl == 12h);
  CHECK(c->threads == 2);
  CHECK(c->max_cache_size == 1048576);
  CHECK(c->offline);
}

TEST_CASE("parseConfig: a file without [[upstream]] keeps docker.io", "[oci][config]") {
  auto c = parseConfig("data_dir = \"/tmp/x\"\n", "x.toml");
  REQUIRE(c.isOk());
  REQUIRE(c->upstreams.size() == 1);
  CHECK(c->upstreams[0].name == "docker.io");
  CHECK(c->defaultUpstream() != nullptr);
}

TEST_CASE("parseConfig: [[upstream]] entries replace the default list", "[oci][config]") {
  auto c = parseConfig("[[upstream]]\nname = \"quay.io\"\nurl = \"https://quay.io/\"\n", "x.toml");
  REQUIRE(c.isOk());
  REQUIRE(c->upstreams.size() == 1);
  CHECK(c->upstreams[0].name == "quay.io");
  CHECK(c->upstreams[0].url == "https://quay.io");  // trailing slash dropped
  CHECK(c->defaultUpstream() == nullptr);
}

TEST_CASE("parseConfig: an unknown key is named with its line", "[oci][config]") {
  CHECK(errorOf("listen = \":5000\"\n\nlisten_port = 5000\n") ==
        "regcache.toml:3: listen_port: unknown key");
  CHECK(errorOf("[tls]\ncert = \"a\"\nkey = \"b\"\nchain = \"c\"\n") ==
        "regcache.toml:4: tls.chain: unknown key");
  CHECK(errorOf("[[upstream]]\nname = \"a.io\"\nurl = \"https://a.io\"\n\n"
                "[[upstream]]\nname = \"b.io\"\nurl = \"https://b.io\"\nttl = \"5m\"\n") ==
        "regcache.toml:8: upstream[1].ttl: unknown key");
  CHECK(errorOf("[cache]\nsize = 1\n") == "regcache.toml:1: cache: unknown key");
}

TEST_CASE("parseConfig: a bad duration names the key and line", "[oci][config]") {
  std::string text =
      "[[upstream]]\nname = \"a.io\"\nurl = \"https://a.io\"\n\n"
      "[[upstream]]\nname = \"b.io\"\nurl = \"https://b.io\"\ntag_ttl = \"5 minutes\"\n";
  CHECK(errorOf(text) == "regcache.toml:8: upstream[1].tag_ttl: expected a duration like \"5m\"");
  CHECK(errorOf("upload_ttl = 300\n") ==
        "regcache.toml:1: upload_ttl: expected a duration like \"5m\"");
}

TEST_CASE("parseConfig: wrong value types are refused", "[oci][config]") {
  CHECK(errorOf("offline = \"yes\"\n") == "regcache.toml:1: offline: expected true or false");
  CHECK(errorOf("listen = 5000\n") == "regcache.toml:1: listen: expected a string");
  CHECK(errorOf("max_cache_size = \"lots\"\n") ==
        "regcache.toml:1: max_cache_size: expected a size like \"200GiB\"");
  CHECK(errorOf("max_cache_size = -1\n") ==
        "regcache.toml:1: max_cache_size: expected a size like \"200GiB\"");
  CHECK(errorOf("threads = -2\n") == "regcache.toml:1: threads: expected a non-negative integer");
  CHECK(errorOf("tls = 1\n").find("tls: expected a table") != std::string::npos);
  CHECK(errorOf("[upstream]\nname = \"a.io\"\n").find("upstream: expected [[upstream]]") !=
        std::string::npos);
}

TEST_CASE("parseConfig: two default upstreams are refused", "[oci][config]") {
  std::string text =
      "[[upstream]]\nname = \"a.io\"\nurl = \"https://a.io\"\ndefault = true\n"
      "[[upstream]]\nname = \"b.io\"\nurl = \"https://b.io\"\ndefault = true\n";
  CHECK_THAT(errorOf(text), Catch::StartsWith("regcache.toml:5: upstream[1].default: only one"));
}

TEST_CASE("parseConfig: duplicate upstream names are refused", "[oci][config]") {
  std::string text =
      "[[upstream]]\nname = \"a.io\"\nurl = \"https://a.io\"\n"
      "[[upstream]]\nname = \"a.io\"\nurl = \"https://b.io\"\n";
  CHECK_THAT(errorOf(text), Catch::Contains("upstream[1].name: upstream \"a.io\" is listed twice"));
}

TEST_CASE("parseConfig: upstreams need a name and an http(s) url", "[oci][config]") {
  CHECK(errorOf("[[upstream]]\nurl = \"https://a.io\"\n") ==
        "regcache.toml:1: upstream[0]: name and url are required");
  CHECK(errorOf("[[upstream]]\nname = \"a.io\"\n") ==
        "regcache.toml:1: upstream[0]: name and url are required");
  auto url = GENERATE(as<std::string>{}, "ftp://a.io", "a.io", "https://", "http:///x", "");
  CAPTURE(url);
  CHECK_THAT(errorOf("[[upstream]]\nname = \"a.io\"\nurl = \"" + url + "\"\n"),
             Catch::Contains("upstream[0].url: expected an http:// or https:// URL"));
}

TEST_CASE("parseConfig: upstream names are registry hosts", "[oci][config]") {
  auto ok = parseConfig("[[upstream]]\nname = \"registry.example.org:5000\"\nurl = \"http://r\"\n",
                        "x.toml");
  CHECK(ok.isOk());
  auto name = GENERATE(as<std::string>{}, "", "Docker.io", "a/b", "a.io:", "a.io:99999", "-a");
  CAPTURE(name);
  CHECK_THAT(errorOf("[[upstream]]\nname = \"" + name + "\"\nurl = \"https://a.io\"\n"),
             Catch::Contains("upstream[0].name"));
}

TEST_CASE("parseConfig: a bad listen address is refused", "[oci][config]") {
  auto listen = GENERATE(as<std::string>{}, "5000", "host:", "host:port", ":70000", "::1:5000",
                         "[::1:5000", "");
  CAPTURE(listen);
  CHECK_THAT(errorOf("listen = \"" + listen + "\"\n"),
             Catch::StartsWith("regcache.toml:1: listen:"));
}

TEST_CASE("parseConfig: log settings are checked against their choices", "[oci][config]") {
  CHECK_THAT(errorOf("log_level = \"verbose\"\n"),
             Catch::StartsWith("regcache.toml:1: log_level: expected one of trace debug"));
  CHECK_THAT(errorOf("log_format = \"xml\"\n"),
             Catch::StartsWith("regcache.toml:1: log_format: expected one of text json"));
}

TEST_CASE("parseConfig: local namespaces must be repository components", "[oci][config]") {
  auto c = parseConfig("[local]\nnamespaces = [\"local\", \"team-a\"]\n", "x.toml");
  REQUIRE(c.isOk());
  CHECK(c->local_namespaces == std::vector<std::string>{"local", "team-a"});
  CHECK_THAT(errorOf("[local]\nnamespaces = [\"ok\", \"Bad\"]\n"),
             Catch::StartsWith("regcache.toml:2: local.namespaces[1]:"));
  CHECK_THAT(errorOf("[local]\nnamespaces = [\"a/b\"]\n"), Catch::Contains("local.namespaces[0]"));
  CHECK_THAT(errorOf("[local]\nnamespaces = \"local\"\n"), Catch::Contains("local.namespaces"));
}

TEST_CASE("parseConfig: a local namespace may not shadow an upstream name", "[oci][config]") {
  CHECK_THAT(errorOf("[[upstream]]\nname = \"mirror\"\nurl = \"https://m\"\n"
                     "[local]\nnamespaces = [\"mirror\"]\n"),
             Catch::Contains("upstream[0].name: \"mirror\" is also a local namespace"));
}

TEST_CASE("parseConfig: tls needs both cert and key", "[oci][config]") {
  CHECK(errorOf("[tls]\ncert = \"/a\"\n") ==
        "regcache.toml:1: tls: cert and key must be given together");
}

TEST_CASE("parseConfig: TOML syntax errors carry file and line", "[oci][config]") {
  CHECK_THAT(errorOf("listen = \":5000\"\noffline = \n"), Catch::StartsWith("regcache.toml:2: "));
  CHECK_THAT(errorOf("a = 1\na = 2\n"), Catch::StartsWith("regcache.toml:2: "));
}

TEST_CASE("loadConfig: reads a file and names it in errors", "[oci][config]") {
  auto dir = std::filesystem::temp_directory_path() / "regcache-config-test";
  std::filesystem::create_directories(dir);
  auto file = dir / "regcache.toml";
  std::ofstream(file) << "listen = \":6000\"\nbogus = 1\n";
  auto bad = loadConfig(file);
  REQUIRE_FALSE(bad.isOk());
  CHECK(bad.status().message() == file.string() + ":2: bogus: unknown key");

  std::ofstream(file) << "listen = \":6000\"\n";
  auto good = loadConfig(file);
  REQUIRE(good.isOk());
  CHECK(good->listen == ":6000");

  auto missing = loadConfig(dir / "absent.toml");
  REQUIRE_FALSE(missing.isOk());
  CHECK(missing.status().code() == Code::kIo);
  std::filesystem::remove_all(dir);
}

TEST_CASE("parseSize: units, decimals and plain bytes", "[oci][config]") {
  struct Case {
    const char* text;
    uint64_t bytes;
  };
  auto c = GENERATE(values<Case>({
      {"0", 0},
      {"1024", 1024},
      {"1B", 1},
      {"1KB", 1000},
      {"1MB", 1000000},
      {"1GB", 1000000000},
      {"2TB", 2000000000000},
      {"1KiB", 1024},
      {"512MiB", 512ull << 20},
      {"200GiB", 200ull << 30},
      {"1TiB", 1ull << 40},
      {"1.5GiB", 3ull << 29},
      {"1.5GB", 1500000000},
      {"0.5KiB", 512},
      {"10 gib", 10ull << 30},
      {"16777215TiB", 16777215ull << 40},
  }));
  CAPTURE(c.text);
  auto r = parseSize(c.text);
  REQUIRE(r.isOk());
  CHECK(r.value() == c.bytes);
}

TEST_CASE("parseSize: nonsense and overflow are refused", "[oci][config]") {
  auto text = GENERATE(as<std::string>{}, "", "GiB", "-1GiB", "1.5", "1.5B", "1.GiB", ".5GiB",
                       "1.1234567GiB", "5 lots", "1EB", "1e9", "99999999999TiB",
                       "18446744073709551616", "1,5GiB", "0x10");
  CAPTURE(text);
  auto r = parseSize(text);
  REQUIRE_FALSE(r.isOk());
  CHECK(r.status().code() == Code::kInvalidArgument);
}

TEST_CASE("parseDuration: units and combinations", "[oci][config]") {
  struct Case {
    const char* text;
    int64_t seconds;
  };
  auto c = GENERATE(values<Case>({
      {"30s", 30},
      {"5m", 300},
      {"1h", 3600},
      {"2d", 172800},
      {"0s", 0},
      {"1h30m", 5400},
      {"1d2h3m4s", 93784},
      {"90m", 5400},
  }));
  CAPTURE(c.text);
  auto r = parseDuration(c.text);
  REQUIRE(r.isOk());
  CHECK(r->count() == c.seconds);
}

TEST_CASE("parseDuration: nonsense is refused", "[oci][config]") {
  auto text = GENERATE(as<std::string>{}, "", "5", "m", "5x", "5 minutes", "-5m", "1.5h", "30m1h",
                       "5m5m", "1h 30m", "99999999999999999999s", "9999999999999999d");
  CAPTURE(text);
  auto r = parseDuration(text);
  REQUIRE_FALSE(r.isOk());
  CHECK(r.status().code() == Code::kInvalidArgument);
}

TEST_CASE("parseListen: host:port, [v6]:port and :port", "[oci][config]") {
  auto a = parseListen("0.0.0.0:5000");
  REQUIRE(a.isOk());
  CHECK(a->host == "0.0.0.0");
  CHECK(a->port == 5000);

  auto v6 = parseListen("[::1]:443");
  REQUIRE(v6.isOk());
  CHECK(v6->host == "::1");
  CHECK(v6->port == 443);

  auto any = parseListen(":0");
  REQUIRE(any.isOk());
  CHECK(any->host.empty());
  CHECK(any->port == 0);

  auto named = parseListen("localhost:65535");
  REQUIRE(named.isOk());
  CHECK(named->port == 65535);
}
