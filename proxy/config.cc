// The TOML configuration: every key is dispatched through a per-table key list, so a key that is
// not in a list is reported, with its line, instead of being silently ignored.
#include "proxy/config.h"

#include <toml++/toml.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>

#include "proxy/reference.h"

namespace regcache::proxy {

namespace {

constexpr std::string_view kDurationHint = "expected a duration like \"5m\"";
constexpr std::string_view kSizeHint = "expected a size like \"200GiB\"";

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

bool isDigit(char c) { return c >= '0' && c <= '9'; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

// Consumes leading digits of `s` into `out`; false on overflow or when there are none.
bool takeNumber(std::string_view& s, uint64_t& out) {
  size_t i = 0;
  out = 0;
  while (i < s.size() && isDigit(s[i])) {
    if (__builtin_mul_overflow(out, 10u, &out) ||
        __builtin_add_overflow(out, static_cast<uint64_t>(s[i] - '0'), &out)) {
      return false;
    }
    ++i;
  }
  s.remove_prefix(i);
  return i > 0;
}

// ---------------------------------------------------------------------------------------------
// Reading values with their source positions
// ---------------------------------------------------------------------------------------------

// Turns TOML nodes into typed values, and failures into "file:line: key.path: what".
class Reader {
 public:
  explicit Reader(std::string_view source) : source_(source) {}

  Status fail(const toml::source_region& where, std::string_view path,
              std::string_view what) const {
    return invalidArgument(source_ + ":" + std::to_string(where.begin.line) + ": " +
                           std::string(path) + ": " + std::string(what));
  }

  Result<std::string> string(const toml::node& n, std::string_view path) const {
    if (const auto* s = n.as_string()) {
      return s->get();
    }
    return fail(n.source(), path, "expected a string");
  }

  Result<bool> boolean(const toml::node& n, std::string_view path) const {
    if (const auto* b = n.as_boolean()) {
      return b->get();
    }
    return fail(n.source(), path, "expected true or false");
  }

  Result<uint64_t> count(const toml::node& n, std::string_view path) const {
    const auto* i = n.as_integer();
    if (i == nullptr || i->get() < 0) {
      return fail(n.source(), path, "expected a non-negative integer");
    }
    return static_cast<uint64_t>(i->get());
  }

  // A size string ("200GiB") or a plain integer number of bytes.
  Result<uint64_t> size(const toml::node& n, std::string_view path) const {
    if (const auto* i = n.as_integer(); i != nullptr && i->get() >= 0) {
      return static_cast<uint64_t>(i->get());
    }
    if (const auto* s = n.as_string()) {
      if (Result<uint64_t> bytes = parseSize(s->get())) {
        return bytes;
      }
    }
    return fail(n.source(), path, kSizeHint);
  }

  // Only strings: a bare integer would leave its unit to guesswork.
  Result<std::chrono::seconds> duration(const toml::node& n, std::string_view path) const {
    if (const auto* s = n.as_string()) {
      if (Result<std::chrono::seconds> d = parseDuration(s->get())) {
        return d;
      }
    }
    return fail(n.source(), path, kDurationHint);
  }

  // One of `allowed`, e.g. a log level.
  template <size_t N>
  Result<std::string> choice(const toml::node& n, std::string_view path,
                             const std::array<std::string_view, N>& allowed) const {
    Result<std::string> s = string(n, path);
    std::string hint = "expected one of";
    for (std::string_view a : allowed) {
      if (s && s.value() == a) {
        return s;
      }
      hint += std::string(" ") + std::string(a);
    }
    return fail(n.source(), path, hint);
  }

 private:
  std::string source_;
};

// How one key of one table is read into its target (Config or UpstreamConfig).
template <typename T>
using KeyReader = Status (*)(const Reader&, const toml::node&, const std::string& path, T&);

template <typename T>
struct KeySpec {
  std::string_view key;
  KeyReader<T> read;
};

std::string join(std::string_view prefix, std::string_view key) {
  return prefix.empty() ? std::string(key) : std::string(prefix) + "." + std::string(key);
}

// Reads every member of `table` through `keys`; a member with no entry is an error at its line.
template <typename T, size_t N>
Status readTable(const Reader& r, const toml::table& table, std::string_view prefix,
                 const std::array<KeySpec<T>, N>& keys, T& out) {
  for (auto&& [key, node] : table) {
    std::string path = join(prefix, key.str());
    const KeySpec<T>* spec = nullptr;
    for (const KeySpec<T>& k : keys) {
      spec = k.key == key.str() ? &k : spec;
    }
    if (spec == nullptr) {
      return r.fail(key.source(), path, "unknown key");
    }
    if (Status s = spec->read(r, node, path, out); !s) {
      return s;
    }
  }
  return Status::ok();
}

// Assigns a successful Result to `out`, or passes its error on.
template <typename V, typename U>
Status assign(Result<V> value, U& out) {
  if (!value) {
    return value.status();
  }
  out = std::move(value.value());
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// [[upstream]]
// ---------------------------------------------------------------------------------------------

// A registry host, optionally with a port: "docker.io", "registry.example.org:5000".
bool isValidUpstreamName(std::string_view name) {
  size_t colon = name.find(':');
  std::string_view host = name.substr(0, colon);
  if (host.empty() || host.front() == '.' || host.front() == '-') {
    return false;
  }
  for (char c : host) {
    if (!((c >= 'a' && c <= 'z') || isDigit(c) || c == '.' || c == '-')) {
      return false;
    }
  }
  if (colon == std::string_view::npos) {
    return true;
  }
  std::string_view port = name.substr(colon + 1);
  uint64_t n = 0;
  return takeNumber(port, n) && port.empty() && n > 0 && n <= 65535;
}

Status readUpstreamName(const Reader& r, const toml::node& n, const std::string& path,
                        UpstreamConfig& u) {
  Result<std::string> name = r.string(n, path);
  if (name && !isValidUpstreamName(name.value())) {
    return r.fail(n.source(), path, "expected a lowercase registry host like \"ghcr.io\"");
  }
  return assign(std::move(name), u.name);
}

Status readUpstreamUrl(const Reader& r, const toml::node& n, const std::string& path,
                       UpstreamConfig& u) {
  Result<std::string> url = r.string(n, path);
  if (!url) {
    return url.status();
  }
  std::string_view v = url.value();
  size_t scheme = v.starts_with("https://") ? 8 : v.starts_with("http://") ? 7 : 0;
  while (v.size() > scheme && v.back() == '/') {
    v.remove_suffix(1);
  }
  if (scheme == 0 || v.size() == scheme || v[scheme] == '/') {
    return r.fail(n.source(), path, "expected an http:// or https:// URL");
  }
  u.url = std::string(v);
  return Status::ok();
}

constexpr std::array<KeySpec<UpstreamConfig>, 7> kUpstreamKeys{{
    {"name", readUpstreamName},
    {"url", readUpstreamUrl},
    {"default", [](const Reader& r, const toml::node& n, const std::string& p,
                   UpstreamConfig& u) { return assign(r.boolean(n, p), u.is_default); }},
    {"tag_ttl", [](const Reader& r, const toml::node& n, const std::string& p,
                   UpstreamConfig& u) { return assign(r.duration(n, p), u.tag_ttl); }},
    {"username", [](const Reader& r, const toml::node& n, const std::string& p,
                    UpstreamConfig& u) { return assign(r.string(n, p), u.username); }},
    {"password_file", [](const Reader& r, const toml::node& n, const std::string& p,
                         UpstreamConfig& u) { return assign(r.string(n, p), u.password_file); }},
    {"http_proxy", [](const Reader& r, const toml::node& n, const std::string& p,
                      UpstreamConfig& u) { return assign(r.string(n, p), u.http_proxy); }},
}};

// One [[upstream]] entry; `others` are the entries before it, for the uniqueness rules.
Result<UpstreamConfig> readUpstream(const Reader& r, const toml::node& n, const std::string& path,
                                    const std::vector<UpstreamConfig>& others) {
  const toml::table* table = n.as_table();
  if (table == nullptr) {
    return r.fail(n.source(), path, "expected a table ([[upstream]])");
  }
  UpstreamConfig u;
  if (Status s = readTable(r, *table, path, kUpstreamKeys, u); !s) {
    return s;
  }
  if (u.name.empty() || u.url.empty()) {
    return r.fail(n.source(), path, "name and url are required");
  }
  for (const UpstreamConfig& other : others) {
    if (other.name == u.name) {
      return r.fail(n.source(), path + ".name", "upstream \"" + u.name + "\" is listed twice");
    }
    if (other.is_default && u.is_default) {
      return r.fail(n.source(), path + ".default",
                    "only one upstream may be the default (\"" + other.name + "\" already is)");
    }
  }
  return u;
}

Status readUpstreams(const Reader& r, const toml::node& n, const std::string& path, Config& c) {
  const toml::array* array = n.as_array();
  if (array == nullptr) {
    return r.fail(n.source(), path, "expected [[upstream]] tables");
  }
  c.upstreams.clear();  // a file that lists upstreams replaces the embedded ones
  for (const toml::node& entry : *array) {
    std::string entry_path = path + "[" + std::to_string(c.upstreams.size()) + "]";
    Result<UpstreamConfig> u = readUpstream(r, entry, entry_path, c.upstreams);
    if (!u) {
      return u.status();
    }
    c.upstreams.push_back(std::move(u.value()));
  }
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// [tls], [auth], [local]
// ---------------------------------------------------------------------------------------------

constexpr std::array<KeySpec<Config>, 2> kTlsKeys{{
    {"cert", [](const Reader& r, const toml::node& n, const std::string& p,
                Config& c) { return assign(r.string(n, p), c.tls_cert); }},
    {"key", [](const Reader& r, const toml::node& n, const std::string& p,
               Config& c) { return assign(r.string(n, p), c.tls_key); }},
}};

Status readAllowNamespaces(const Reader& r, const toml::node& n, const std::string& path,
                           AuthAllow& a) {
  const toml::array* array = n.as_array();
  if (array == nullptr) {
    return r.fail(n.source(), path, "expected an array of strings");
  }
  for (const toml::node& entry : *array) {
    std::string entry_path = path + "[" + std::to_string(a.namespaces.size()) + "]";
    Result<std::string> ns = r.string(entry, entry_path);
    if (ns && ns.value() != "*" && !isValidRepository(ns.value())) {
      return r.fail(entry.source(), entry_path,
                    "expected \"*\" or a repository name prefix like \"team-a\"");
    }
    if (Status s = assign(std::move(ns), a.namespaces.emplace_back()); !s) {
      return s;
    }
  }
  return Status::ok();
}

constexpr std::array<KeySpec<AuthAllow>, 2> kAllowKeys{{
    {"user", [](const Reader& r, const toml::node& n, const std::string& p,
                AuthAllow& a) { return assign(r.string(n, p), a.user); }},
    {"namespaces", readAllowNamespaces},
}};

// [[auth.allow]]: one entry per user; a user listed twice would make the second entry a trap.
Status readAllows(const Reader& r, const toml::node& n, const std::string& path, Config& c) {
  const toml::array* array = n.as_array();
  if (array == nullptr) {
    return r.fail(n.source(), path, "expected [[auth.allow]] tables");
  }
  c.auth_allow.clear();
  for (const toml::node& entry : *array) {
    std::string entry_path = path + "[" + std::to_string(c.auth_allow.size()) + "]";
    const toml::table* table = entry.as_table();
    if (table == nullptr) {
      return r.fail(entry.source(), entry_path, "expected a table ([[auth.allow]])");
    }
    AuthAllow allow;
    if (Status s = readTable(r, *table, entry_path, kAllowKeys, allow); !s) {
      return s;
    }
    if (allow.user.empty()) {
      return r.fail(entry.source(), entry_path, "user is required");
    }
    for (const AuthAllow& other : c.auth_allow) {
      if (other.user == allow.user) {
        return r.fail(entry.source(), entry_path + ".user",
                      "user \"" + allow.user + "\" is listed twice");
      }
    }
    c.auth_allow.push_back(std::move(allow));
  }
  return Status::ok();
}

constexpr std::array<KeySpec<Config>, 3> kAuthKeys{{
    {"htpasswd", [](const Reader& r, const toml::node& n, const std::string& p,
                    Config& c) { return assign(r.string(n, p), c.htpasswd); }},
    {"anonymous_pull", [](const Reader& r, const toml::node& n, const std::string& p,
                          Config& c) { return assign(r.boolean(n, p), c.anonymous_pull); }},
    {"allow", readAllows},
}};

Status readNamespaces(const Reader& r, const toml::node& n, const std::string& path, Config& c) {
  const toml::array* array = n.as_array();
  if (array == nullptr) {
    return r.fail(n.source(), path, "expected an array of strings");
  }
  c.local_namespaces.clear();
  for (const toml::node& entry : *array) {
    std::string entry_path = path + "[" + std::to_string(c.local_namespaces.size()) + "]";
    Result<std::string> ns = r.string(entry, entry_path);
    if (ns && !isValidRepositoryComponent(ns.value())) {
      return r.fail(entry.source(), entry_path,
                    "expected a repository name component like \"local\"");
    }
    if (Status s = assign(std::move(ns), c.local_namespaces.emplace_back()); !s) {
      return s;
    }
  }
  return Status::ok();
}

constexpr std::array<KeySpec<Config>, 1> kLocalKeys{{{"namespaces", readNamespaces}}};

// [limits] and its [limits.rate_limit] table.
constexpr std::array<KeySpec<Config>, 2> kRateLimitKeys{{
    {"requests_per_second",
     [](const Reader& r, const toml::node& n, const std::string& p, Config& c) {
       return assign(r.count(n, p), c.limits.rate_limit_requests_per_second);
     }},
    {"burst",
     [](const Reader& r, const toml::node& n, const std::string& p, Config& c) {
       Result<uint64_t> burst = r.count(n, p);
       if (burst && burst.value() == 0) {
         return r.fail(n.source(), p, "expected at least 1");
       }
       return assign(std::move(burst), c.limits.rate_limit_burst);
     }},
}};

Status readRateLimit(const Reader& r, const toml::node& n, const std::string& path, Config& c);

constexpr std::array<KeySpec<Config>, 6> kLimitsKeys{{
    {"max_connections", [](const Reader& r, const toml::node& n, const std::string& p,
                           Config& c) { return assign(r.count(n, p), c.limits.max_connections); }},
    {"max_header_bytes", [](const Reader& r, const toml::node& n, const std::string& p,
                            Config& c) { return assign(r.size(n, p), c.limits.max_header_bytes); }},
    {"idle_timeout", [](const Reader& r, const toml::node& n, const std::string& p,
                        Config& c) { return assign(r.duration(n, p), c.limits.idle_timeout); }},
    {"request_timeout",
     [](const Reader& r, const toml::node& n, const std::string& p, Config& c) {
       return assign(r.duration(n, p), c.limits.request_timeout);
     }},
    {"max_fills_per_upstream",
     [](const Reader& r, const toml::node& n, const std::string& p, Config& c) {
       return assign(r.count(n, p), c.limits.max_fills_per_upstream);
     }},
    {"rate_limit", readRateLimit},
}};

// A [section] read through its own key list.
template <size_t N>
Status readSection(const Reader& r, const toml::node& n, const std::string& path,
                   const std::array<KeySpec<Config>, N>& keys, Config& c) {
  const toml::table* table = n.as_table();
  if (table == nullptr) {
    return r.fail(n.source(), path, "expected a table ([" + path + "])");
  }
  return readTable(r, *table, path, keys, c);
}

Status readRateLimit(const Reader& r, const toml::node& n, const std::string& path, Config& c) {
  return readSection(r, n, path, kRateLimitKeys, c);
}

// Limits of 0 would refuse every connection or time every request out at once.
Status checkLimits(const Reader& r, const toml::table& root, const LimitsConfig& limits) {
  auto fail = [&](std::string_view key, std::string_view why) {
    const toml::node* where = root["limits"][key].node();
    return r.fail(where != nullptr ? where->source() : root.source(), "limits." + std::string(key),
                  why);
  };
  if (limits.max_connections == 0) {
    return fail("max_connections", "expected at least 1");
  }
  if (limits.max_header_bytes < 1024) {
    return fail("max_header_bytes", "expected at least 1KiB");
  }
  if (limits.idle_timeout.count() == 0) {
    return fail("idle_timeout", "expected at least 1s");
  }
  if (limits.request_timeout.count() == 0) {
    return fail("request_timeout", "expected at least 1s");
  }
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// The top level
// ---------------------------------------------------------------------------------------------

constexpr std::array<std::string_view, 5> kLogLevels{"trace", "debug", "info", "warn", "error"};
constexpr std::array<std::string_view, 2> kLogFormats{"text", "json"};

Status readListen(const Reader& r, const toml::node& n, const std::string& path, Config& c) {
  Result<std::string> listen = r.string(n, path);
  if (listen && !parseListen(listen.value())) {
    return r.fail(n.source(), path, "expected \"host:port\", \"[v6]:port\" or \":port\"");
  }
  return assign(std::move(listen), c.listen);
}

Status readDataDir(const Reader& r, const toml::node& n, const std::string& path, Config& c) {
  Result<std::string> dir = r.string(n, path);
  if (dir && dir.value().empty()) {
    return r.fail(n.source(), path, "must not be empty");
  }
  return assign(std::move(dir), c.data_dir);
}

constexpr std::array<KeySpec<Config>, 14> kTopKeys{{
    {"listen", readListen},
    {"data_dir", readDataDir},
    {"max_cache_size", [](const Reader& r, const toml::node& n, const std::string& p,
                          Config& c) { return assign(r.size(n, p), c.max_cache_size); }},
    {"offline", [](const Reader& r, const toml::node& n, const std::string& p,
                   Config& c) { return assign(r.boolean(n, p), c.offline); }},
    {"tls", [](const Reader& r, const toml::node& n, const std::string& p,
               Config& c) { return readSection(r, n, p, kTlsKeys, c); }},
    {"auth", [](const Reader& r, const toml::node& n, const std::string& p,
                Config& c) { return readSection(r, n, p, kAuthKeys, c); }},
    {"upstream", readUpstreams},
    {"limits", [](const Reader& r, const toml::node& n, const std::string& p,
                  Config& c) { return readSection(r, n, p, kLimitsKeys, c); }},
    {"local", [](const Reader& r, const toml::node& n, const std::string& p,
                 Config& c) { return readSection(r, n, p, kLocalKeys, c); }},
    {"log_level", [](const Reader& r, const toml::node& n, const std::string& p,
                     Config& c) { return assign(r.choice(n, p, kLogLevels), c.log_level); }},
    {"log_format", [](const Reader& r, const toml::node& n, const std::string& p,
                      Config& c) { return assign(r.choice(n, p, kLogFormats), c.log_format); }},
    {"max_upload_size", [](const Reader& r, const toml::node& n, const std::string& p,
                           Config& c) { return assign(r.size(n, p), c.max_upload_size); }},
    {"upload_ttl", [](const Reader& r, const toml::node& n, const std::string& p,
                      Config& c) { return assign(r.duration(n, p), c.upload_ttl); }},
    {"threads", [](const Reader& r, const toml::node& n, const std::string& p,
                   Config& c) { return assign(r.count(n, p), c.threads); }},
}};

// Rules across sections, checked once everything is read.
Status checkConsistency(const Reader& r, const toml::table& root, const Config& c) {
  if (c.tls_cert.has_value() != c.tls_key.has_value()) {
    return r.fail(root["tls"].node()->source(), "tls", "cert and key must be given together");
  }
  if (Status s = checkLimits(r, root, c.limits); !s) {
    return s;
  }
  if (!c.auth_allow.empty() && !c.htpasswd) {
    return r.fail(root["auth"]["allow"].node()->source(), "auth.allow",
                  "write permissions need users: set auth.htpasswd");
  }
  for (size_t i = 0; i < c.upstreams.size(); ++i) {
    for (const std::string& ns : c.local_namespaces) {
      if (ns != c.upstreams[i].name) {
        continue;
      }
      const toml::node* where = root["upstream"][i]["name"].node();
      if (where == nullptr) {
        where = root["local"]["namespaces"].node();
      }
      return r.fail(where->source(), "upstream[" + std::to_string(i) + "].name",
                    "\"" + ns + "\" is also a local namespace");
    }
  }
  return Status::ok();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------------------------

const UpstreamConfig* Config::defaultUpstream() const {
  for (const UpstreamConfig& u : upstreams) {
    if (u.is_default) {
      return &u;
    }
  }
  return nullptr;
}

const UpstreamConfig* Config::upstream(std::string_view name) const {
  for (const UpstreamConfig& u : upstreams) {
    if (u.name == name) {
      return &u;
    }
  }
  return nullptr;
}

Config defaultConfig() {
  Config c;
  UpstreamConfig hub;
  hub.name = "docker.io";
  hub.url = "https://registry-1.docker.io";
  hub.is_default = true;
  hub.tag_ttl = std::chrono::minutes(5);
  c.upstreams.push_back(std::move(hub));
  return c;
}

Result<Config> parseConfig(std::string_view text, std::string_view source_name) {
  Reader reader(source_name);
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    return invalidArgument(std::string(source_name) + ":" + std::to_string(e.source().begin.line) +
                           ": " + std::string(e.description()));
  }

  Config config = defaultConfig();
  if (Status s = readTable(reader, root, "", kTopKeys, config); !s) {
    return s;
  }
  if (Status s = checkConsistency(reader, root, config); !s) {
    return s;
  }
  return config;
}

Result<Config> loadConfig(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return ioError("cannot read config " + file.string() + ": " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return ioError("cannot read config " + file.string() + ": " + std::strerror(errno));
  }
  return parseConfig(text.str(), file.string());
}

Result<uint64_t> parseSize(std::string_view text) {
  static constexpr std::array<std::pair<std::string_view, uint64_t>, 9> kUnits{{
      {"b", 1},
      {"kb", 1000ull},
      {"mb", 1000ull * 1000},
      {"gb", 1000ull * 1000 * 1000},
      {"tb", 1000ull * 1000 * 1000 * 1000},
      {"kib", 1ull << 10},
      {"mib", 1ull << 20},
      {"gib", 1ull << 30},
      {"tib", 1ull << 40},
  }};
  std::string_view s = trim(text);
  uint64_t whole = 0;
  if (!takeNumber(s, whole)) {
    return invalidArgument("size must start with a number: \"" + std::string(text) + "\"");
  }

  // Up to six decimals, kept as a fraction of a million so the arithmetic stays exact.
  uint64_t micros = 0;
  bool has_fraction = !s.empty() && s.front() == '.';
  if (has_fraction) {
    s.remove_prefix(1);
    size_t digits = 0;
    while (!s.empty() && isDigit(s.front()) && digits < 6) {
      micros = micros * 10 + static_cast<uint64_t>(s.front() - '0');
      s.remove_prefix(1);
      ++digits;
    }
    if (digits == 0 || (!s.empty() && isDigit(s.front()))) {
      return invalidArgument("size needs 1 to 6 decimals: \"" + std::string(text) + "\"");
    }
    for (; digits < 6; ++digits) {
      micros *= 10;
    }
  }

  std::string unit = lower(trim(s));
  uint64_t multiplier = unit.empty() ? 1 : 0;
  for (const auto& [name, value] : kUnits) {
    multiplier = name == unit ? value : multiplier;
  }
  if (multiplier == 0) {
    return invalidArgument("unknown size unit \"" + std::string(trim(s)) +
                           "\" (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)");
  }
  if (has_fraction && multiplier == 1) {
    return invalidArgument("a size in bytes must be whole: \"" + std::string(text) + "\"");
  }

  uint64_t bytes = 0;
  if (__builtin_mul_overflow(whole, multiplier, &bytes) ||
      __builtin_add_overflow(bytes, micros * multiplier / 1000000, &bytes)) {
    return invalidArgument("size too large: \"" + std::string(text) + "\"");
  }
  return bytes;
}

Result<std::chrono::seconds> parseDuration(std::string_view text) {
  static constexpr std::string_view kUnits = "dhms";  // largest first
  static constexpr std::array<uint64_t, 4> kSeconds{86400, 3600, 60, 1};
  std::string_view s = trim(text);
  if (s.empty()) {
    return invalidArgument("empty duration");
  }
  uint64_t total = 0;
  size_t next_unit = 0;  // units must come largest first, each at most once
  while (!s.empty()) {
    uint64_t n = 0;
    if (!takeNumber(s, n) || s.empty()) {
      return invalidArgument("duration parts are a number and a unit (d, h, m, s): \"" +
                             std::string(text) + "\"");
    }
    size_t unit = kUnits.find(s.front(), next_unit);
    if (unit == std::string_view::npos) {
      return invalidArgument("bad or out-of-order duration unit in \"" + std::string(text) + "\"");
    }
    s.remove_prefix(1);
    uint64_t part = 0;
    if (__builtin_mul_overflow(n, kSeconds[unit], &part) ||
        __builtin_add_overflow(total, part, &total) ||
        total > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return invalidArgument("duration too long: \"" + std::string(text) + "\"");
    }
    next_unit = unit + 1;
  }
  return std::chrono::seconds(static_cast<int64_t>(total));
}

Result<ListenAddress> parseListen(std::string_view text) {
  ListenAddress address;
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return invalidArgument("listen address needs a port: \"" + std::string(text) + "\"");
  }
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  if (host.starts_with('[')) {
    if (host.size() < 3 || !host.ends_with(']')) {
      return invalidArgument("bad IPv6 listen address: \"" + std::string(text) + "\"");
    }
    host = host.substr(1, host.size() - 2);
  } else if (host.find_first_of(":[] \t") != std::string_view::npos) {
    return invalidArgument("IPv6 listen addresses need brackets: \"" + std::string(text) + "\"");
  }

  uint64_t n = 0;
  if (!takeNumber(port, n) || !port.empty() || n > 65535) {
    return invalidArgument("listen port must be 0 to 65535: \"" + std::string(text) + "\"");
  }
  address.host = std::string(host);
  address.port = static_cast<uint16_t>(n);
  return address;
}

}  // namespace regcache::proxy
