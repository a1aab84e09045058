// A CPU purse card: one electronic-purse (EP) application of the card's family (JT/T 978 or
// CJ/T 166 AID, the PBOC purse command set both share), personalised by a CardImage, built to
// a CardProfile (file sizes, options, timing).
//
// Commands answered (STANDARDS.md); anything else answers 6D00 (INS) or 6E00 (CLA):
//   00 A4 04 00 Lc AID      SELECT the purse application by name -> FCI; unknown name 6A82;
//                           a temporarily blocked application answers FCI with 6283, a
//                           permanently blocked one 9303 (and stays unselected)
//   00 A4 00 00 02 3F00     SELECT the MF (leaves the application)
//   00 B0 95|96 off Le      READ BINARY of file 0x15 (30 bytes) or 0x16 (55 bytes)
//   00 B2 rec P2 Le         READ RECORD: 0x18 log and 0x1E travel records (cyclic, record 1 =
//                           newest), 0x1A metro record by id (P2 = SFI<<3 | 4)
//   00 20 00 00 Lc PIN      VERIFY the PIN (2..6 BCD bytes, F-padded) -> 9000, 63Cx, 6983
//   00 84 00 00 04          GET CHALLENGE -> random(4), valid for the next command only
//   80 5E 01 00 Lc old FF new  CHANGE PIN
//   80 5C 00 02 04          GET BALANCE
//   80 50 01 02 0B          INITIALIZE FOR PURCHASE (key index, amount, terminal)
//   80 50 03 02 0B          INITIALIZE FOR CAPP PURCHASE
//   80 50 00 02 0B          INITIALIZE FOR LOAD -> balance, online counter, key version,
//                           algorithm id, random, MAC1 (16 bytes)
//   80 DC rec SFI<<3 Lc     UPDATE CAPP DATA CACHE: 0x1E (P1 00, 48 bytes, appended as the
//                           newest record) or 0x1A (P1 = record id, 128 bytes)
//   80 54 01 00 0F          DEBIT FOR PURCHASE / CAPP PURCHASE -> TAC, MAC2
//   80 52 00 00 0B          CREDIT FOR LOAD (date, time, MAC2) -> TAC
//   80 5A 00 type 02 ctr    GET TRANSACTION PROVE (type 06, 09, or the profile's load type)
//                           -> MAC2 (for a load: the MAC2 the card accepted), TAC
//   84 1E 00 P2 04 MAC      APPLICATION BLOCK, P2 00 temporary, 01 permanent; the MAC is
//                           crypto::application_block_mac under DAMK and the challenge
//
// Choices where the standards leave room (each what a PBOC card is reported to do, or our
// reading, listed again in devices/README.md):
// - A malformed APDU (under 4 bytes, Lc not matching the bytes that follow) and a wrong Lc
//   answer 6700. Le is not checked except by GET CHALLENGE (6C04): the card returns the
//   whole field (T=1 style).
// - Checks run in the order CLA (6E00), INS (6D00), P1/P2 (6A86), Lc (6700), state, data.
// - Before the application is selected, purse commands answer 6985 and file reads 6A82.
// - A session opened by INITIALIZE lasts while the commands that belong to it follow
//   directly: INITIALIZE FOR PURCHASE -> DEBIT; INITIALIZE FOR CAPP PURCHASE -> any number of
//   UPDATE CAPP DATA CACHE -> DEBIT; INITIALIZE FOR LOAD -> CREDIT; GET CHALLENGE -> the next
//   command. Any other command, and a failing one (9302 included), ends it: DEBIT or CREDIT
//   without one answers 6986, UPDATE CAPP DATA CACHE without one 6986, APPLICATION BLOCK
//   without a challenge 6984. So a MAC cannot be guessed within one session.
// - A wrong MAC1 (DEBIT) or MAC2 (CREDIT) answers 9302 and changes nothing; a wrong
//   APPLICATION BLOCK MAC answers 6988.
// - Overdraft: a purchase may take the balance to zero and the rest from the overdraft
//   limit; the overdraft in use is kept apart (the balance never goes negative). A load pays
//   the overdraft back first.
// - A load that would take the balance past CardProfile::balance_max_fen answers 6985.
// - Counters saturate: at FFFF, INITIALIZE answers 9402.
// - A temporarily blocked application refuses INITIALIZE, DEBIT, CREDIT, UPDATE CAPP DATA
//   CACHE and CHANGE PIN with 6985 (reads, GET BALANCE and APPLICATION BLOCK still work).
// - PIN: the try counter is written down before the PIN is compared and restored after a
//   match, so pulling the card during VERIFY costs a try (as on real cards).
// - GET TRANSACTION PROVE takes the counter of the transaction plus one (the card's counter
//   after it); a mismatch answers 9406. The proof survives power-off.
//
// Atomicity: every command that changes non-volatile state commits it as one EEPROM
// transaction: journal, journal-valid flag, the writes, clear the flag. Power lost at any page
// write leaves, after the next power-on (reset()), either the old state (journal not valid)
// or the new one (journal rolled forward), never a mix. arm_power_cut() places that loss at a
// chosen page write. Each page write costs CardProfile::eeprom_write_us.
//
// Memory (issue 3, <= 256 B a card): 96 B fixed; the record files packed in one heap block
// (packed_files.h; full 0x18, 0x1E and a 0x1A record: ~150 B); personalisation interned; no
// keys with an IssuerKeyTable. Volatile state (session, capp cache) exists only in a field
// (reset() frees it); stored keys and a journal after a power cut live in a cold block.
//
// Not thread-safe; a card is in one field at a time.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "citycard/devices/card_keys.h"
#include "citycard/devices/card_profile.h"
#include "citycard/devices/packed_files.h"
#include "citycard/devices/timing.h"
#include "citycard/protocol/apdu.h"
#include "citycard/protocol/bytes.h"
#include "citycard/protocol/crypto.h"
#include "citycard/protocol/personalisation.h"
#include "citycard/protocol/purse.h"
#include "citycard/sim/rng.h"

namespace citycard::devices {

class CpuCard {
 public:
  static constexpr std::size_t kIssuerFileBytes = 30;  // file 0x15
  static constexpr std::size_t kHolderFileBytes = 55;  // file 0x16
  static constexpr std::uint8_t kPurchaseKeyIndex = 0x01;
  enum class Lock : std::uint8_t { kNone = 0, kTemporary = 1, kPermanent = 2 };

  // `rng` is the card's own source of challenges; give each card a fork of the run's root
  // generator so one card's randoms do not depend on other cards' taps. The card keeps the
  // image's keys (64 bytes on the heap) and the standard profile of its family.
  CpuCard(const protocol::CardImage& image, sim::Rng rng);
  // With a profile, which must outlive the card and be of the image's family.
  CpuCard(const protocol::CardImage& image, sim::Rng rng, const CardProfile& profile);
  // Keys derived on demand from `keys` (which must outlive the card) by the image's serial,
  // key version and algorithm; the image's key fields are not read.
  CpuCard(const protocol::CardImage& image, const IssuerKeyTable& keys, sim::Rng rng,
          const CardProfile& profile);
  ~CpuCard();
  CpuCard(CpuCard&&) noexcept;
  CpuCard& operator=(CpuCard&&) noexcept;

  // One C-APDU in, one R-APDU (data + status word) out. Bad input is answered with a status
  // word. An empty answer means the card lost power (arm_power_cut): it answers nothing more
  // until reset().
  Bytes process(ByteView capdu);
  // The card left the field or lost power, and is powered again: the selection, sessions and
  // the PIN state are gone; an interrupted EEPROM transaction is finished or undone; all that
  // a real card keeps in EEPROM stays.
  void reset();
  // Power fails during the next command, after `after_page_writes` EEPROM page writes (0:
  // before the first). A command with no more writes than that completes and power fails
  // right after it, its answer lost. Returns true (the card supports it).
  bool arm_power_cut(std::uint32_t after_page_writes);

  // For DirectLink: the air interface, and how long the last command kept the chip busy.
  LinkTiming link_timing() const;
  std::int64_t last_processing_us() const;

  std::uint32_t balance_fen() const { return purse_.balance_fen; }
  std::uint32_t overdraft_used_fen() const { return purse_.overdraft_used_fen; }
  std::uint16_t offline_counter() const { return purse_.offline_counter; }
  std::uint16_t online_counter() const { return purse_.online_counter; }
  std::uint8_t pin_tries_left() const { return purse_.pin_tries_left; }
  Lock lock() const { return static_cast<Lock>(purse_.lock); }
  bool powered() const { return powered_; }
  const protocol::Serial8& serial() const { return serial_; }
  protocol::Family family() const { return class_->profile->family; }
  const CardProfile& profile() const { return *class_->profile; }
  // The 0x18 log, newest first; the 0x1E travel records, newest first; a 0x1A record.
  std::vector<protocol::LogRecord> log() const;
  std::vector<Bytes> travel_records() const;
  Bytes metro_record(std::uint8_t record_id) const;
  // EEPROM page writes since personalisation (endurance: cards are specified for >= 100,000
  // transactions).
  std::uint64_t eeprom_page_writes() const { return eeprom_page_writes_; }
  // Heap the card holds now (files; stored keys; while in a field its volatile state and the
  // capp cache; a journal after a power cut), for memory accounting.
  std::size_t heap_bytes() const;

 private:
  enum class Session : std::uint8_t { kNone, kPurchase, kCapp, kLoad, kChallenge };
  // The last transaction's proof; its counter is the card's counter of its kind minus one.
  struct Proof {
    std::uint8_t type = 0;  // txn::kPurchase, kCappPurchase or kLoadEp; 0: none
    protocol::Mac4 mac{};   // MAC2
    protocol::Mac4 tac{};
  };
  // All non-volatile state but the files: what one EEPROM transaction writes as a whole.
  struct Purse {
    std::uint32_t balance_fen = 0;
    std::uint32_t overdraft_used_fen = 0;
    std::uint16_t offline_counter = 0;
    std::uint16_t online_counter = 0;
    Proof proof;
    std::uint8_t pin_tries_left = 0;
    std::uint8_t lock = 0;  // Lock
    std::uint8_t pin_digits = 0;
    std::array<std::uint8_t, 6> pin_bcd{};
  };
  // One file record a transaction writes along with the purse (for the EEPROM page count).
  struct FileWrite {
    std::uint8_t sfi = 0;
    std::uint8_t bytes = 0;
  };
  struct Commit {
    Purse purse;
    std::array<FileWrite, 3> writes{};
    std::uint8_t write_count = 0;
    PackedCardFiles::Txn txn{};  // the records, when write_count > 0
  };
  struct Journal;    // a commit interrupted by a power cut, finished at reset()
  struct CappCache;  // records staged by UPDATE CAPP DATA CACHE

  CpuCard(const protocol::CardImage& image, const IssuerKeyTable* keys, sim::Rng rng,
          const CardProfile& profile);
  protocol::Response dispatch(const protocol::Command& c, Session session);
  protocol::Response select(const protocol::Command& c);
  protocol::Response read_binary(const protocol::Command& c);
  protocol::Response read_record(const protocol::Command& c);
  protocol::Response verify_pin(const protocol::Command& c);
  protocol::Response change_pin(const protocol::Command& c);
  protocol::Response get_challenge(const protocol::Command& c);
  protocol::Response get_balance(const protocol::Command& c);
  protocol::Response initialize(const protocol::Command& c);
  protocol::Response initialize_load(const protocol::Command& c);
  protocol::Response update_capp(const protocol::Command& c, Session session);
  protocol::Response debit(const protocol::Command& c, Session session);
  protocol::Response credit(const protocol::Command& c, Session session);
  protocol::Response get_transaction_prove(const protocol::Command& c);
  protocol::Response application_block(const protocol::Command& c, Session session);

  protocol::Response refuse(std::uint16_t sw);
  protocol::Response done(Bytes data, std::int64_t processing_us);
  // Writes `commit` as one EEPROM transaction; false if power failed during it (the card is
  // then silent and the command must not answer).
  bool commit(const Commit& commit);
  PackedCardFiles::Context files_context(const Purse& p) const;
  void recover();
  std::uint32_t pages(std::size_t bytes) const;
  bool pin_matches(ByteView pin) const;
  bool check_pin_and_count(ByteView pin, bool* ok);
  Bytes issuer_file() const;
  Bytes holder_file() const;
  std::uint32_t available_fen() const;
  bool within_validity(const protocol::DateTime7& dt) const;
  protocol::Random4 next_random();
  protocol::crypto::Key16 key(KeyUse use) const;
  bool blocked() const { return purse_.lock != 0; }

  // What cards of one product line and issuer share: interned, never freed.
  struct Class {
    const CardProfile* profile;
    const IssuerKeyTable* keys;  // null: the card keeps its own keys (Cold)
  };
  static const Class* class_of(const CardProfile* profile, const IssuerKeyTable* keys);
  // Personalisation fixed for the card's life, interned in InternTable::shared() as 22 bytes:
  // issuer data(8) valid from(4) valid to(4) overdraft limit(3) key version algorithm type.
  struct Perso {
    std::array<std::uint8_t, 8> issuer_data{};
    std::array<std::uint8_t, 4> valid_from{};
    std::array<std::uint8_t, 4> valid_to{};
    std::uint32_t overdraft_limit_fen = 0;
    std::uint8_t key_version = 0;
    protocol::crypto::Algorithm algorithm{};
    protocol::CardType card_type{};
  };
  static constexpr std::size_t kPersoBytes = 22;
  Perso perso() const;
  const std::uint8_t* perso_bytes() const;
  std::uint32_t overdraft_limit_fen() const;
  std::uint8_t key_version() const;
  protocol::crypto::Algorithm algorithm() const;
  // Rare per-card state: the image's keys (constructor without a key table), a journal after
  // a power cut, the personalisation if the intern table is full.
  struct Cold;
  // Volatile state, allocated when a command comes and dropped by reset() (a card out of the
  // field keeps no RAM): selection, session, PIN state, the capp cache, the power-cut plan.
  struct Field;
  Field& field();
  static std::unique_ptr<Field>& spare_field();  // one per thread, reused by the next tap
  Cold& cold();

  const Class* class_;
  std::unique_ptr<Cold> cold_;
  std::unique_ptr<Field> field_;
  // Non-volatile: records of 0x18, 0x1E, 0x1A, packed (packed_files.h); no heap until the
  // first one.
  PackedCardFiles files_;
  std::uint64_t rng_state_;  // splitmix64, seeded from the card's sim::Rng
  protocol::Serial8 serial_;
  std::uint32_t perso_id_;  // InternTable id, or InternTable::kFull (then in Cold)
  std::uint32_t eeprom_page_writes_ = 0;
  Purse purse_;
  bool powered_ = true;
};

}  // namespace citycard::devices
