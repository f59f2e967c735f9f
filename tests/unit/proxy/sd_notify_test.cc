// sd_notify: the datagram systemd's Type=notify waits for.
#include "proxy/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <string>

using namespace regcache;
using namespace regcache::proxy;

namespace {

// A bound unix datagram socket standing in for systemd's notify socket, with $NOTIFY_SOCKET
// pointing at it for the test's lifetime. `abstract`: a name in the abstract namespace.
class FakeNotifySocket {
 public:
  explicit FakeNotifySocket(bool abstract) {
    std::random_device random;
    std::string unique = std::to_string(getpid()) + "-" + std::to_string(random());
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);

    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    socklen_t length;
    if (abstract) {
      name_ = "@regcache-notify-test-" + unique;
      std::memcpy(address.sun_path + 1, name_.data() + 1, name_.size() - 1);
      length = offsetof(sockaddr_un, sun_path) + name_.size();
    } else {
      dir_ = std::filesystem::temp_directory_path() / ("regcache-notify-" + unique);
      std::filesystem::create_directories(dir_);
      name_ = (dir_ / "notify.sock").string();
      REQUIRE(name_.size() < sizeof(address.sun_path));
      std::memcpy(address.sun_path, name_.c_str(), name_.size() + 1);
      length = sizeof(address);
    }
    REQUIRE(bind(fd_, reinterpret_cast<const sockaddr*>(&address), length) == 0);
    setenv("NOTIFY_SOCKET", name_.c_str(), 1);
  }

  ~FakeNotifySocket() {
    unsetenv("NOTIFY_SOCKET");
    close(fd_);
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // The next datagram, or nullopt when none is waiting (never blocks).
  std::optional<std::string> receive() {
    char buffer[256];
    ssize_t n = recv(fd_, buffer, sizeof(buffer), MSG_DONTWAIT);
    if (n < 0) return std::nullopt;
    return std::string(buffer, static_cast<size_t>(n));
  }

 private:
  int fd_ = -1;
  std::string name_;
  std::filesystem::path dir_;
};

}  // namespace

TEST_CASE("sdNotify: READY=1 arrives as one datagram on a path socket", "[proxy]") {
  FakeNotifySocket manager(false);

  REQUIRE(sdNotify(kNotifyReady).isOk());
  REQUIRE(manager.receive() == std::optional<std::string>("READY=1"));

  notifyServiceManager(kNotifyStopping);
  REQUIRE(manager.receive() == std::optional<std::string>("STOPPING=1"));
  REQUIRE_FALSE(manager.receive().has_value());
}

TEST_CASE("sdNotify: a name starting with '@' is in the abstract namespace", "[proxy]") {
  FakeNotifySocket manager(true);

  REQUIRE(sdNotify(kNotifyReloading).isOk());
  REQUIRE(manager.receive() == std::optional<std::string>("RELOADING=1"));
}

TEST_CASE("sdNotify: without NOTIFY_SOCKET it does nothing and succeeds", "[proxy]") {
  unsetenv("NOTIFY_SOCKET");
  REQUIRE(sdNotify(kNotifyReady).isOk());
}

TEST_CASE("sdNotify: a socket nobody listens on is an error naming it", "[proxy]") {
  auto missing = std::filesystem::temp_directory_path() / "regcache-notify-nobody.sock";
  std::filesystem::remove(missing);
  setenv("NOTIFY_SOCKET", missing.c_str(), 1);

  Status status = sdNotify(kNotifyReady);
  unsetenv("NOTIFY_SOCKET");
  REQUIRE(status.code() == Code::kIo);
  REQUIRE(status.message().find(missing.string()) != std::string::npos);
}
