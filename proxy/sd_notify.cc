// sd_notify(3)'s protocol, by hand: a datagram of "KEY=VALUE" lines to $NOTIFY_SOCKET.
#include "proxy/sd_notify.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

namespace regcache::proxy {

namespace {

// Owns a socket descriptor for the length of one notification.
class SocketFd {
 public:
  explicit SocketFd(int fd) : fd_(fd) {}
  ~SocketFd() {
    if (fd_ >= 0) close(fd_);
  }
  SocketFd(const SocketFd&) = delete;
  SocketFd& operator=(const SocketFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Status notifyError(std::string_view what, std::string_view socket_name) {
  return ioError(std::string(what) + " " + std::string(socket_name) + ": " + std::strerror(errno));
}

}  // namespace

Status sdNotify(std::string_view state) {
  const char* env = std::getenv("NOTIFY_SOCKET");
  if (env == nullptr || env[0] == '\0') return Status::ok();
  std::string_view name = env;

  // The path must fit sun_path; an abstract name ('@' -> NUL) has no terminating NUL.
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (name[0] != '/' && name[0] != '@') {
    return ioError("NOTIFY_SOCKET is neither a path nor an abstract name: " + std::string(name));
  }
  if (name.size() >= sizeof(address.sun_path)) {
    return ioError("NOTIFY_SOCKET is too long: " + std::string(name));
  }
  std::memcpy(address.sun_path, name.data(), name.size());
  socklen_t length = offsetof(sockaddr_un, sun_path) + name.size();
  if (name[0] == '@') {
    address.sun_path[0] = '\0';
  } else {
    length += 1;  // the path's NUL
  }

  SocketFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return notifyError("socket for", name);
  ssize_t sent;
  do {
    sent = sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL,
                  reinterpret_cast<const sockaddr*>(&address), length);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) return notifyError("sendto", name);
  return Status::ok();
}

void notifyServiceManager(std::string_view state) {
  if (Status status = sdNotify(state); !status) {
    spdlog::warn("serve.notify state={} error=\"{}\"", state, status.message());
  }
}

}  // namespace regcache::proxy
