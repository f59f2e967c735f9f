// `regcache fsck [-c FILE] [--data-dir DIR] [--repair] [--grace DURATION]`: re-hashes every
// blob and checks the index against the disk, one line per problem. Exit 0 when clean, 1 when
// problems were found (with --repair: 1 only when some could not be repaired).
#include <cstdio>
#include <ctime>

#include "cache/fsck.h"
#include "proxy/commands.h"
#include "proxy/store_commands.h"

namespace regcache::proxy {

namespace {

bool parseFsckArgs(const std::vector<std::string>& rest, cache::FsckOptions& options) {
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == "--repair") {
      options.repair = true;
    } else if (rest[i] == "--grace") {
      if (!parseGraceOption(rest, i, options.grace_seconds)) return false;
    } else {
      std::fprintf(stderr, "regcache: unknown option for fsck: %s\n", rest[i].c_str());
      return false;
    }
  }
  return true;
}

// Problems go to stdout, one per line, so a script can read them; repairs follow each.
void printReport(const cache::FsckReport& report, bool repair) {
  for (const cache::FsckProblem& problem : report.problems) {
    std::printf("%s\n", describe(problem).c_str());
    if (repair) {
      std::printf("  repaired: %s\n", problem.repair.empty()
                                          ? "nothing (changed meanwhile or not repairable)"
                                          : problem.repair.c_str());
    }
  }
  std::printf("fsck: %zu blobs (%s) checked, %zu problems", report.blobs_checked,
              humanBytes(report.bytes_checked).c_str(), report.problems.size());
  if (repair) std::printf(", %zu repaired", report.repaired);
  std::printf("\n");
}

}  // namespace

int fsckCommand(const std::vector<std::string>& argv) {
  CommonOptions common;
  std::vector<std::string> rest;
  cache::FsckOptions options;
  if (!parseCommonOptions(argv, common, rest) || !parseFsckArgs(rest, options)) {
    return kExitUsage;
  }
  auto config = loadCommandConfig(common);
  if (!config) return kExitUsage;
  auto opened = openStoreForCommand(config->data_dir);
  if (!opened) return kExitFailed;

  options.now = static_cast<int64_t>(std::time(nullptr));
  auto report = cache::checkStore(*opened->index, *opened->store, options);
  if (!report) {
    std::fprintf(stderr, "regcache: fsck: %s\n", report.status().message().c_str());
    return kExitFailed;
  }
  printReport(*report, options.repair);
  bool clean =
      options.repair ? report->repaired == report->problems.size() : report->problems.empty();
  return clean ? 0 : kExitFailed;
}

}  // namespace regcache::proxy
