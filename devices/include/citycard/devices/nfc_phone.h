// The NFC phone (issue 5): a purse card in the phone's secure element, and the phone's wallet
// app that talks to the clearing centre over the air.
//
// - ota_load(): over-the-air load (空中充值). The app pays (a CHANNEL_PHONE order; the
//   backend asks the bank; the order is PAID once the bank approves), receives the load
//   authorisation (MAC2 over the card's INITIALIZE FOR LOAD answer, which is how the "encrypted
//   load command" reaches the card: only the card's DLK can produce and check it) and applies
//   it to the card in the phone (CREDIT FOR LOAD), then confirms with the card's TAC.
// - complete_pending(): 补登. A load whose first attempt failed (the SE link dropped before the
//   credit, or the credit's answer was lost) stays paid at the backend; the phone tries the
//   order it left in doubt first, then every pending load the backend lists for the card.
// - balance() and last_records(): what the wallet shows, read from the card itself (GET
//   BALANCE, READ RECORD of the 0x18 log, newest first).
//
// The SE is reached through a CardLink the caller supplies (a DirectLink on the phone's
// CpuCard; a TearingLink in tests), so the phone never owns the card. Single-threaded; the
// online client's pump rules apply (online_load.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "citycard/devices/card_link.h"
#include "citycard/devices/online_load.h"
#include "citycard/protocol/purse.h"

namespace citycard::devices {

struct NfcPhoneOptions {
  // The phone's load terminal id: the wallet service's, registered with the backend (it is in
  // MAC1 and MAC2 like any load terminal's).
  protocol::TerminalId terminal_id{};
  protocol::Serial8 card_serial{};  // the SE card's application serial
  std::size_t records_max = 10;     // last_records() reads at most this many
};

class NfcPhone {
 public:
  NfcPhone(NfcPhoneOptions options, OnlineLoadClient& client);

  OnlineLoad ota_load(CardLink& se, const std::string& order_id, std::uint32_t amount_fen,
                      const protocol::DateTime7& datetime);
  std::vector<OnlineLoad> complete_pending(CardLink& se, const protocol::DateTime7& datetime);

  Result<std::uint32_t> balance(CardLink& se) const;
  // Newest first; at most min(n, records_max). A card with fewer answers what it has.
  Result<std::vector<protocol::LogRecord>> last_records(CardLink& se, std::size_t n) const;

  const RechargePoint& wallet() const { return point_; }

 private:
  Status select(CardLink& se) const;

  NfcPhoneOptions options_;
  RechargePoint point_;
};

}  // namespace citycard::devices
