// `regcache du [-c FILE] [--data-dir DIR] [--json] [--server URL]`: bytes and counts per
// upstream and repository, cached against pushed, the store's disk use, and the running
// server's hit ratio since its start.
//
// The --json document (field names are stable; sizes in bytes):
//   {"blobs": N, "bytes": N,                       every blob record, each once
//    "cached": {"blobs": N, "bytes": N},           records fetched from an upstream
//    "pushed": {"blobs": N, "bytes": N},           records pushed (a blob can be both)
//    "manifests": N, "tags": N,
//    "disk": {"blobs": N, "uploads": N, "temp": N, "index": N, "total": N},
//    "upstreams": [{"name": "docker.io", "repositories": N, "blobs": N, "bytes": N}, ...],
//    "local": {"repositories": N, "blobs": N, "bytes": N},
//    "repositories": [{"name": "docker.io/library/alpine", "kind": "cached" | "pushed",
//                      "upstream": "docker.io" | null, "blobs": N, "bytes": N,
//                      "manifests": N, "tags": N}, ...],
//    "hit_ratio": 0.0..1.0 | null}                 null: the server did not answer
// A blob is counted once per repository that links it, once per upstream, once in the totals.
#include <curl/curl.h>
#include <simdjson.h>

#include <cstdio>
#include <optional>
#include <string>

#include "cache/usage.h"
#include "proxy/commands.h"
#include "proxy/store_commands.h"

namespace regcache::proxy {

namespace {

// ---------------------------------------------------------------------------------------------
// The running server's hit ratio

// http(s)://host:port of the server `config` describes, as seen from this machine; nullopt
// when its port is chosen at start (listen port 0) and so unknown here.
std::optional<std::string> serverBase(const Config& config) {
  auto listen = parseListen(config.listen);
  if (!listen || listen->port == 0) return std::nullopt;
  std::string host = listen->host;
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  std::string scheme = config.tls_cert ? "https://" : "http://";
  return scheme + host + ":" + std::to_string(listen->port);
}

size_t appendBody(char* data, size_t size, size_t count, void* out) {
  auto* body = static_cast<std::string*>(out);
  if (body->size() > (1 << 20)) return 0;  // a status page is small: refuse anything else
  body->append(data, size * count);
  return size * count;
}

// GET <base>/api/status with a short timeout. The server's certificate is not verified: we
// only read public counters from our own server, and send nothing secret.
std::optional<std::string> fetchStatus(const std::string& base) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return std::nullopt;
  std::string url = base + "/api/status";
  std::string body;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 2000L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, appendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK || status != 200) return std::nullopt;
  return body;
}

std::optional<double> hitRatio(const std::string& base) {
  std::optional<std::string> body = fetchStatus(base);
  if (!body) return std::nullopt;
  simdjson::ondemand::parser parser;
  simdjson::padded_string json(*body);
  auto doc = parser.iterate(json);
  simdjson::simdjson_result<double> ratio = doc["cache"]["hit_ratio"].get_double();
  if (ratio.error()) return std::nullopt;
  return ratio.value_unsafe();
}

// ---------------------------------------------------------------------------------------------
// Output

std::string jsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string n(uint64_t v) { return std::to_string(v); }

std::string groupJson(const cache::UpstreamUsage& g) {
  return "{" + (g.name.empty() ? "" : "\"name\":" + jsonString(g.name) + ",") +
         "\"repositories\":" + n(g.repositories) + ",\"blobs\":" + n(g.blobs) +
         ",\"bytes\":" + n(g.bytes) + "}";
}

std::string repositoryJson(const cache::RepositoryUsage& r) {
  return "{\"name\":" + jsonString(r.name) + ",\"kind\":\"" +
         (r.upstream.empty() ? "pushed" : "cached") +
         "\",\"upstream\":" + (r.upstream.empty() ? "null" : jsonString(r.upstream)) +
         ",\"blobs\":" + n(r.blobs) + ",\"bytes\":" + n(r.bytes) +
         ",\"manifests\":" + n(r.manifests) + ",\"tags\":" + n(r.tags) + "}";
}

void printJson(const cache::StoreUsage& u, std::optional<double> ratio) {
  std::string out =
      "{\"blobs\":" + n(u.blobs) + ",\"bytes\":" + n(u.bytes) +
      ",\"cached\":{\"blobs\":" + n(u.cached_blobs) + ",\"bytes\":" + n(u.cached_bytes) +
      "},\"pushed\":{\"blobs\":" + n(u.pushed_blobs) + ",\"bytes\":" + n(u.pushed_bytes) +
      "},\"manifests\":" + n(u.manifests) + ",\"tags\":" + n(u.tags) +
      ",\"disk\":{\"blobs\":" + n(u.disk_blob_bytes) + ",\"uploads\":" + n(u.disk_upload_bytes) +
      ",\"temp\":" + n(u.disk_temp_bytes) + ",\"index\":" + n(u.disk_index_bytes) +
      ",\"total\":" + n(u.disk_total_bytes) + "},\"upstreams\":[";
  cache::UpstreamUsage local;
  bool first = true;
  for (const cache::UpstreamUsage& g : u.upstreams) {
    if (g.name.empty()) {
      local = g;
      continue;
    }
    out += (first ? "" : ",") + groupJson(g);
    first = false;
  }
  out += "],\"local\":" + groupJson(local) + ",\"repositories\":[";
  for (size_t i = 0; i < u.repositories.size(); ++i) {
    out += (i ? "," : "") + repositoryJson(u.repositories[i]);
  }
  char ratio_text[32] = "null";
  if (ratio) std::snprintf(ratio_text, sizeof ratio_text, "%.4f", *ratio);
  out += std::string("],\"hit_ratio\":") + ratio_text + "}";
  std::printf("%s\n", out.c_str());
}

void printTable(const cache::StoreUsage& u, std::optional<double> ratio) {
  std::printf("%-48s %-7s %8s %12s %10s %6s\n", "REPOSITORY", "KIND", "BLOBS", "BYTES", "MANIFESTS",
              "TAGS");
  for (const cache::RepositoryUsage& r : u.repositories) {
    std::printf("%-48s %-7s %8llu %12s %10llu %6llu\n", r.name.c_str(),
                r.upstream.empty() ? "pushed" : "cached", static_cast<unsigned long long>(r.blobs),
                humanBytes(r.bytes).c_str(), static_cast<unsigned long long>(r.manifests),
                static_cast<unsigned long long>(r.tags));
  }
  std::printf("\n%-24s %12s %8s %12s\n", "UPSTREAM", "REPOSITORIES", "BLOBS", "BYTES");
  for (const cache::UpstreamUsage& g : u.upstreams) {
    std::printf("%-24s %12llu %8llu %12s\n", g.name.empty() ? "(local)" : g.name.c_str(),
                static_cast<unsigned long long>(g.repositories),
                static_cast<unsigned long long>(g.blobs), humanBytes(g.bytes).c_str());
  }
  std::printf("\ntotal: %llu blobs, %s (cached %s, pushed %s), %llu manifests, %llu tags\n",
              static_cast<unsigned long long>(u.blobs), humanBytes(u.bytes).c_str(),
              humanBytes(u.cached_bytes).c_str(), humanBytes(u.pushed_bytes).c_str(),
              static_cast<unsigned long long>(u.manifests),
              static_cast<unsigned long long>(u.tags));
  std::printf("disk: %s (blobs %s, uploads %s, temp %s, index %s)\n",
              humanBytes(u.disk_total_bytes).c_str(), humanBytes(u.disk_blob_bytes).c_str(),
              humanBytes(u.disk_upload_bytes).c_str(), humanBytes(u.disk_temp_bytes).c_str(),
              humanBytes(u.disk_index_bytes).c_str());
  if (ratio) {
    std::printf("hit ratio: %.1f%% (since the server started)\n", *ratio * 100);
  } else {
    std::printf("hit ratio: n/a (server not running)\n");
  }
}

struct DuArgs {
  bool json = false;
  std::string server;  // --server URL: where to ask for the hit ratio, instead of `listen`
};

bool parseDuArgs(const std::vector<std::string>& rest, DuArgs& args) {
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == "--json") {
      args.json = true;
    } else if (rest[i] == "--server" && i + 1 < rest.size()) {
      args.server = rest[++i];
    } else {
      std::fprintf(stderr, "regcache: unknown option for du: %s\n", rest[i].c_str());
      return false;
    }
  }
  return true;
}

}  // namespace

int duCommand(const std::vector<std::string>& argv) {
  CommonOptions common;
  std::vector<std::string> rest;
  DuArgs args;
  if (!parseCommonOptions(argv, common, rest) || !parseDuArgs(rest, args)) return kExitUsage;
  auto config = loadCommandConfig(common);
  if (!config) return kExitUsage;
  auto opened = openStoreForCommand(config->data_dir);
  if (!opened) return kExitFailed;

  std::vector<std::string> upstreams;
  for (const UpstreamConfig& upstream : config->upstreams) upstreams.push_back(upstream.name);
  auto usage = cache::measureUsage(*opened->index, *opened->store, upstreams);
  if (!usage) {
    std::fprintf(stderr, "regcache: du: %s\n", usage.status().message().c_str());
    return kExitFailed;
  }

  curl_global_init(CURL_GLOBAL_DEFAULT);
  std::optional<std::string> base = args.server.empty() ? serverBase(*config) : args.server;
  std::optional<double> ratio;
  if (base) ratio = hitRatio(*base);
  curl_global_cleanup();
  args.json ? printJson(*usage, ratio) : printTable(*usage, ratio);
  return 0;
}

}  // namespace regcache::proxy
