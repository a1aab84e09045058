// How long an exchange with a card or a SAM takes, so that every simulated transaction has a
// duration to hold against the budgets of STANDARDS.md ("Timing": Beijing 300 ms per
// transaction, Shanghai 400 ms purchase / 1 s recharge).
//
// Contactless (ISO/IEC 14443-2/-3/-4, type A, 106 kbit/s): time is counted in carrier cycles
// (fc = 13.56 MHz) and turned into microseconds at the end.
// - A bit lasts 128/fc (9.44 us). A standard frame carries 9 bits per byte (8 + odd parity)
//   plus start-of-frame and end-of-frame bits; a REQA short frame carries 7 bits.
// - The card answers no sooner than the minimum frame delay time 1172/fc (~86 us); longer when
//   it is still processing the command.
// - ISO-DEP I-blocks add PCB (1), optionally CID (1), and CRC_A (2). A C-APDU longer than the
//   card's frame size FSC is chained: every block but the last is acknowledged by R(ACK);
//   likewise a response longer than the reader's FSD.
// - Processing longer than the frame waiting time FWT = 256*16*2^FWI/fc makes the card ask for
//   waiting time extensions: one S(WTX) request and the reader's S(WTX) response per FWT.
// - The first exchange after the card enters the field also pays for activation: the card's
//   power-up, REQA/ATQA, anticollision and SELECT per cascade level, and (ISO-DEP) RATS/ATS
//   and the start-up frame guard time SFGT.
// - The reader and the terminal's software take `turnaround_us` after each card frame before
//   they send the next (a terminal property, not an ISO figure).
// MIFARE Classic commands are ISO 14443-3 frames with CRC_A; the card acknowledges writes with
// 4-bit ACKs; authentication is three passes (Nt; Nr+Ar; At).
//
// Contact (ISO/IEC 7816-3, T=0) for the PSAM: a character takes 12 etu (start, 8 data,
// parity, 2 guard) with etu = F/(D*f). A command is its 5-byte header, a procedure byte, its
// data, the status word; a case-4 command answers 61xx and costs a GET RESPONSE exchange.
//
// All functions are pure. Durations are microseconds, rounded up.
#pragma once

#include <cstddef>
#include <cstdint>

namespace citycard::devices {

// What a contactless card announces (ATS) and needs. Part of its profile.
struct Iso14443Picc {
  std::size_t fsc_bytes = 128;      // largest frame it accepts (FSCI 7)
  std::uint8_t fwi = 7;             // frame waiting integer: FWT = 302 us * 2^FWI (38.7 ms)
  std::uint8_t sfgi = 0;            // start-up frame guard integer after ATS
  std::size_t uid_bytes = 4;        // 4 (one cascade level) or 7 (two)
  std::size_t ats_bytes = 10;       // ATS length without CRC
  bool cid = false;                 // frames carry a CID byte
  std::int64_t startup_us = 1'000;  // power-up after entering a live field
};

// The terminal's reader (PCD).
struct ReaderTiming {
  std::size_t fsd_bytes = 256;       // largest frame it accepts (FSDI 8)
  std::int64_t turnaround_us = 300;  // reader + terminal software between a card frame and the
                                     // next command
  std::int64_t mifare_value_wait_us = 1'000;  // passive wait after a MIFARE value operand,
                                              // which the card does not acknowledge
};

// A contact SAM slot (ISO 7816-3, T=0).
struct ContactTiming {
  std::int64_t clock_hz = 3'571'200;  // 3.5712 MHz
  std::uint32_t f = 372;              // clock rate conversion factor, after PPS
  std::uint32_t d = 4;                // baud rate adjustment factor, after PPS (38,400 bit/s)
  std::int64_t turnaround_us = 100;   // terminal firmware between SAM exchanges
};

// What kind of air interface a card model speaks, for DirectLink.
struct LinkTiming {
  enum class Interface : std::uint8_t { kNone, kIsoDep, kMifare, kContact };
  Interface interface = Interface::kNone;
  Iso14443Picc picc;
  ContactTiming contact;
};

namespace timing {

inline constexpr std::int64_t kCarrierHz = 13'560'000;
inline constexpr std::int64_t kCyclesPerBit = 128;     // 106 kbit/s
inline constexpr std::int64_t kFdtMinCycles = 1172;    // ISO 14443-3, last bit 0
inline constexpr std::int64_t kFdtShortCycles = 1236;  // answers to REQA/anticollision

std::int64_t cycles_to_us(std::int64_t cycles);
// A standard frame of n bytes with parity, SOF and EOF, in carrier cycles.
std::int64_t frame_cycles(std::size_t bytes);
std::int64_t fwt_us(std::uint8_t fwi);

// One ISO-DEP exchange: C-APDU of `capdu_bytes`, R-APDU of `rapdu_bytes`, the card busy for
// `processing_us` after the command's last frame.
std::int64_t iso_dep_exchange_us(const Iso14443Picc& picc, const ReaderTiming& reader,
                                 std::size_t capdu_bytes, std::size_t rapdu_bytes,
                                 std::int64_t processing_us);
// Card entering the field up to the first command: ISO 14443-3 selection, and with `iso_dep`
// RATS/ATS.
std::int64_t activation_us(const Iso14443Picc& picc, const ReaderTiming& reader, bool iso_dep);

// One MIFARE Classic command as InDataExchange carries it (command byte first), the card busy
// for `processing_us` (EEPROM write included), `answer_data_bytes` of data coming back.
std::int64_t mifare_exchange_us(const ReaderTiming& reader, std::uint8_t command,
                                std::size_t answer_data_bytes, std::int64_t processing_us,
                                std::int64_t value_wait_us);

// One T=0 exchange with a SAM: header + procedure byte + `data_in` + SW, GET RESPONSE for
// case 4 when `data_out` > 0 and `data_in` > 0.
std::int64_t t0_exchange_us(const ContactTiming& contact, std::size_t data_in, std::size_t data_out,
                            std::int64_t processing_us);

}  // namespace timing
}  // namespace citycard::devices
