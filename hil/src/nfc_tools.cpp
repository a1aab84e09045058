#include "citycard/hil/nfc_tools.h"

#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>

#include "citycard/hil/pn532_control.h"
#include "citycard/protocol/apdu.h"
#include "citycard/protocol/mifare.h"

namespace citycard::hil::tools {

namespace {

using protocol::Command;
using protocol::Response;

constexpr std::uint8_t kSfiLogP2 = (protocol::sfi::kLog << 3) | 0x04;  // READ RECORD by SFI
constexpr std::uint8_t kIssuerFileBytes = 30;
constexpr std::size_t kSectorBlocks = 4;
// How often serve_soft_pn532 looks at its stop token and at a control client's quit.
constexpr std::chrono::milliseconds kServeCheck{100};

Result<std::unique_ptr<NfcReader>> open_reader(NfcContext& ctx, const std::string& connstring) {
  if (!connstring.empty()) return ctx.open(connstring);
  const std::vector<std::string> found = ctx.list_readers(1);
  if (found.empty()) {
    return Result<std::unique_ptr<NfcReader>>(
        Errc::kNotFound,
        "no NFC reader found (give one, e.g. pn532_uart:/dev/ttyUSB0, or set LIBNFC_DEVICE)");
  }
  return ctx.open(found[0]);
}

Result<Response> exchange(NfcCardLink& link, const Command& c) {
  return link.transceive(c);
}

// SELECT by AID; nullopt when the card has no such application.
Result<bool> select_application(NfcCardLink& link, protocol::Family family) {
  Result<Response> r =
      exchange(link, Command{0x00, 0xA4, 0x04, 0x00, protocol::aid_for(family), 256});
  if (!r) return r.status();
  if (r->sw == protocol::sw::kFileNotFound) return false;
  if (!r->ok()) {
    return Result<bool>(Errc::kRejected,
                        std::string("SELECT answered ") + protocol::sw_name(r->sw));
  }
  return true;
}

Result<PurseReading> read_purse(NfcCardLink& link, protocol::Family family,
                                std::size_t records_max) {
  PurseReading p;
  p.family = family;
  Result<Response> balance = exchange(link, Command{0x80, 0x5C, 0x00, 0x02, {}, 4});
  if (!balance) return balance.status();
  if (!balance->ok() || balance->data.size() != 4) {
    return Result<PurseReading>(
        Errc::kRejected, std::string("GET BALANCE answered ") + protocol::sw_name(balance->sw));
  }
  p.balance_fen = get_u32be(balance->data, 0);

  Result<Response> file =
      exchange(link, Command{0x00,
                             0xB0,
                             static_cast<std::uint8_t>(0x80 | protocol::sfi::kIssuer),
                             0x00,
                             {},
                             kIssuerFileBytes});
  if (!file) return file.status();
  if (file->ok() && file->data.size() >= 28) {
    p.issuer_file = file->data;
    const ByteView f = p.issuer_file;
    p.issuer_data = take<8>(f, 0);
    p.application_serial.assign(f.begin() + 10, f.begin() + 20);
    p.valid_from = take<4>(f, 20);
    p.valid_to = take<4>(f, 24);
  }

  for (std::size_t n = 1; n <= records_max && n <= 255; ++n) {
    Result<Response> rec = exchange(
        link,
        Command{
            0x00, 0xB2, static_cast<std::uint8_t>(n), kSfiLogP2, {}, protocol::LogRecord::kSize});
    if (!rec) return rec.status();
    if (!rec->ok()) break;  // 6A83: no more records
    std::optional<protocol::LogRecord> r = protocol::LogRecord::decode(rec->data);
    if (!r)
      return Result<PurseReading>(Errc::kMalformed,
                                  "record " + std::to_string(n) + " of file 0x18");
    p.records.push_back(*r);
  }
  if (!p.records.empty())
    p.next_offline_counter = static_cast<std::uint16_t>(p.records.front().counter + 1);
  return p;
}

Status read_iso_dep(NfcReader& reader, const ReadOptions& options, CardReading& out) {
  NfcCardLink link(reader);
  for (protocol::Family family : {protocol::Family::kJtt978, protocol::Family::kCjt166}) {
    Result<bool> selected = select_application(link, family);
    if (!selected) return selected.status();
    if (!*selected) continue;
    Result<PurseReading> purse = read_purse(link, family, options.records_max);
    if (!purse) return purse.status();
    out.purse = *std::move(purse);
    return Status::ok();
  }
  return Status::ok();  // a CPU card, but not one of ours: the reading says which card it was
}

Status read_m1(NfcReader& reader, const ReadOptions& options, CardReading& out) {
  MifareClassicSession m1(reader);
  for (std::size_t s = 0; s < options.m1_sectors; ++s) {
    M1SectorReading sector;
    sector.sector = static_cast<std::uint8_t>(s);
    const auto first = static_cast<std::uint8_t>(s * kSectorBlocks);
    for (MifareKeyType type : {MifareKeyType::kA, MifareKeyType::kB}) {
      std::vector<MifareKey> keys;
      if (options.m1_master) {
        keys.push_back(protocol::m1::sector_key(
            *options.m1_master, NfcM1Link(reader).uid(), sector.sector,
            type == MifareKeyType::kA ? protocol::m1::KeyType::kA : protocol::m1::KeyType::kB));
      }
      keys.insert(keys.end(), options.m1_keys.begin(), options.m1_keys.end());
      for (const MifareKey& key : keys) {
        Status auth = m1.authenticate(first, type, key);
        if (auth.code() == Errc::kRejected) continue;
        if (!auth) return auth;
        sector.key_type = type;
        sector.key = key;
        break;
      }
      if (sector.key_type) break;
    }
    if (sector.key_type) {
      for (std::size_t b = 0; b < kSectorBlocks; ++b) {
        Result<MifareBlock> block = m1.read_block(static_cast<std::uint8_t>(first + b));
        if (!block) return block.status();
        sector.blocks.push_back(*block);
      }
    }
    out.sectors.push_back(std::move(sector));
  }
  return Status::ok();
}

}  // namespace

Result<std::vector<ReaderListing>> list(const ListOptions& options) {
  Result<std::unique_ptr<NfcContext>> ctx = NfcContext::create();
  if (!ctx) return ctx.status();
  std::vector<std::string> connstrings = options.connstrings;
  if (connstrings.empty()) connstrings = (*ctx)->list_readers(options.readers_max);
  std::vector<ReaderListing> out;
  for (const std::string& cs : connstrings) {
    ReaderListing entry;
    entry.connstring = cs;
    Result<std::unique_ptr<NfcReader>> reader = (*ctx)->open(cs);
    if (!reader) {
      entry.status = reader.status();
      out.push_back(std::move(entry));
      continue;
    }
    entry.name = (*reader)->name();
    entry.status = (*reader)->start_initiator();
    if (entry.status) {
      Result<std::vector<CardIdentity>> cards = (*reader)->list_cards(options.cards_max);
      if (cards) {
        entry.cards = *std::move(cards);
      } else {
        entry.status = cards.status();
      }
    }
    out.push_back(std::move(entry));
  }
  return out;
}

std::vector<MifareKey> default_m1_keys() {
  return {
      {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},  // transport key
      {0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5},  // MAD key A
      {0xD3, 0xF7, 0xD3, 0xF7, 0xD3, 0xF7},  // NDEF key A
      {0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
  };
}

Result<CardReading> read(const ReadOptions& options) {
  Result<std::unique_ptr<NfcContext>> ctx = NfcContext::create();
  if (!ctx) return ctx.status();
  Result<std::unique_ptr<NfcReader>> opened = open_reader(**ctx, options.connstring);
  if (!opened) return opened.status();
  NfcReader& reader = **opened;
  reader.set_exchange_timeout_ms(options.exchange_timeout_ms);
  if (Status s = reader.start_initiator(); !s) return s;

  Result<CardIdentity> card = reader.select_card(options.uid);
  if (!card && card.status().code() == Errc::kNotFound && options.wait_ms > 0) {
    card = reader.poll_card(options.wait_ms);
    if (card && !options.uid.empty() && card->uid != options.uid) {
      return Result<CardReading>(Errc::kNotFound, "another card came: " + card->to_string());
    }
  }
  if (!card) return card.status();

  CardReading out;
  out.reader = reader.connstring();
  out.card = *card;
  const Status s =
      card->iso_dep() ? read_iso_dep(reader, options, out) : read_m1(reader, options, out);
  if (!s) return s;
  return out;
}

Result<EmulationReport> emulate(const EmulateOptions& options, const ApduHandler& card,
                                std::stop_token stop) {
  Result<std::unique_ptr<NfcContext>> ctx = NfcContext::create();
  if (!ctx) return ctx.status();
  Result<std::unique_ptr<NfcReader>> reader = open_reader(**ctx, options.connstring);
  if (!reader) return reader.status();
  CardEmulator emulator(**reader);
  std::stop_callback on_stop(stop, [&emulator] { emulator.stop(); });
  return emulator.run(card, options.emulation);
}

Status serve_soft_pn532(const ServeOptions& options, std::stop_token stop) {
  Result<std::unique_ptr<SoftPn532>> started = SoftPn532::start(options.pn532);
  if (!started) return started.status();
  SoftPn532& pn532 = **started;
  Pn532Control control(pn532);
  for (const std::string& line : options.initial_commands) {
    const std::string reply = control.execute(line);
    if (reply.rfind("err", 0) == 0) {
      return Status(Errc::kInvalidArgument, "'" + line + "': " + reply.substr(0, reply.size() - 1));
    }
  }
  std::unique_ptr<ControlServer> server;
  if (!options.control_socket.empty()) {
    Result<std::unique_ptr<ControlServer>> s =
        ControlServer::start(control, options.control_socket);
    if (!s) return s.status();
    server = std::move(s).value();
  }
  if (options.on_ready) options.on_ready(pn532.connstring());

  std::string line;
  while (!stop.stop_requested() && !control.quit_requested()) {
    if (!options.control_stdin) {
      std::mutex mu;
      std::condition_variable_any cv;
      std::unique_lock lock(mu);
      cv.wait_for(lock, stop, kServeCheck, [] { return false; });
      continue;
    }
    pollfd in{STDIN_FILENO, POLLIN, 0};
    const int r = ::poll(&in, 1, static_cast<int>(kServeCheck.count()));
    if (r <= 0) continue;
    char buf[256];
    const ssize_t n = ::read(STDIN_FILENO, buf, sizeof(buf));
    if (n <= 0) break;  // stdin closed: the operator is gone
    line.append(buf, static_cast<std::size_t>(n));
    std::size_t eol;
    while ((eol = line.find('\n')) != std::string::npos) {
      std::cout << control.execute(std::string_view(line).substr(0, eol)) << std::flush;
      line.erase(0, eol + 1);
    }
    if (line.size() > Pn532Control::kLineBytesMax) {
      std::cout << "err too_large: line over 1024 bytes\n" << std::flush;
      line.clear();
    }
  }
  if (server) server->stop();
  pn532.stop();
  return Status::ok();
}

}  // namespace citycard::hil::tools
