// What `citycard nfc ...` does, as library calls with structured results, so the CLI only
// parses arguments and prints:
//   list    readers libnfc sees and the ISO 14443-A cards in each one's field
//   read    a card: a CPU card's purse application (balance, issuer file, log records), or
//           the sectors of an M1 card that the given keys open
//   emulate serve a simulated card through a PN532 in target mode until stopped
//   serve   run a software PN532 on a pty (with a symlink at a fixed path), controlled over a
//           unix socket and/or stdin (pn532_control.h), until stopped or told to quit
//
// Threads: each call runs on the caller's thread with its own libnfc context. `stop` tokens
// may be triggered from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "citycard/hil/field_card.h"
#include "citycard/hil/nfc.h"
#include "citycard/hil/soft_pn532.h"
#include "citycard/protocol/crypto.h"
#include "citycard/protocol/purse.h"
#include "citycard/protocol/status.h"

namespace citycard::hil::tools {

// ---- list ----
struct ReaderListing {
  std::string connstring;
  std::string name;  // empty when the reader could not be opened
  Status status;     // why it could not be opened or polled
  std::vector<CardIdentity> cards;
};

struct ListOptions {
  std::vector<std::string> connstrings;  // empty: what libnfc finds (LIBNFC_DEVICE, scans)
  std::size_t readers_max = 8;
  std::size_t cards_max = 4;
};

// One entry per reader; a reader that fails is listed with its status, the others still are.
Result<std::vector<ReaderListing>> list(const ListOptions& options = {});

// ---- read ----
struct PurseReading {
  protocol::Family family = protocol::Family::kJtt978;
  std::uint32_t balance_fen = 0;
  Bytes issuer_file;                          // file 0x15 as read (30 bytes on our cards)
  std::array<std::uint8_t, 8> issuer_data{};  // 0x15 offsets 0..7
  Bytes application_serial;                   // 0x15 offsets 10..19
  std::array<std::uint8_t, 4> valid_from{};   // BCD YYYYMMDD, offset 20
  std::array<std::uint8_t, 4> valid_to{};     // offset 24
  std::vector<protocol::LogRecord> records;   // 0x18, newest first
  // The offline counter the next purchase will use: the newest record's counter + 1 (read
  // without opening a purchase session). Empty when the log is empty.
  std::optional<std::uint16_t> next_offline_counter;
};

struct M1SectorReading {
  std::uint8_t sector = 0;
  std::optional<MifareKeyType> key_type;  // empty: no given key opened it
  MifareKey key{};
  std::vector<MifareBlock> blocks;  // the sector's blocks, trailer last (key A reads as zeros)
};

struct CardReading {
  std::string reader;  // connstring
  CardIdentity card;
  std::optional<PurseReading> purse;     // ISO-DEP cards with a purse application
  std::vector<M1SectorReading> sectors;  // MIFARE Classic cards
};

// Transport keys and the well-known defaults, tried in order, A then B.
std::vector<MifareKey> default_m1_keys();

struct ReadOptions {
  std::string connstring;  // empty: the first reader libnfc finds
  Bytes uid;               // empty: the first card that answers
  int wait_ms = 0;         // how long to wait for a card to come (0: it must be there)
  std::vector<MifareKey> m1_keys = default_m1_keys();
  // With an M1 master key, each sector's own keys (protocol::m1::sector_key, derived by the
  // UID) are tried first: what opens an M1 purse card.
  std::optional<protocol::crypto::Key16> m1_master;
  std::size_t records_max = 10;
  std::size_t m1_sectors = 16;
  int exchange_timeout_ms = NfcReader::kExchangeTimeoutMsDefault;
};

// kNotFound: no reader, or no card. A CPU card without a purse application of either family
// is read as a card with no purse (the reading says which card it was).
Result<CardReading> read(const ReadOptions& options);

// ---- emulate ----
struct EmulateOptions {
  std::string connstring;  // empty: the first reader libnfc finds
  EmulationOptions emulation;
};

// Serves `card` (e.g. a devices::CpuCard's process()) through the PN532 at `connstring` until
// the emulation's sessions are done or `stop` is requested.
Result<EmulationReport> emulate(const EmulateOptions& options, const ApduHandler& card,
                                std::stop_token stop = {});

// ---- serve ----
struct ServeOptions {
  SoftPn532Options pn532;                     // pn532.link_path: where tools find the pty
  std::string control_socket;                 // unix socket for control lines; empty: none
  bool control_stdin = false;                 // control lines on stdin, replies on stdout
  std::vector<std::string> initial_commands;  // control lines run first, e.g. "insert cpu 1 500"
  // Called once the emulator serves, with its connstring (e.g. to print it).
  std::function<void(const std::string& connstring)> on_ready;
};

// Runs a software PN532 until `stop` is requested, a control client says quit, or stdin ends
// (with control_stdin). A failing initial command is returned as the error.
Status serve_soft_pn532(const ServeOptions& options, std::stop_token stop = {});

}  // namespace citycard::hil::tools
