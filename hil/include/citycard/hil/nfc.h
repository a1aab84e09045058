// The libnfc side of hardware in the loop: a context, the readers it can see, and what a
// reader does in either role, with libnfc's errors turned into Status values.
//
// Initiator mode (a terminal reading cards): select an ISO 14443-A card and exchange with it;
// NfcCardLink makes a selected ISO-DEP card a devices::CardLink, so the terminals of devices/
// run over a real reader unchanged; MifareClassicSession speaks MIFARE Classic commands.
// Target mode (a card towards a real terminal): CardEmulator serves C-APDUs from the terminal
// with any APDU handler, e.g. a devices::CpuCard's process().
//
// How libnfc's errors map (status_from_libnfc):
//   NFC_ETIMEOUT                 -> kTimeout      the reader did not answer in time
//   NFC_ERFTRANS, NFC_ETGRELEASED -> kTorn        no answer from the card / card released:
//                                                 it left the field (the command may or may
//                                                 not have taken effect)
//   NFC_EIO, NFC_ENOTSUCHDEV     -> kUnavailable  the reader is gone or not a PN53x
//   NFC_EOPABORTED               -> kUnavailable  aborted (CardEmulator::stop)
//   NFC_EMFCAUTHFAIL             -> kRejected     MIFARE authentication refused
//   NFC_EINVARG                  -> kInvalidArgument
//   NFC_EOVFLOW                  -> kTooLarge
//   NFC_EDEVNOTSUPP, NFC_ENOTIMPL -> kUnavailable  the reader cannot do it
//   NFC_ECHIP                    -> kIo           the chip reported an error
//   anything else                -> kInternal
//
// Threads: libnfc contexts and devices are not thread-safe. One NfcContext and the readers it
// opened belong to one thread, with one exception: CardEmulator::stop() may be called from
// any thread. A context must outlive the readers it opened.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "citycard/devices/card_link.h"
#include "citycard/devices/m1_link.h"
#include "citycard/hil/field_card.h"
#include "citycard/protocol/apdu.h"
#include "citycard/protocol/bytes.h"
#include "citycard/protocol/status.h"
#include "citycard/sim/clock.h"

struct nfc_context;
struct nfc_device;

namespace citycard::hil {

const char* libnfc_version();

// A libnfc error code (negative) as a Status whose message names `what` and the error.
Status status_from_libnfc(int code, std::string_view what);

class NfcReader;

class NfcContext {
 public:
  static Result<std::unique_ptr<NfcContext>> create();
  ~NfcContext();
  NfcContext(const NfcContext&) = delete;
  NfcContext& operator=(const NfcContext&) = delete;

  // Connstrings of the readers libnfc finds by scanning (and LIBNFC_DEVICE, if set).
  std::vector<std::string> list_readers(std::size_t max_readers = 16);
  // Opens a reader, e.g. "pn532_uart:/dev/ttyUSB0" or "pn532_uart:/dev/pts/5".
  Result<std::unique_ptr<NfcReader>> open(const std::string& connstring);

 private:
  explicit NfcContext(nfc_context* ctx) : ctx_(ctx) {}
  nfc_context* ctx_;
};

class NfcReader {
 public:
  static constexpr int kExchangeTimeoutMsDefault = 1000;
  // libnfc's receive buffer: the longest answer an exchange can carry (PN532.md: 263 bytes
  // after the status byte).
  static constexpr std::size_t kAnswerBytesMax = 263;

  ~NfcReader();
  NfcReader(const NfcReader&) = delete;
  NfcReader& operator=(const NfcReader&) = delete;
  std::string name() const;
  std::string connstring() const { return connstring_; }

  // ---- initiator mode ----
  // Puts the reader in initiator mode: the field goes off and on (every card in it powers up
  // afresh), ISO 14443-A at 106 kbit/s, ISO-DEP (RATS, blocks, chaining) handled by the reader.
  // Selecting does not wait for a card to come: select_card() answers at once.
  Status start_initiator();
  // The cards in the field, each activated once and then halted (as nfc-list does), so a later
  // select_card() finds them again only after start_initiator() resets the field.
  Result<std::vector<CardIdentity>> list_cards(std::size_t max_cards = 4);
  // Selects a card: the first that answers, or the one whose UID is `uid`. kNotFound when no
  // card answers.
  Result<CardIdentity> select_card(ByteView uid = {});
  // Waits up to about `timeout_ms` for a card to enter the field and selects it (the PN532's
  // InAutoPoll). kNotFound when none came.
  Result<CardIdentity> poll_card(int timeout_ms);
  // Ends the session with the selected card (it halts).
  Status deselect_card();
  // Whether the selected card still answers (libnfc's presence check).
  bool card_present();
  // One exchange with the selected card: a C-APDU to an ISO-DEP card (the R-APDU comes
  // back), or a MIFARE command to an M1 card (the card's data, if any, comes back).
  Result<Bytes> transceive(ByteView frame);
  const std::optional<CardIdentity>& selected() const { return selected_; }
  void set_exchange_timeout_ms(int timeout_ms) { exchange_timeout_ms_ = timeout_ms; }
  int exchange_timeout_ms() const { return exchange_timeout_ms_; }

 private:
  friend class NfcContext;
  friend class CardEmulator;
  NfcReader(nfc_device* dev, std::string connstring)
      : dev_(dev), connstring_(std::move(connstring)) {}
  nfc_device* dev_;
  std::string connstring_;
  std::optional<CardIdentity> selected_;
  int exchange_timeout_ms_ = kExchangeTimeoutMsDefault;
};

// A selected ISO-DEP card as a devices::CardLink. Time is real here: elapsed_us() and the
// trace's durations are wall-clock microseconds of the exchanges (sim::WallClock), so a
// terminal measures a real transaction against its time budget. Does not own the reader.
// Single-threaded.
class NfcCardLink final : public devices::CardLink {
 public:
  explicit NfcCardLink(NfcReader& reader, devices::ApduTrace trace = {})
      : reader_(reader), trace_(std::move(trace)) {}
  Result<protocol::Response> transceive(const protocol::Command& command) override;
  std::int64_t elapsed_us() const override { return elapsed_us_; }
  std::uint64_t exchanges() const { return exchanges_; }

 private:
  NfcReader& reader_;
  devices::ApduTrace trace_;
  sim::WallClock clock_;
  std::uint64_t exchanges_ = 0;
  std::int64_t elapsed_us_ = 0;
};

// A selected MIFARE Classic card as a devices::M1Link: MIFARE commands in, the reader-level
// answer out (status byte 00 and the data; 14 for a refused AUTH; 01 for a NAK or a halted
// card's silence), kTorn when the card has left the field. libnfc reports a NAK and a card
// that is gone alike (NFC_ERFTRANS); the link tells them apart with a presence check, which
// re-selects a card that is there (a NAK needs that anyway). Time as NfcCardLink. Does not
// own the reader. Single-threaded.
class NfcM1Link final : public devices::M1Link {
 public:
  explicit NfcM1Link(NfcReader& reader, devices::M1Trace trace = {})
      : reader_(reader), trace_(std::move(trace)) {}
  // The last four bytes of the selected card's UID (what MIFARE AUTH takes); zeros when none.
  protocol::m1::Uid4 uid() const override;
  Result<Bytes> transceive(ByteView command) override;
  std::int64_t elapsed_us() const override { return elapsed_us_; }
  std::uint64_t exchanges() const { return exchanges_; }

 private:
  NfcReader& reader_;
  devices::M1Trace trace_;
  sim::WallClock clock_;
  std::uint64_t exchanges_ = 0;
  std::int64_t elapsed_us_ = 0;
};

enum class MifareKeyType : std::uint8_t { kA = 0x60, kB = 0x61 };
using MifareKey = std::array<std::uint8_t, 6>;
using MifareBlock = std::array<std::uint8_t, 16>;

// MIFARE Classic commands to a selected M1 card. A refused authentication answers kRejected
// and selects the card again (it halts on a refused AUTH), so the next key can be tried.
// A command the card refuses (NAK) answers kRejected; a card that is gone answers kTorn.
// Does not own the reader. Single-threaded.
class MifareClassicSession {
 public:
  explicit MifareClassicSession(NfcReader& reader) : reader_(reader) {}

  Status authenticate(std::uint8_t block, MifareKeyType type, const MifareKey& key);
  Result<MifareBlock> read_block(std::uint8_t block);
  Status write_block(std::uint8_t block, const MifareBlock& data);
  // Value operations into the card's transfer buffer; transfer() writes it to a block.
  Status increment(std::uint8_t block, std::uint32_t value);
  Status decrement(std::uint8_t block, std::uint32_t value);
  Status restore(std::uint8_t block);
  Status transfer(std::uint8_t block);

 private:
  Status command(ByteView frame, const char* what, Bytes* answer = nullptr);
  NfcReader& reader_;
};

// Target mode: the reader (a PN532) presents itself as an ISO-DEP card and hands the
// terminal's C-APDUs to a handler.
struct EmulationOptions {
  std::array<std::uint8_t, 3> uid_tail{0x12, 0x34, 0x56};  // the PN532 fixes UID[0] = 08
  std::array<std::uint8_t, 2> atqa{0x00, 0x04};
  Bytes historical_bytes{0x43, 0x43};   // in the ATS the terminal gets
  int activation_timeout_ms = 0;        // wait for a terminal's field; 0 = until stopped
  int apdu_timeout_ms = 0;              // wait for the next C-APDU; 0 = until stopped/released
  std::uint32_t sessions_max = 1;       // terminal sessions to serve; 0 = until stopped
  std::uint64_t apdus_max = 1'000'000;  // a bound: the run ends after this many
};

struct EmulationReport {
  std::uint32_t sessions = 0;  // terminal sessions that ended with the terminal's release
  std::uint64_t apdus = 0;
  bool stopped = false;  // stop() ended the run
};

using ApduHandler = std::function<Bytes(ByteView capdu)>;

class CardEmulator {
 public:
  explicit CardEmulator(NfcReader& reader) : reader_(reader) {}

  // Serves terminal sessions until sessions_max is reached, stop() is called, or an error.
  // A session ends when the terminal releases the card (or leaves the field).
  Result<EmulationReport> run(const ApduHandler& card, const EmulationOptions& options);
  // Any thread: makes run() return soon, with report.stopped. libnfc can only abort a
  // command that is waiting, so stop() aborts again (a bounded number of times) until run()
  // has left libnfc.
  void stop();

 private:
  bool enter_libnfc();  // false when stopping
  void leave_libnfc();

  NfcReader& reader_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool in_libnfc_ = false;
};

}  // namespace citycard::hil
