// Status and Result<T>: the error values every fallible call in regcache returns.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace regcache {

// What went wrong, in the registry's terms. The proxy maps each code to an OCI error code and
// HTTP status in one place (proxy/errors.cc).
enum class Code {
  kOk = 0,
  kNotFound,         // the thing asked for does not exist
  kInvalidArgument,  // the caller's input is malformed
  kAlreadyExists,
  kConflict,  // state does not allow it now (upload offset mismatch, busy upload)
  kTooLarge,
  kUnavailable,  // upstream or resource temporarily unavailable
  kIo,           // disk or system call failure: a real server fault
  kCorrupt,      // stored data failed verification
  kInternal,
};

// A small value: a code and a message. Cheap to move; ok() is the common case.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }
  bool isOk() const { return code_ == Code::kOk; }
  explicit operator bool() const { return isOk(); }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status notFound(std::string m) { return Status(Code::kNotFound, std::move(m)); }
inline Status invalidArgument(std::string m) {
  return Status(Code::kInvalidArgument, std::move(m));
}
inline Status ioError(std::string m) { return Status(Code::kIo, std::move(m)); }
inline Status conflict(std::string m) { return Status(Code::kConflict, std::move(m)); }
inline Status corrupt(std::string m) { return Status(Code::kCorrupt, std::move(m)); }

// Either a value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: must not be ok

  bool isOk() const { return v_.index() == 0; }
  explicit operator bool() const { return isOk(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  Status status() const { return isOk() ? Status() : std::get<1>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace regcache
