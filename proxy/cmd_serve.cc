// `regcache serve [-c FILE] [--listen ADDR] [--data-dir DIR] [--offline]`.
#include <cstdio>

#include "proxy/commands.h"
#include "proxy/serve.h"

namespace regcache::proxy {

int serveCommand(const std::vector<std::string>& args) {
  CommonOptions common;
  std::vector<std::string> rest;
  if (!parseCommonOptions(args, common, rest)) return kExitUsage;

  std::string listen;
  bool offline = false;
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == "--listen" && i + 1 < rest.size()) {
      listen = rest[++i];
    } else if (rest[i] == "--offline") {
      offline = true;
    } else {
      std::fprintf(stderr, "regcache: unknown option for serve: %s\n", rest[i].c_str());
      return kExitUsage;
    }
  }

  auto config = loadCommandConfig(common);
  if (!config) return kExitUsage;
  if (!listen.empty()) {
    if (!parseListen(listen)) {
      std::fprintf(stderr, "regcache: bad --listen: %s\n", listen.c_str());
      return kExitUsage;
    }
    config->listen = listen;
  }
  if (offline) config->offline = true;

  setUpLogging(config->log_level, config->log_format);
  auto reread = [common, listen, offline]() -> Result<Config> {
    Config fresh = defaultConfig();
    if (!common.config_file.empty()) {
      auto loaded = loadConfig(common.config_file);
      if (!loaded) return loaded.status();
      fresh = std::move(*loaded);
    }
    if (!common.data_dir.empty()) fresh.data_dir = common.data_dir;
    if (!common.log_level.empty()) fresh.log_level = common.log_level;
    if (!listen.empty()) fresh.listen = listen;
    if (offline) fresh.offline = true;
    return fresh;
  };
  return serve(*config, reread);
}

}  // namespace regcache::proxy
