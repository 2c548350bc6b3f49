// Status and Result<T>: the error model of the data plane (no exceptions there).
// Plain value types; any thread.
#pragma once

#include <string>
#include <utility>
#include <variant>

#include "base/check.h"

namespace sluice {

// An error carries the errno it came from (0 when it is not a system error) and a message
// that reads well in a log line.
class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status ok() { return {}; }
  static Status error(std::string message, int sys_errno = 0) {
    Status s;
    s.failed_ = true;
    s.errno_ = sys_errno;
    s.message_ = std::move(message);
    return s;
  }
  // An error from a failed system call: "what: strerror(errno)".
  static Status from_errno(const std::string& what, int sys_errno);

  bool is_ok() const { return !failed_; }
  explicit operator bool() const { return !failed_; }
  int sys_errno() const { return errno_; }
  const std::string& message() const { return message_; }

 private:
  bool failed_ = false;
  int errno_ = 0;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status error) : v_(std::move(error)) { SLUICE_CHECK(!std::get<Status>(v_).is_ok()); }

  bool is_ok() const { return v_.index() == 0; }
  explicit operator bool() const { return is_ok(); }
  T& value() & {
    SLUICE_CHECK(is_ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    SLUICE_CHECK(is_ok());
    return std::get<0>(std::move(v_));
  }
  const T& value() const& {
    SLUICE_CHECK(is_ok());
    return std::get<0>(v_);
  }
  const Status& status() const {
    SLUICE_CHECK(!is_ok());
    return std::get<1>(v_);
  }
  T* operator->() { return &value(); }
  T& operator*() { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace sluice
