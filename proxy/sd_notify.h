// Tells the service manager (systemd, Type=notify) about the service's state, without
// libsystemd: one datagram to the socket named by $NOTIFY_SOCKET.
#pragma once

#include <string_view>

#include "cache/status.h"

namespace regcache::proxy {

// Sends `state` (newline-separated assignments such as "READY=1" or "STOPPING=1") to the unix
// datagram socket named by $NOTIFY_SOCKET. A name starting with '@' is in the abstract
// namespace. Without $NOTIFY_SOCKET (not started by systemd, or Type is not notify) it does
// nothing and returns ok. Errors are kIo with the socket name and errno text; callers log and
// carry on, since a missing notification is the manager's concern, not a reason to stop serving.
// Safe to call from any thread; it blocks only for one sendto() on a local socket.
Status sdNotify(std::string_view state);

// sdNotify() for the serve loop: a failure is logged as a warning (`serve.notify`) and ignored.
void notifyServiceManager(std::string_view state);

// The state strings the serve command sends.
inline constexpr std::string_view kNotifyReady = "READY=1";
inline constexpr std::string_view kNotifyStopping = "STOPPING=1";
inline constexpr std::string_view kNotifyReloading = "RELOADING=1";

}  // namespace regcache::proxy
