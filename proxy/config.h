// The configuration: TOML file keys of DESIGN.md, with embedded defaults.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "cache/status.h"

namespace regcache::proxy {

struct UpstreamConfig {
  std::string name;  // the ns= value and path prefix, e.g. "docker.io"
  std::string url;   // e.g. "https://registry-1.docker.io"
  bool is_default = false;
  std::chrono::seconds tag_ttl{300};
  std::string username;
  std::string password_file;
  std::string http_proxy;
};

// One [[auth.allow]] entry: where `user` may push and delete.
struct AuthAllow {
  std::string user;
  // Repository name prefixes, matched as whole path components ("team-a" covers "team-a/app"
  // but not "team-ab/app"); "*" covers every repository.
  std::vector<std::string> namespaces;
};

// [limits]: what one client, or all of them together, may hold of the server.
struct LimitsConfig {
  size_t max_connections = 10000;               // over it, new connections are closed at once
  uint64_t max_header_bytes = 64 * 1024;        // request line and headers; over it: 431
  std::chrono::seconds idle_timeout{120};       // keep-alive connection with no request
  std::chrono::seconds request_timeout{30};     // headers complete / body stall bound
  size_t max_fills_per_upstream = 16;           // concurrent blob fills; more wait in a queue
  uint64_t rate_limit_requests_per_second = 0;  // per client IP; 0 = no limit
  uint64_t rate_limit_burst = 100;
};

struct Config {
  std::string listen = "0.0.0.0:5000";
  std::filesystem::path data_dir = "./regcache-data";
  uint64_t max_cache_size = 200ull << 30;
  bool offline = false;

  std::optional<std::string> tls_cert;
  std::optional<std::string> tls_key;

  std::optional<std::string> htpasswd;  // set: client auth is on
  bool anonymous_pull = true;
  std::vector<AuthAllow> auth_allow;  // write permissions; a user not listed may push nowhere

  std::vector<UpstreamConfig> upstreams;  // embedded default: docker.io, default = true
  std::vector<std::string> local_namespaces{"local"};

  std::string log_level = "info";          // trace, debug, info, warn, error
  std::string log_format = "text";         // text or json (access log)
  uint64_t max_upload_size = 0;            // bytes; 0 = unlimited
  std::chrono::seconds upload_ttl{86400};  // idle uploads abandoned after this long
  size_t threads = 0;                      // 0: one per core
  LimitsConfig limits;

  // The default upstream, or nullptr.
  const UpstreamConfig* defaultUpstream() const;
  // The upstream with this name, or nullptr.
  const UpstreamConfig* upstream(std::string_view name) const;
};

// The embedded defaults: what `regcache serve` runs with and no file.
Config defaultConfig();

// Reads a TOML file over the embedded defaults. Unknown keys, wrong types and bad values are
// kInvalidArgument whose message names the file, the key and the line, e.g.
// "regcache.toml:7: upstream[1].tag_ttl: expected a duration like \"5m\"".
// A file that lists [[upstream]] replaces the default upstream list. Upstream names are
// lowercase hosts with an optional port and must be unique, not also a local namespace; at most
// one is the default; a url's trailing '/' is dropped; tls needs both cert and key. Sizes take a
// string for parseSize or an integer of bytes; durations take a string for parseDuration.
// A file that cannot be read is kIo.
Result<Config> loadConfig(const std::filesystem::path& file);
// The same, from text (tests); `source_name` stands in for the file name in messages.
Result<Config> parseConfig(std::string_view text, std::string_view source_name);

// "200GiB", "512MiB", "1.5GB", "1024" (bytes) -> bytes. kInvalidArgument on nonsense.
Result<uint64_t> parseSize(std::string_view text);
// "5m", "30s", "1h", "2d", "1h30m" -> seconds. kInvalidArgument on nonsense.
Result<std::chrono::seconds> parseDuration(std::string_view text);

// "host:port", "[v6]:port" or ":port" (all addresses). kInvalidArgument when malformed.
struct ListenAddress {
  std::string host;
  uint16_t port = 0;
};
Result<ListenAddress> parseListen(std::string_view text);

}  // namespace regcache::proxy
