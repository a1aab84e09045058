#include "citycard/backend/users.h"

#include <openssl/evp.h>

#include <algorithm>

namespace citycard::backend {
namespace {

constexpr std::size_t kUsernameMax = 32;
constexpr std::size_t kPasswordMin = 8;
constexpr std::size_t kPasswordMax = 128;
constexpr std::size_t kAuditTextMax = 256;  // target and result are clipped, never refused

Bytes password_hash(const std::string& username, const std::string& password) {
  std::string input = "citycard user password|" + username + "|" + password;
  Bytes out(EVP_MAX_MD_SIZE);
  unsigned int n = 0;
  if (EVP_Digest(input.data(), input.size(), out.data(), &n, EVP_sha256(), nullptr) != 1) {
    __builtin_trap();  // SHA-256 of a short string cannot fail
  }
  out.resize(n);
  return out;
}

Status check_username(const std::string& u) {
  if (u.empty() || u.size() > kUsernameMax) {
    return Status(Errc::kInvalidArgument,
                  "user name must be 1.." + std::to_string(kUsernameMax) + " characters");
  }
  for (char c : u) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return Status(Errc::kInvalidArgument, "user name may hold only a-z 0-9 . _ -");
  }
  return Status::ok();
}

Status check_password(const std::string& p) {
  if (p.size() < kPasswordMin || p.size() > kPasswordMax) {
    return Status(Errc::kInvalidArgument, "password must be " + std::to_string(kPasswordMin) +
                                              ".." + std::to_string(kPasswordMax) + " bytes");
  }
  return Status::ok();
}

bool merchant_role(Role r) {
  return r == Role::kMerchantOwner || r == Role::kMerchantOperator;
}

std::string clip(std::string s) {
  if (s.size() > kAuditTextMax) s.resize(kAuditTextMax);
  return s;
}

std::string roles_text(std::initializer_list<Role> roles) {
  std::string out;
  for (Role r : roles) {
    if (!out.empty()) out += " or ";
    out += role_name(r);
  }
  return out;
}

}  // namespace

const char* role_name(Role r) {
  switch (r) {
    case Role::kAdmin:
      return "admin";
    case Role::kFinance:
      return "finance";
    case Role::kMerchantOwner:
      return "merchant_owner";
    case Role::kMerchantOperator:
      return "merchant_operator";
  }
  return "unknown";
}

Result<UserRecord> Users::user(const std::string& username) const {
  auto q =
      store_.query("SELECT username, role, merchant_id, active FROM users WHERE username = ?1");
  q.bind(1, username);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return Status(Errc::kNotFound, "no user " + username);
  UserRecord u;
  u.username = q.column_text(0);
  u.role = static_cast<Role>(q.column_int64(1));
  u.merchant_id = q.column_text(2);
  u.active = q.column_int64(3) != 0;
  return u;
}

Status Users::bootstrap_admin(const std::string& username, const std::string& password) {
  if (Status s = check_username(username); !s.is_ok()) return s;
  if (Status s = check_password(password); !s.is_ok()) return s;
  return audited_as("bootstrap", "bootstrap_admin", username, [&]() -> Status {
    auto q = store_.query("SELECT count(*) FROM users");
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (q.column_int64(0) > 0) {
      return Status(Errc::kRejected, "users exist already; an admin creates the next one");
    }
    return store_
        .query(
            "INSERT INTO users(username, role, merchant_id, password_hash, active, created_by, "
            "created_at_us) VALUES (?1, ?2, '', ?3, 1, 'bootstrap', ?4)")
        .bind(1, username)
        .bind(2, static_cast<std::int64_t>(Role::kAdmin))
        .bind_blob(3, password_hash(username, password))
        .bind(4, calendar_.now_us())
        .run();
  });
}

Result<Session> Users::login(const std::string& username, const std::string& password) {
  return audited_as(username, "login", username, [&]() -> Result<Session> {
    const Status denied(Errc::kPermissionDenied,
                        "login refused: unknown user, wrong password "
                        "or deactivated user");
    auto q = store_.query(
        "SELECT role, merchant_id, password_hash, active FROM users WHERE username = ?1");
    q.bind(1, username);
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return denied;
    if (q.column_int64(3) == 0 || q.column_blob(2) != password_hash(username, password)) {
      return denied;
    }
    return Session{username, static_cast<Role>(q.column_int64(0)), q.column_text(1)};
  });
}

Status Users::require(const Session& s, std::initializer_list<Role> roles,
                      std::string_view what) const {
  auto u = user(s.user);
  if (!u.is_ok() && u.status().code() != Errc::kNotFound) return u.status();
  const std::string op(what);
  if (!u.is_ok() || !u->active) {
    return Status(Errc::kPermissionDenied, op + ": user " + s.user + " is unknown or deactivated");
  }
  if (u->role != s.role || u->merchant_id != s.merchant_id) {
    return Status(Errc::kPermissionDenied,
                  op + ": session of " + s.user + " does not match the user's stored role");
  }
  if (std::find(roles.begin(), roles.end(), u->role) == roles.end()) {
    return Status(Errc::kPermissionDenied, op + " needs role " + roles_text(roles) + "; " + s.user +
                                               " is " + role_name(u->role));
  }
  return Status::ok();
}

Status Users::require_merchant(const Session& s, std::string_view merchant_id,
                               std::initializer_list<Role> roles, std::string_view what) const {
  if (Status st = require(s, roles, what); !st.is_ok()) return st;
  if (merchant_role(s.role) && s.merchant_id != merchant_id) {
    return Status(Errc::kPermissionDenied, std::string(what) + ": " + s.user +
                                               " belongs to merchant " + s.merchant_id + ", not " +
                                               std::string(merchant_id));
  }
  return Status::ok();
}

Status Users::create_user(const Session& by, const NewUser& nu) {
  return audited(by, "create_user", nu.username, [&]() -> Status {
    if (Status s = require(by, {Role::kAdmin, Role::kMerchantOwner}, "create_user"); !s.is_ok()) {
      return s;
    }
    if (by.role == Role::kMerchantOwner &&
        (nu.role != Role::kMerchantOperator || nu.merchant_id != by.merchant_id)) {
      return Status(Errc::kPermissionDenied,
                    "a merchant owner creates only operators of merchant " + by.merchant_id);
    }
    if (Status s = check_username(nu.username); !s.is_ok()) return s;
    if (Status s = check_password(nu.password); !s.is_ok()) return s;
    if (merchant_role(nu.role) == nu.merchant_id.empty()) {
      return Status(Errc::kInvalidArgument,
                    "merchant roles need a merchant id, staff roles must not have one");
    }
    if (merchant_role(nu.role)) {
      auto q = store_.query("SELECT 1 FROM merchants WHERE merchant_id = ?1");
      q.bind(1, nu.merchant_id);
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) return Status(Errc::kNotFound, "no merchant " + nu.merchant_id);
    }
    {
      auto q = store_.query("SELECT count(*) FROM users");
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (static_cast<std::size_t>(q.column_int64(0)) >= options_.max_users) {
        return Status(Errc::kTooLarge,
                      "user limit of " + std::to_string(options_.max_users) + " reached");
      }
    }
    Status s = store_
                   .query(
                       "INSERT INTO users(username, role, merchant_id, password_hash, active, "
                       "created_by, created_at_us) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6)")
                   .bind(1, nu.username)
                   .bind(2, static_cast<std::int64_t>(nu.role))
                   .bind(3, nu.merchant_id)
                   .bind_blob(4, password_hash(nu.username, nu.password))
                   .bind(5, by.user)
                   .bind(6, calendar_.now_us())
                   .run();
    if (s.code() == Errc::kDuplicate) {
      return Status(Errc::kDuplicate, "user " + nu.username + " exists");
    }
    return s;
  });
}

Status Users::set_active(const Session& by, const std::string& username, bool active) {
  return audited(by, active ? "activate_user" : "deactivate_user", username, [&]() -> Status {
    if (Status s = require(by, {Role::kAdmin, Role::kMerchantOwner}, "set_active"); !s.is_ok()) {
      return s;
    }
    auto u = user(username);
    if (!u.is_ok()) return u.status();
    if (by.role == Role::kMerchantOwner &&
        (u->role != Role::kMerchantOperator || u->merchant_id != by.merchant_id)) {
      return Status(Errc::kPermissionDenied, "a merchant owner manages only its own operators");
    }
    if (username == by.user) return Status(Errc::kRejected, "users cannot deactivate themselves");
    return store_.query("UPDATE users SET active = ?2 WHERE username = ?1")
        .bind(1, username)
        .bind(2, std::int64_t{active ? 1 : 0})
        .run();
  });
}

Status Users::change_password(const Session& by, const std::string& old_password,
                              const std::string& new_password) {
  return audited(by, "change_password", by.user, [&]() -> Status {
    if (Status s = require(
            by, {Role::kAdmin, Role::kFinance, Role::kMerchantOwner, Role::kMerchantOperator},
            "change_password");
        !s.is_ok()) {
      return s;
    }
    if (Status s = check_password(new_password); !s.is_ok()) return s;
    auto q = store_.query("SELECT password_hash FROM users WHERE username = ?1");
    q.bind(1, by.user);
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row || q.column_blob(0) != password_hash(by.user, old_password)) {
      return Status(Errc::kPermissionDenied, "old password does not match");
    }
    return store_.query("UPDATE users SET password_hash = ?2 WHERE username = ?1")
        .bind(1, by.user)
        .bind_blob(2, password_hash(by.user, new_password))
        .run();
  });
}

Status Users::record(std::string_view actor, std::string_view role, std::string_view merchant_id,
                     std::string_view action, const std::string& target, const Status& result) {
  return store_
      .query(
          "INSERT INTO audit_log(at_us, actor, role, merchant_id, action, target, ok, result) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
      .bind(1, calendar_.now_us())
      .bind(2, actor)
      .bind(3, role)
      .bind(4, merchant_id)
      .bind(5, action)
      .bind(6, clip(target))
      .bind(7, std::int64_t{result.is_ok() ? 1 : 0})
      .bind(8, clip(result.to_string()))
      .run();
}

Result<std::vector<AuditEntry>> Users::audit_log(const Session& by, const AuditFilter& f) const {
  if (Status s =
          require(by, {Role::kAdmin, Role::kFinance, Role::kMerchantOwner, Role::kMerchantOperator},
                  "audit_log");
      !s.is_ok()) {
    return s;
  }
  // Merchant users are pinned to their merchant whatever the filter says.
  const std::string merchant = merchant_role(by.role) ? by.merchant_id : f.merchant_id;
  auto q = store_.query(
      "SELECT id, at_us, actor, role, merchant_id, action, target, ok, result FROM audit_log "
      "WHERE (?1 = '' OR actor = ?1) AND (?2 = '' OR action = ?2) AND "
      "(?3 = '' OR merchant_id = ?3) ORDER BY id DESC LIMIT ?4");
  q.bind(1, f.actor)
      .bind(2, f.action)
      .bind(3, merchant)
      .bind(4, static_cast<std::int64_t>(std::min(f.limit, options_.audit_page_max)));
  std::vector<AuditEntry> out;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return out;
    AuditEntry e;
    e.id = q.column_int64(0);
    e.at_us = q.column_int64(1);
    e.actor = q.column_text(2);
    e.role = q.column_text(3);
    e.merchant_id = q.column_text(4);
    e.action = q.column_text(5);
    e.target = q.column_text(6);
    e.ok = q.column_int64(7) != 0;
    e.result = q.column_text(8);
    out.push_back(std::move(e));
  }
}

Result<std::int64_t> Users::audit_count() const {
  auto q = store_.query("SELECT count(*) FROM audit_log");
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  return q.column_int64(0);
}

}  // namespace citycard::backend
