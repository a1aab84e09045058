// Expected failures cross module lines as values: Status, or Result<T> = a T or a Status.
// Programmer errors are assertions, not Status values.
#pragma once

#include <string>
#include <utility>
#include <variant>

#include "citycard/protocol/check.h"

namespace citycard {

enum class Errc {
  kOk = 0,
  kInvalidArgument,   // the caller passed something out of range
  kMalformed,         // bytes that do not parse (APDU, frame, record)
  kTooLarge,          // over a declared limit
  kNotFound,          // unknown card, terminal, order...
  kBadMac,            // MAC1/MAC2/TAC/batch signature does not verify
  kDuplicate,         // already seen (a replay); usually harmless
  kInsufficientFunds,
  kRejected,          // refused by a rule (blacklist, expiry, state)
  kTorn,              // the card link was cut mid-transaction
  kTimeout,
  kUnavailable,       // peer not reachable / busy
  kIo,                // storage failure
  kInternal,
  kPermissionDenied,  // the user's role or merchant does not allow the operation
  kConflict,          // an id reused with other parameters (an order id, a rule)
};

const char* errc_name(Errc c);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Errc code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return {}; }

  bool is_ok() const { return code_ == Errc::kOk; }
  explicit operator bool() const { return is_ok(); }
  Errc code() const { return code_; }
  const std::string& message() const { return message_; }
  // "bad_mac: TAC of card 0102... counter 7 does not verify"
  std::string to_string() const;

 private:
  Errc code_ = Errc::kOk;
  std::string message_;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    CITYCARD_CHECK(!std::get<Status>(v_).is_ok(), "a Result error must not be ok");
  }
  Result(Errc code, std::string message) : v_(Status(code, std::move(message))) {}

  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }
  T& value() & {
    CITYCARD_CHECK(is_ok(), "value() of a Result that holds an error");
    return std::get<T>(v_);
  }
  const T& value() const& {
    CITYCARD_CHECK(is_ok(), "value() of a Result that holds an error");
    return std::get<T>(v_);
  }
  T&& value() && {
    CITYCARD_CHECK(is_ok(), "value() of a Result that holds an error");
    return std::get<T>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  Status status() const { return is_ok() ? Status::ok() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace citycard
