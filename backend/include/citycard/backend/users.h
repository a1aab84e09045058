// Users, roles and the audit log (用户管理, 角色管理, 操作用户LOG).
//
// Roles: admin (everything), finance (cards at the desk, counter recharge, quotas, settlement,
// reversals, reconciliation), merchant owner and merchant operator (their own merchant only:
// owners manage their operators, see their statements and reports; operators recharge within
// the quota and redeem points). A Session is what login() returns; every operation that needs
// a role takes one and calls require() or require_merchant(), which re-read the user from the
// store: a Session struct edited to claim another role or merchant, or a deactivated user, is
// refused with Errc::kPermissionDenied and a message that names the user, the operation and
// the role it needs.
//
// Audit: audited() runs an operation inside a transaction and writes one audit row (who, role,
// merchant, what, target, when, result): in the same transaction when it succeeds, so the row
// and the change commit together; after the rollback when it fails, so refusals are kept too.
// Terminals' wire operations (loads) are audited under the actor "terminal:<id>". Swipes are
// not audited one by one: the swipes table is their record.
//
// Passwords: SHA-256 over a fixed label, the user name and the password. Good enough for a
// simulator's bench; a production system would use a slow, salted KDF.
//
// Threads: one caller at a time (the Backend's).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "citycard/backend/calendar.h"
#include "citycard/backend/store.h"
#include "citycard/protocol/status.h"

namespace citycard::backend {

enum class Role : std::uint8_t {
  kAdmin = 1,
  kFinance = 2,
  kMerchantOwner = 3,
  kMerchantOperator = 4,
};
const char* role_name(Role r);

struct Session {
  std::string user;
  Role role = Role::kMerchantOperator;
  std::string merchant_id;  // the merchant role users belong to; empty for staff
};

struct NewUser {
  std::string username;  // 1..32 of [a-z0-9._-]
  std::string password;  // 8..128 bytes
  Role role = Role::kMerchantOperator;
  std::string merchant_id;  // required for merchant roles, empty otherwise
};

struct UserRecord {
  std::string username;
  Role role = Role::kMerchantOperator;
  std::string merchant_id;
  bool active = true;
  bool operator==(const UserRecord&) const = default;
};

struct AuditEntry {
  std::int64_t id = 0;
  std::int64_t at_us = 0;
  std::string actor;
  std::string role;
  std::string merchant_id;
  std::string action;
  std::string target;
  bool ok = false;
  std::string result;  // "ok" or "<errc>: <message>"
};

struct AuditFilter {
  std::string actor;        // empty: any
  std::string action;       // empty: any
  std::string merchant_id;  // empty: any (merchant users always see only their own)
  std::size_t limit = 100;  // newest first; at most UsersOptions::audit_page_max
};

struct UsersOptions {
  std::size_t audit_page_max = 1'000;
  std::size_t max_users = 10'000;
};

inline Status status_of(const Status& s) {
  return s;
}
template <class T>
Status status_of(const Result<T>& r) {
  return r.status();
}

class Users {
 public:
  Users(Store& store, const Calendar& calendar, UsersOptions options = {})
      : store_(store), calendar_(calendar), options_(options) {}

  // The first admin of a new database; kRejected once any user exists.
  Status bootstrap_admin(const std::string& username, const std::string& password);
  // kPermissionDenied for an unknown user, a wrong password or a deactivated user (one
  // message for all three, so that names cannot be probed). Audited.
  Result<Session> login(const std::string& username, const std::string& password);
  // Admins create anyone; merchant owners create operators of their own merchant. Audited.
  Status create_user(const Session& by, const NewUser& user);
  Status set_active(const Session& by, const std::string& username, bool active);
  Status change_password(const Session& by, const std::string& old_password,
                         const std::string& new_password);
  Result<UserRecord> user(const std::string& username) const;

  // kPermissionDenied unless the session is a live user whose stored role is one of `roles`.
  Status require(const Session& s, std::initializer_list<Role> roles, std::string_view what) const;
  // As require(); merchant roles must also belong to `merchant_id` (admin and finance reach
  // every merchant).
  Status require_merchant(const Session& s, std::string_view merchant_id,
                          std::initializer_list<Role> roles, std::string_view what) const;

  // Runs `body` (returning Status or Result<T>) in a transaction and audits it; see above.
  template <class F>
  auto audited(const Session& s, std::string_view action, const std::string& target, F&& body)
      -> decltype(body());
  // The same for actors that are not users (terminals, the bank, the scheduler).
  template <class F>
  auto audited_as(std::string_view actor, std::string_view action, const std::string& target,
                  F&& body) -> decltype(body());

  Status record(std::string_view actor, std::string_view role, std::string_view merchant_id,
                std::string_view action, const std::string& target, const Status& result);
  // Admin and finance see everything; merchant roles see their own merchant's entries.
  Result<std::vector<AuditEntry>> audit_log(const Session& by, const AuditFilter& filter) const;
  Result<std::int64_t> audit_count() const;

 private:
  template <class F>
  auto run_audited(std::string_view actor, std::string_view role, std::string_view merchant,
                   std::string_view action, const std::string& target, F&& body)
      -> decltype(body());

  Store& store_;
  const Calendar& calendar_;
  UsersOptions options_;
};

template <class F>
auto Users::run_audited(std::string_view actor, std::string_view role, std::string_view merchant,
                        std::string_view action, const std::string& target, F&& body)
    -> decltype(body()) {
  using R = decltype(body());
  auto txn = store_.begin();
  if (!txn.is_ok()) return R(txn.status());
  R r = body();
  const Status st = status_of(r);
  if (st.is_ok()) {
    if (Status a = record(actor, role, merchant, action, target, st); !a.is_ok()) return R(a);
    if (Status c = txn->commit(); !c.is_ok()) return R(c);
    return r;
  }
  txn->rollback();
  // A failure to write the refusal's row must not hide the refusal itself.
  (void)record(actor, role, merchant, action, target, st);
  return r;
}

template <class F>
auto Users::audited(const Session& s, std::string_view action, const std::string& target, F&& body)
    -> decltype(body()) {
  return run_audited(s.user, role_name(s.role), s.merchant_id, action, target,
                     std::forward<F>(body));
}

template <class F>
auto Users::audited_as(std::string_view actor, std::string_view action, const std::string& target,
                       F&& body) -> decltype(body()) {
  return run_audited(actor, "system", "", action, target, std::forward<F>(body));
}

}  // namespace citycard::backend
