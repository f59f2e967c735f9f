// The regcache subcommands. Each lives in its own proxy/cmd_<name>.cc and is listed in
// main.cc's table; they share the option parsing below.
#pragma once

#include <string>
#include <vector>

#include "proxy/config.h"

namespace regcache::proxy {

// Exit codes: 0 done, 1 the command failed (says why on stderr), 2 bad usage or config.
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

// Options every command that works on a data directory takes.
struct CommonOptions {
  std::string config_file;  // -c / --config
  std::string data_dir;     // --data-dir (overrides the config's)
  std::string log_level;    // --log-level
};

// Splits `args` (the words after the command name) into the common options and the rest, in
// order. Returns false and prints to stderr on a common option missing its value.
bool parseCommonOptions(const std::vector<std::string>& args, CommonOptions& common,
                        std::vector<std::string>& rest);

// The configuration a command runs with: the embedded defaults, or the -c file, with the
// command-line overrides applied. On error prints the reason and returns nullopt (exit 2).
std::optional<Config> loadCommandConfig(const CommonOptions& common);

// The commands. `args` are the words after the command name.
int serveCommand(const std::vector<std::string>& args);
int gcCommand(const std::vector<std::string>& args);      // cmd_gc.cc
int fsckCommand(const std::vector<std::string>& args);    // cmd_fsck.cc
int duCommand(const std::vector<std::string>& args);      // cmd_du.cc
int warmCommand(const std::vector<std::string>& args);    // cmd_warm.cc
int exportCommand(const std::vector<std::string>& args);  // cmd_export.cc
int importCommand(const std::vector<std::string>& args);  // cmd_import.cc

}  // namespace regcache::proxy
