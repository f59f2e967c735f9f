// The serve command's lifecycle: open, listen, wait for a signal, stop.
#include "proxy/serve.h"

#include <signal.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>
#include <thread>

#include "cache/blob_store.h"
#include "cache/index.h"
#include "proxy/housekeeping.h"
#include "proxy/http.h"
#include "proxy/live_registry.h"
#include "proxy/loop.h"
#include "proxy/registry.h"
#include "proxy/sd_notify.h"

namespace regcache::proxy {

namespace {

// How often the housekeeping chores (recency, eviction, idle uploads) are looked at.
constexpr int kTickSeconds = 5;
// How long a graceful stop waits for requests and fills in flight.
// TODO(config): a shutdown_timeout key, once the limits work in config.cc has landed.
constexpr std::chrono::seconds kDrainBound{30};

// A graceful stop: no new connections; requests in flight (a layer half sent, a push being
// committed) and fills in flight get up to `bound` to finish. What is still running after it
// is cut: clients see a short body, fills delete their temp files.
void drain(http::Server& server, LiveRegistry& registry, std::chrono::seconds bound) {
  server.stopAccepting();
  auto deadline = std::chrono::steady_clock::now() + bound;
  auto busy = [&registry] {
    return registry.metrics().inFlight() > 0 || registry.fillsInFlight() > 0;
  };
  while (busy() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (busy()) {
    spdlog::warn("serve.drain_cut requests={} fills={} bound_s={}", registry.metrics().inFlight(),
                 registry.fillsInFlight(), bound.count());
  } else {
    spdlog::info("serve.drained");
  }
}

// %* in a log pattern: the message as the inside of a JSON string literal.
class JsonMessageFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    for (char ch : msg.payload) {
      auto c = static_cast<unsigned char>(ch);
      if (c == '"' || c == '\\') {
        dest.push_back('\\');
        dest.push_back(ch);
      } else if (c < 0x20 || c >= 0x7f) {
        // Bytes, not characters: a message is not guaranteed to be UTF-8.
        static constexpr char kHex[] = "0123456789abcdef";
        const char escaped[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
        dest.append(escaped, escaped + sizeof escaped);
      } else {
        dest.push_back(ch);
      }
    }
  }
  std::unique_ptr<spdlog::custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

// Keys a running server cannot take from a new config: they name sockets, threads, the store
// or the process-wide bound. A reload that changes them says so and goes on with the rest.
std::vector<std::string> restartOnlyChanges(const Config& from, const Config& to) {
  std::vector<std::string> changed;
  if (from.listen != to.listen) changed.emplace_back("listen");
  if (from.data_dir != to.data_dir) changed.emplace_back("data_dir");
  if (from.threads != to.threads) changed.emplace_back("threads");
  if (from.max_cache_size != to.max_cache_size) changed.emplace_back("max_cache_size");
  if (from.tls_cert.has_value() != to.tls_cert.has_value()) changed.emplace_back("tls");
  if (from.log_format != to.log_format) changed.emplace_back("log_format");
  return changed;
}

// SIGHUP: read the config again; a bad one is refused and the running one stays. A good one
// becomes a new registry generation (upstreams, routing, auth, offline, limits on fills) for
// new requests; the TLS certificate is read again; the log level follows.
void reload(const std::function<Result<Config>()>& reread, LiveRegistry& registry,
            http::Server& server) {
  notifyServiceManager(kNotifyReloading);
  auto fresh = reread();
  if (!fresh) {
    spdlog::error("serve.reload refused=true error=\"{}\" (the running config stays)",
                  fresh.status().message());
    notifyServiceManager(kNotifyReady);
    return;
  }
  const Config& old = registry.config();
  for (const auto& key : restartOnlyChanges(old, *fresh)) {
    spdlog::warn("serve.reload key={} applied=false reason=\"needs a restart\"", key);
  }
  // Keys that stay with the process keep their running values.
  fresh->listen = old.listen;
  fresh->data_dir = old.data_dir;
  fresh->threads = old.threads;
  fresh->max_cache_size = old.max_cache_size;
  fresh->log_format = old.log_format;
  std::string level = fresh->log_level;
  if (Status status = registry.install(std::make_shared<const Config>(std::move(*fresh)));
      !status) {
    spdlog::error("serve.reload refused=true error=\"{}\" (the running config stays)",
                  status.message());
    notifyServiceManager(kNotifyReady);
    return;
  }
  for (const auto& name : {"regcache", "access"}) {
    if (auto logger = spdlog::get(name)) logger->set_level(spdlog::level::from_str(level));
  }
  if (registry.config().tls_cert) {
    if (Status status = server.reloadTls(); !status) {
      spdlog::error("serve.reload_tls kept=old error=\"{}\"", status.message());
    } else {
      spdlog::info("serve.reload_tls serial={}", server.tlsSerial());
    }
  }
  spdlog::info("serve.reload applied=true upstreams={} offline={}",
               registry.config().upstreams.size(), registry.config().offline);
  notifyServiceManager(kNotifyReady);
}

}  // namespace

void setUpLogging(const std::string& level, const std::string& format) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto events = std::make_shared<spdlog::logger>("regcache", sink);
  // A sink of its own: formatters belong to sinks, and the two formats differ in JSON mode.
  auto access_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto access = std::make_shared<spdlog::logger>("access", access_sink);
  for (const auto& logger : {events, access}) {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l %v");
    logger->set_level(spdlog::level::from_str(level));
    logger->flush_on(spdlog::level::info);
  }
  if (format == "json") {
    // Access lines arrive as whole JSON objects; event lines are wrapped, their text escaped.
    access->set_pattern("%v");
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<JsonMessageFlag>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","msg":"%*"})");
    events->set_formatter(std::move(formatter));
  }
  spdlog::drop("access");
  spdlog::register_logger(access);
  spdlog::set_default_logger(events);
}

int serve(const Config& config, std::function<Result<Config>()> reread) {
  auto listen = parseListen(config.listen);
  if (!listen) {
    spdlog::error("serve.listen error=\"{}\"", listen.status().message());
    return 1;
  }
  auto index = cache::Index::open(config.data_dir / "index");
  if (!index) {
    spdlog::error("serve.index dir={} error=\"{}\"", config.data_dir.string(),
                  index.status().message());
    return 1;
  }
  auto store = cache::BlobStore::open(config.data_dir);
  if (!store) {
    spdlog::error("serve.store dir={} error=\"{}\"", config.data_dir.string(),
                  store.status().message());
    return 1;
  }

  if (size_t orphans = (*store)->removeOrphanTemps(); orphans > 0) {
    spdlog::info("serve.cleanup temp_files={}", orphans);
  }

  // Owned by pointer so it can be drained before the registry its jobs use goes away.
  auto pool = std::make_unique<BlockingPool>(4);
  LiveRegistry registry(**index, **store, *pool);
  if (Status status = registry.install(std::make_shared<const Config>(config)); !status) {
    spdlog::error("serve.auth error=\"{}\"", status.message());
    return 1;
  }
  http::ServerOptions options;
  options.host = listen->host;
  options.port = listen->port;
  options.threads = config.threads;
  options.tls_cert = config.tls_cert.value_or("");
  options.tls_key = config.tls_key.value_or("");
  options.max_connections = config.limits.max_connections;
  options.max_header_bytes = config.limits.max_header_bytes;
  options.idle_timeout = config.limits.idle_timeout;
  options.request_timeout = config.limits.request_timeout;
  options.rate_per_second = static_cast<double>(config.limits.rate_limit_requests_per_second);
  options.rate_burst = static_cast<double>(config.limits.rate_limit_burst);
  options.access_log_json = config.log_format == "json";
  http::Server server(options, registry);
  Housekeeper housekeeper(config, **index, **store, registry, *pool);
  Metrics::Gauges gauges;
  gauges.fills_in_flight = [&registry] { return registry.fillsInFlight(); };
  gauges.connections = [&server] { return server.connections(); };
  gauges.disk_bytes_used = [&housekeeper] { return housekeeper.cachedBytes(); };
  gauges.disk_bytes_bound = config.max_cache_size;
  registry.metrics().setGauges(std::move(gauges));  // before the loops read them
  if (Status status = server.start(); !status) {
    spdlog::error("serve.listen addr={} error=\"{}\"", config.listen, status.message());
    return 1;
  }
  spdlog::info("serve.start listening addr={}:{} data_dir={} upstreams={} offline={}", listen->host,
               server.port(), config.data_dir.string(), config.upstreams.size(), config.offline);
  notifyServiceManager(kNotifyReady);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  housekeeper.tick(std::time(nullptr));

  while (true) {
    timespec timeout{kTickSeconds, 0};
    int sig = sigtimedwait(&signals, nullptr, &timeout);
    if (sig == SIGTERM || sig == SIGINT) {
      spdlog::info("serve.stop signal={}", sig == SIGTERM ? "TERM" : "INT");
      notifyServiceManager(kNotifyStopping);
      break;
    }
    if (sig == SIGHUP) {
      reload(reread, registry, server);
      continue;
    }
    housekeeper.tick(std::time(nullptr));
  }
  drain(server, registry, kDrainBound);
  server.stop();
  registry.shutdown();
  pool.reset();  // finishes what was queued: a committed push stays committed
  return 0;
}

}  // namespace regcache::proxy
