// `regcache gc [-c FILE] [--data-dir DIR] [--dry-run] [--grace DURATION]`: removes blobs,
// temp files and upload files that nothing needs, offline or beside a running server.
#include <cstdio>
#include <ctime>

#include "cache/gc.h"
#include "proxy/commands.h"
#include "proxy/store_commands.h"

namespace regcache::proxy {

namespace {

struct GcArgs {
  cache::GcOptions options;
};

bool parseGcArgs(const std::vector<std::string>& rest, GcArgs& args) {
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == "--dry-run") {
      args.options.dry_run = true;
    } else if (rest[i] == "--grace") {
      if (!parseGraceOption(rest, i, args.options.grace_seconds)) return false;
    } else {
      std::fprintf(stderr, "regcache: unknown option for gc: %s\n", rest[i].c_str());
      return false;
    }
  }
  return true;
}

void printReport(const cache::GcReport& report, bool dry_run) {
  const char* verb = dry_run ? "would remove" : "removed";
  for (const cache::GcItem& item : report.items) {
    std::printf("%s %.*s %s bytes=%llu\n", verb, static_cast<int>(gcKindName(item.kind).size()),
                gcKindName(item.kind).data(), item.name.c_str(),
                static_cast<unsigned long long>(item.bytes));
  }
  std::printf("gc: %s%s %zu blobs and %zu other files, %s %llu bytes (%s)\n",
              dry_run ? "dry run: " : "", verb, report.blobs, report.files,
              dry_run ? "would free" : "freed", static_cast<unsigned long long>(report.bytes),
              humanBytes(report.bytes).c_str());
  if (report.kept > 0) {
    std::printf("gc: kept %zu that a concurrent push or link needed again\n", report.kept);
  }
}

}  // namespace

int gcCommand(const std::vector<std::string>& argv) {
  CommonOptions common;
  std::vector<std::string> rest;
  GcArgs args;
  if (!parseCommonOptions(argv, common, rest) || !parseGcArgs(rest, args)) return kExitUsage;
  auto config = loadCommandConfig(common);
  if (!config) return kExitUsage;
  auto opened = openStoreForCommand(config->data_dir);
  if (!opened) return kExitFailed;

  args.options.now = static_cast<int64_t>(std::time(nullptr));
  auto report =
      cache::collectGarbage(*opened->index, *opened->store, manifestBlobDigests, args.options);
  if (!report) {
    std::fprintf(stderr, "regcache: gc: %s\n", report.status().message().c_str());
    return kExitFailed;
  }
  printReport(*report, args.options.dry_run);
  return 0;
}

}  // namespace regcache::proxy
