// The regcache command line: serve and version (more commands as they land).
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include <curl/curl.h>
#include <event2/event.h>
#include <lmdb.h>
#include <openssl/crypto.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>
#include <spdlog/version.h>

#include "proxy/config.h"
#include "proxy/serve.h"

namespace {

constexpr int kUsageError = 2;

// simdjson's version macro is a bare pp-number (3.0.1): make it a string.
#define REGCACHE_STRINGIFY_(x) #x
#define REGCACHE_STRINGIFY(x) REGCACHE_STRINGIFY_(x)

constexpr const char* kUsage =
    "usage: regcache <command> [options]\n"
    "\n"
    "commands:\n"
    "  serve [-c FILE] [--listen ADDR] [--data-dir DIR] [--offline]\n"
    "                  run the registry mirror (embedded defaults without -c)\n"
    "  version         print the version and the library versions\n";

int version() {
  std::printf("regcache %s\n", REGCACHE_VERSION);
  std::printf("  libevent %s\n  %s\n  %s\n  %s\n  simdjson %s\n  spdlog %d.%d.%d\n",
              event_get_version(), curl_version(), OpenSSL_version(OPENSSL_VERSION),
              mdb_version(nullptr, nullptr, nullptr), REGCACHE_STRINGIFY(SIMDJSON_VERSION), SPDLOG_VER_MAJOR,
              SPDLOG_VER_MINOR, SPDLOG_VER_PATCH);
  return 0;
}

int usageError(const std::string& message) {
  std::fprintf(stderr, "regcache: %s\n\n%s", message.c_str(), kUsage);
  return kUsageError;
}

int serveCommand(int argc, char** argv) {
  using regcache::proxy::Config;
  std::string config_file;
  std::string listen;
  std::string data_dir;
  bool offline = false;
  for (int i = 2; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
    bool ok = true;
    if (arg == "-c" || arg == "--config") {
      ok = value(config_file);
    } else if (arg == "--listen") {
      ok = value(listen);
    } else if (arg == "--data-dir") {
      ok = value(data_dir);
    } else if (arg == "--offline") {
      offline = true;
    } else {
      return usageError("unknown option for serve: " + std::string(arg));
    }
    if (!ok) return usageError(std::string(arg) + " needs a value");
  }

  Config config = regcache::proxy::defaultConfig();
  if (!config_file.empty()) {
    auto loaded = regcache::proxy::loadConfig(config_file);
    if (!loaded) {
      std::fprintf(stderr, "regcache: %s\n", loaded.status().message().c_str());
      return kUsageError;
    }
    config = std::move(*loaded);
  }
  if (!listen.empty()) {
    if (!regcache::proxy::parseListen(listen)) return usageError("bad --listen: " + listen);
    config.listen = listen;
  }
  if (!data_dir.empty()) config.data_dir = data_dir;
  if (offline) config.offline = true;

  regcache::proxy::setUpLogging(config.log_level);
  return regcache::proxy::serve(config);
}

}  // namespace

int main(int argc, char** argv) {
  // Signals are taken synchronously by serve(); block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (argc < 2) return usageError("no command given");
  std::string_view command = argv[1];
  if (command == "serve") return serveCommand(argc, argv);
  if (command == "version" || command == "--version") return version();
  if (command == "help" || command == "--help" || command == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  return usageError("unknown command: " + std::string(command));
}
