// The money side's options, gathered for BackendOptions::money (backend.h). Each component's
// own header documents its knobs; this header only groups them.
#pragma once

#include <cstdint>
#include <string>

#include "citycard/backend/bank.h"
#include "citycard/backend/cards.h"
#include "citycard/backend/fares.h"
#include "citycard/backend/merchants.h"
#include "citycard/backend/notify.h"
#include "citycard/backend/recharge.h"
#include "citycard/backend/risk.h"
#include "citycard/backend/settlement.h"
#include "citycard/backend/users.h"

namespace citycard::backend {

struct MoneyOptions {
  UsersOptions users;
  CardOptions cards;  // id_salt is set from the key seed
  MerchantOptions merchants;
  RechargeOptions recharge;
  RiskOptions risk;
  FareOptions fares;
  NotifyOptions notify;
  SettlementOptions settlement;
  // The simulated bank; its seed is a fork of the key seed unless bank.seed is set non-zero.
  SimBankOptions bank{.seed = 0};
  // Another gateway instead of the simulated bank (not owned; must outlive the Backend).
  BankGateway* bank_gateway = nullptr;
  // Where notifications go: this file; when empty, "<db path>.notifications.log", and for a
  // ":memory:" database an in-memory gateway.
  std::string notification_file;
};

}  // namespace citycard::backend
