// The regcache command line: a table of subcommands (each in proxy/cmd_<name>.cc).
#include <curl/curl.h>
#include <event2/event.h>
#include <lmdb.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <simdjson.h>
#include <spdlog/version.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/commands.h"

namespace {

// simdjson's version macro is a bare pp-number (3.0.1): make it a string.
#define REGCACHE_STRINGIFY_(x) #x
#define REGCACHE_STRINGIFY(x) REGCACHE_STRINGIFY_(x)

int versionCommand(const std::vector<std::string>&) {
  std::printf("regcache %s\n", REGCACHE_VERSION);
  std::printf("  libevent %s\n  %s\n  %s\n  %s\n  simdjson %s\n  spdlog %d.%d.%d\n",
              event_get_version(), curl_version(), OpenSSL_version(OPENSSL_VERSION),
              mdb_version(nullptr, nullptr, nullptr), REGCACHE_STRINGIFY(SIMDJSON_VERSION),
              SPDLOG_VER_MAJOR, SPDLOG_VER_MINOR, SPDLOG_VER_PATCH);
  return 0;
}

struct Command {
  const char* name;
  int (*run)(const std::vector<std::string>&);
  const char* usage;
};

const Command kCommands[] = {
    {"serve", regcache::proxy::serveCommand,
     "serve [-c FILE] [--listen ADDR] [--data-dir DIR] [--offline]\n"
     "                  run the registry mirror (embedded defaults without -c)"},
    {"gc", regcache::proxy::gcCommand,
     "gc [-c FILE] [--data-dir DIR] [--dry-run] [--grace DUR]\n"
     "                  remove blobs, temp and upload files nothing needs (server may run)"},
    {"fsck", regcache::proxy::fsckCommand,
     "fsck [-c FILE] [--data-dir DIR] [--repair] [--grace DUR]\n"
     "                  re-hash every blob, check the index against the disk; exit 1 on problems"},
    {"du", regcache::proxy::duCommand,
     "du [-c FILE] [--data-dir DIR] [--json] [--server URL]\n"
     "                  bytes per upstream and repository, cached vs pushed, hit ratio"},
    {"warm", regcache::proxy::warmCommand,
     "warm [-c FILE] [--data-dir DIR] [--platform os/arch[/variant]] [-f FILE] REF...\n"
     "                  pull images into the cache through the serve path (server may run)"},
    {"export", regcache::proxy::exportCommand,
     "export -o FILE [-c FILE] [--data-dir DIR] (REF... | --all | --since DUR)\n"
     "                  write cached images as an OCI image layout tar (server may run)"},
    {"import", regcache::proxy::importCommand,
     "import [-c FILE] [--data-dir DIR] FILE\n"
     "                  verify and load an OCI image layout tar (server may run)"},
    {"version", versionCommand, "version         print the version and the library versions"},
};

void printUsage(FILE* out) {
  std::fputs("usage: regcache <command> [options]\n\ncommands:\n", out);
  for (const auto& command : kCommands) std::fprintf(out, "  %s\n", command.usage);
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

  // glibc raises its mmap and trim thresholds to the largest block freed so far (libcurl's
  // 1 MiB receive buffer of a blob transfer, say), after which big blocks come from the
  // per-thread arenas and, once freed, stay there: an idle server kept ~5 MiB it no longer
  // used. Fixed thresholds send blocks over 128 KiB back to the system when freed.
  constexpr int kMallocReturnAbove = 128 * 1024;
  mallopt(M_MMAP_THRESHOLD, kMallocReturnAbove);
  mallopt(M_TRIM_THRESHOLD, kMallocReturnAbove);

  if (argc < 2) {
    std::fputs("regcache: no command given\n\n", stderr);
    printUsage(stderr);
    return regcache::proxy::kExitUsage;
  }
  std::string_view name = argv[1];
  if (name == "help" || name == "--help" || name == "-h") {
    printUsage(stdout);
    return 0;
  }
  if (name == "--version") name = "version";
  std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& command : kCommands) {
    if (name == command.name) return command.run(args);
  }
  std::fprintf(stderr, "regcache: unknown command: %s\n\n", argv[1]);
  printUsage(stderr);
  return regcache::proxy::kExitUsage;
}
