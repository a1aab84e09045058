// The host side of a purse load (圈存): what the clearing centre computes from the card's
// INITIALIZE FOR LOAD answer, in one place, so the backend and any terminal or card model
// that checks a load cannot drift apart (the primitives are in crypto.h).
//
// Our reading of PBOC 2.0 (STANDARDS.md, "Cryptography"), pinned by the backend's tests:
// - SESLK = ENC(DLK, random(4) || online counter(2) || 8000), the counter as INITIALIZE FOR
//   LOAD reports it (before the credit);
// - MAC1 over balance before(4) amount(4) type(1) terminal(6), from the card;
// - MAC2 over amount(4) type(1) terminal(6) date-time(7), from the host;
// - TAC over balance after(4) online counter(2) amount(4) type(1) terminal(6) date-time(7),
//   from the card, with the same (pre-credit) online counter and the host's date-time.
// Header-only and reentrant.
#pragma once

#include <cstdint>

#include "citycard/protocol/crypto.h"
#include "citycard/protocol/purse.h"

namespace citycard::protocol::load {

// The card's answer to INITIALIZE FOR LOAD, and what it was asked.
struct LoadInit {
  crypto::Algorithm algorithm = crypto::Algorithm::kTripleDes;
  std::uint32_t balance_before_fen = 0;
  std::uint16_t online_counter = 0;
  Random4 random{};
  Mac4 mac1{};
  std::uint32_t amount_fen = 0;
  std::uint8_t type = txn::kLoadEp;
  TerminalId terminal{};
};

inline crypto::SessionKey session_key(const LoadInit& init, const crypto::Key16& dlk) {
  return crypto::load_session_key(init.algorithm, dlk, init.random, init.online_counter);
}

// What MAC1 must be for this answer (the card computes it; the host recomputes it).
inline Mac4 expected_mac1(const LoadInit& init, const crypto::Key16& dlk) {
  return crypto::load_mac1(session_key(init, dlk), init.balance_before_fen, init.amount_fen,
                           init.type, init.terminal);
}

inline bool mac1_ok(const LoadInit& init, const crypto::Key16& dlk) {
  return crypto::mac_equal(expected_mac1(init, dlk), init.mac1);
}

// MAC2 for CREDIT FOR LOAD at `datetime` (date(4) || time(3)).
inline Mac4 mac2(const LoadInit& init, const crypto::Key16& dlk, const DateTime7& datetime) {
  return crypto::load_mac2(session_key(init, dlk), init.amount_fen, init.type, init.terminal,
                           datetime);
}

// The TAC the card answers to CREDIT FOR LOAD, given its DTK.
inline Mac4 expected_tac(const LoadInit& init, const crypto::Key16& dtk,
                         const DateTime7& datetime) {
  return crypto::load_tac(crypto::tac_key(init.algorithm, dtk),
                          init.balance_before_fen + init.amount_fen, init.online_counter,
                          init.amount_fen, init.type, init.terminal, datetime);
}

}  // namespace citycard::protocol::load
