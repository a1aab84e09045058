// Card and SAM profiles: what a product line of cards is like, as opposed to one card's
// personalisation (protocol::CardImage). A profile fixes the application family, the sizes of
// the files, the points where the standards leave room (each a named option, defaulting to our
// reading), and the timing: how long the chip takes per command and per EEPROM page write.
//
// Profiles are plain values. Cards keep a pointer to theirs, so a profile must outlive the
// cards made from it; the presets below are static and live for the whole program. Thousands
// of cards share one profile.
//
// The timing defaults describe a current dual-interface transit chip with a 3DES coprocessor;
// they are orders of magnitude from vendors' data sheets, not measurements of a given chip.
// The "slow" presets describe a first-generation card with DES in software and slow EEPROM.
#pragma once

#include <cstddef>
#include <cstdint>

#include "citycard/devices/timing.h"
#include "citycard/protocol/purse.h"

namespace citycard::devices {

// Processing time of a CPU card per command, in microseconds, before EEPROM writes (each
// written page adds CardProfile::eeprom_write_us).
struct CpuCommandTimes {
  std::int64_t select_us = 1'500;
  std::int64_t read_us = 1'000;  // READ BINARY, READ RECORD
  std::int64_t get_balance_us = 800;
  std::int64_t get_challenge_us = 1'200;
  std::int64_t verify_pin_us = 1'500;
  std::int64_t change_pin_us = 2'000;
  std::int64_t initialize_us = 3'000;  // random; for a load also SESLK and MAC1
  std::int64_t update_capp_us = 800;   // into the RAM cache
  std::int64_t debit_us = 5'000;       // SESPK, MAC1 check, MAC2, TAC
  std::int64_t credit_us = 5'000;      // MAC2 check, TAC
  std::int64_t prove_us = 800;
  std::int64_t application_block_us = 2'500;
  std::int64_t refused_us = 300;  // a command its checks refuse
};

struct CardProfile {
  const char* name = "jtt978";
  protocol::Family family = protocol::Family::kJtt978;

  // Files.
  std::uint8_t log_records = 10;  // 0x18, cyclic, 23-byte records
  // 0x1E, cyclic, 48-byte records. The record count is NOT confirmed by a public source.
  std::uint8_t travel_records = 10;
  std::uint8_t metro_records = 1;           // 0x1A, 128-byte records addressed by record id 1..n
  std::uint32_t balance_max_fen = 100'000;  // a load past it answers 6985 (1,000 yuan)
  std::uint8_t pin_tries_max = 3;

  // Points the standards leave open: our reading by default (devices/README.md).
  std::uint8_t purchase_key_index = 0x01;
  std::uint8_t load_key_index = 0x01;
  std::uint8_t load_prove_type = protocol::txn::kLoadProveTypeDefault;  // 805A P2 for a load
  bool load_requires_pin = false;     // INITIALIZE FOR LOAD only after VERIFY (PBOC allows it)
  bool card_checks_validity = false;  // DEBIT/CREDIT outside 0x15's validity answer 6985

  // Timing.
  CpuCommandTimes command;
  std::int64_t eeprom_write_us = 2'000;  // one page erase + write
  std::size_t eeprom_page_bytes = 64;
  Iso14443Picc air;

  static const CardProfile& jtt978();
  static const CardProfile& cjt166();
  // The default of a family: jtt978() or cjt166().
  static const CardProfile& standard(protocol::Family family);
  // A first-generation card: software DES, 32-byte EEPROM pages at 8 ms, small frames
  // (FSC 32) and a short frame waiting time (FWI 4), so long commands need S(WTX).
  static const CardProfile& slow(protocol::Family family);
};

// Processing time of a PSAM per command, in microseconds (contact, ISO 7816 T=0).
struct PsamProfile {
  const char* name = "psam";
  std::int64_t select_us = 1'000;
  std::int64_t read_us = 800;
  std::int64_t mac1_us = 4'000;  // diversify DPK, SESPK, MAC1
  std::int64_t verify_mac2_us = 1'500;
  std::int64_t diversify_us = 2'500;    // 801A
  std::int64_t general_mac_us = 1'500;  // 80FA, plus per 8-byte block below
  std::int64_t general_mac_block_us = 50;
  std::int64_t refused_us = 300;
  std::int64_t eeprom_write_us = 2'500;  // the terminal sequence counter after each 8070
  ContactTiming contact;

  static const PsamProfile& standard();
  static const PsamProfile& slow();  // 9,600 bit/s and software DES
};

// Processing time of a MIFARE Classic card per command, in microseconds.
struct M1Profile {
  const char* name = "mifare-classic-1k";
  std::int64_t auth_us = 300;
  std::int64_t read_us = 300;
  std::int64_t write_us = 2'500;  // EEPROM block write (WRITE, TRANSFER)
  std::int64_t value_us = 200;    // INCREMENT/DECREMENT/RESTORE into the transfer buffer
  std::int64_t refused_us = 100;
  Iso14443Picc air{.fsc_bytes = 16,
                   .fwi = 4,
                   .sfgi = 0,
                   .uid_bytes = 4,
                   .ats_bytes = 0,
                   .cid = false,
                   .startup_us = 1'000};

  static const M1Profile& standard();
};

}  // namespace citycard::devices
