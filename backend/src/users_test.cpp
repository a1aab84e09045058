#include "citycard/backend/users.h"

#include <gtest/gtest.h>

#include "money_test_util.h"

namespace citycard::backend {
namespace {

using UsersTest = testing::MoneyTest;

TEST_F(UsersTest, BootstrapOnceLoginChecksThePassword) {
  EXPECT_EQ(backend->users().bootstrap_admin("root2", "password-2").code(), Errc::kRejected);
  auto bad = backend->users().login("root", "wrong-password");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), Errc::kPermissionDenied);
  EXPECT_EQ(backend->users().login("nobody", "password-1").status().message(),
            bad.status().message())
      << "an unknown user and a wrong password read the same";
  ASSERT_TRUE(backend->users().change_password(fin1, "password-1", "password-9").is_ok());
  EXPECT_FALSE(backend->users().login("fin1", "password-1").is_ok());
  EXPECT_TRUE(backend->users().login("fin1", "password-9").is_ok());
}

TEST_F(UsersTest, WrongRolesAreRefusedWithAClearError) {
  add_merchant(merchant("shop"));
  const Session op = add_user("op", Role::kMerchantOperator, "shop");
  const Status s = backend->merchants().create(op, merchant("evil"));
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), Errc::kPermissionDenied);
  EXPECT_NE(s.message().find("needs role admin"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("op is merchant_operator"), std::string::npos) << s.message();
  EXPECT_EQ(backend->settlement().prepare(op).status().code(), Errc::kPermissionDenied);
  EXPECT_EQ(backend->users().create_user(fin1, {"x", "password-1", Role::kAdmin, ""}).code(),
            Errc::kPermissionDenied);
}

TEST_F(UsersTest, AForgedSessionOrADeactivatedUserGetsNothing) {
  Session forged = fin1;
  forged.role = Role::kAdmin;
  EXPECT_EQ(backend->merchants().create(forged, merchant("m1")).code(), Errc::kPermissionDenied);
  Session ghost{"ghost", Role::kAdmin, ""};
  EXPECT_EQ(backend->merchants().create(ghost, merchant("m2")).code(), Errc::kPermissionDenied);
  ASSERT_TRUE(backend->users().set_active(admin, "fin2", false).is_ok());
  EXPECT_EQ(backend->settlement().prepare(fin2).status().code(), Errc::kPermissionDenied);
  EXPECT_FALSE(backend->users().login("fin2", "password-1").is_ok());
  EXPECT_EQ(backend->users().set_active(admin, "root", false).code(), Errc::kRejected);
}

TEST_F(UsersTest, MerchantUsersSeeAndTouchOnlyTheirMerchant) {
  add_merchant(merchant("a"));
  add_merchant(merchant("b"));
  const Session owner_a = add_user("owner-a", Role::kMerchantOwner, "a");
  terminal("a");
  terminal("b");
  EXPECT_TRUE(backend->merchants().get(owner_a, "a").is_ok());
  EXPECT_EQ(backend->merchants().get(owner_a, "b").status().code(), Errc::kPermissionDenied);
  EXPECT_EQ(backend->merchants().terminals(owner_a, "b").status().code(), Errc::kPermissionDenied);
  ASSERT_EQ(backend->merchants().terminals(owner_a, "a")->size(), 1u);
  auto seen = backend->merchants().list(owner_a);
  ASSERT_TRUE(seen.is_ok());
  ASSERT_EQ(seen->size(), 1u);
  EXPECT_EQ((*seen)[0].params.merchant_id, "a");
  // An owner makes operators for its own merchant only.
  EXPECT_TRUE(backend->users()
                  .create_user(owner_a, {"cashier-a", "password-1", Role::kMerchantOperator, "a"})
                  .is_ok());
  EXPECT_EQ(backend->users()
                .create_user(owner_a, {"cashier-b", "password-1", Role::kMerchantOperator, "b"})
                .code(),
            Errc::kPermissionDenied);
  EXPECT_EQ(backend->users()
                .create_user(owner_a, {"boss-a", "password-1", Role::kMerchantOwner, "a"})
                .code(),
            Errc::kPermissionDenied);
  auto users = backend->merchants().users_of(owner_a, "a");
  ASSERT_TRUE(users.is_ok());
  EXPECT_EQ(users->size(), 2u);
  EXPECT_EQ(backend->merchants().users_of(owner_a, "b").status().code(), Errc::kPermissionDenied);
  EXPECT_EQ(backend->fares().set_merchant_discount(owner_a, "b", "", 500).status().code(),
            Errc::kPermissionDenied);
  EXPECT_TRUE(backend->fares().set_merchant_discount(owner_a, "a", "food", 500).is_ok());
}

TEST_F(UsersTest, EveryOperationIsAuditedWhoWhatWhenAndResult) {
  const auto before = *backend->users().audit_count();
  clock.advance_us(123);
  ASSERT_TRUE(backend->merchants().create(admin, merchant("m")).is_ok());
  const Status refused = backend->merchants().create(admin, merchant("m"));
  EXPECT_EQ(refused.code(), Errc::kDuplicate);
  EXPECT_EQ(*backend->users().audit_count(), before + 2);
  auto log = backend->users().audit_log(admin, {"root", "create_merchant", "", 2});
  ASSERT_TRUE(log.is_ok());
  ASSERT_EQ(log->size(), 2u);
  EXPECT_FALSE((*log)[0].ok);  // newest first
  EXPECT_NE((*log)[0].result.find("duplicate"), std::string::npos);
  EXPECT_TRUE((*log)[1].ok);
  EXPECT_EQ((*log)[1].target, "m");
  EXPECT_EQ((*log)[1].role, "admin");
  EXPECT_EQ((*log)[1].at_us, clock.now_us());
  // A refusal leaves its row but none of its changes.
  EXPECT_EQ(backend->merchants().list(admin)->size(), 2u);  // desk and m
  // Merchant users read only their merchant's rows.
  const Session owner = add_user("owner-m", Role::kMerchantOwner, "m");
  ASSERT_TRUE(backend->fares().set_merchant_discount(owner, "m", "", 100).is_ok());
  auto theirs = backend->users().audit_log(owner, {"", "", "", 100});
  ASSERT_TRUE(theirs.is_ok());
  ASSERT_FALSE(theirs->empty());
  for (const AuditEntry& e : *theirs) EXPECT_EQ(e.merchant_id, "m");
}

}  // namespace
}  // namespace citycard::backend
