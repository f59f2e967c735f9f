// Option parsing shared by the subcommands.
#include "proxy/commands.h"

#include <cstdio>

namespace regcache::proxy {

bool parseCommonOptions(const std::vector<std::string>& args, CommonOptions& common,
                        std::vector<std::string>& rest) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    std::string* target = nullptr;
    if (arg == "-c" || arg == "--config") {
      target = &common.config_file;
    } else if (arg == "--data-dir") {
      target = &common.data_dir;
    } else if (arg == "--log-level") {
      target = &common.log_level;
    }
    if (target == nullptr) {
      rest.push_back(arg);
      continue;
    }
    if (i + 1 >= args.size()) {
      std::fprintf(stderr, "regcache: %s needs a value\n", arg.c_str());
      return false;
    }
    *target = args[++i];
  }
  return true;
}

std::optional<Config> loadCommandConfig(const CommonOptions& common) {
  Config config = defaultConfig();
  if (!common.config_file.empty()) {
    auto loaded = loadConfig(common.config_file);
    if (!loaded) {
      std::fprintf(stderr, "regcache: %s\n", loaded.status().message().c_str());
      return std::nullopt;
    }
    config = std::move(*loaded);
  }
  if (!common.data_dir.empty()) config.data_dir = common.data_dir;
  if (!common.log_level.empty()) config.log_level = common.log_level;
  return config;
}

}  // namespace regcache::proxy
