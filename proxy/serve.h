// `regcache serve`: opens the store, starts the server and runs until SIGTERM or SIGINT.
#pragma once

#include <functional>

#include "proxy/config.h"

namespace regcache::proxy {

// Runs the service with `config` on the calling thread. Returns the process exit code: 0 after
// a clean stop, 1 when the store cannot be opened or the address cannot be bound.
// Call with SIGTERM, SIGINT and SIGHUP blocked in every thread (main() does this first).
// `reread` reads the config again for SIGHUP (the same file and command-line overrides).
int serve(const Config& config, std::function<Result<Config>()> reread);

// Sets up the loggers: the default one (events) and "access" (one line per request), both to
// stderr, at `level`. `format` "json" writes every line as one JSON object: the access lines
// are made whole by the server (ServerOptions::access_log_json), event lines get "time",
// "level" and "msg".
void setUpLogging(const std::string& level, const std::string& format = "text");

}  // namespace regcache::proxy
