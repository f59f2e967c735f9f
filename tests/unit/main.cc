// Catch2's main for the unit tests.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <csignal>

int main(int argc, char* argv[]) {
  // As regcache's own main does: a write to a socket its peer has closed must fail with EPIPE,
  // not kill the process. A test client that hangs up on the server (TLS tests do, after the
  // handshake) would otherwise end the whole run.
  std::signal(SIGPIPE, SIG_IGN);
  return Catch::Session().run(argc, argv);
}
