// `citycard nfc ...`: parses arguments, calls hil::tools, prints.
#include "citycard/scenarios/cli_nfc.h"

#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <stop_token>
#include <thread>

#include <boost/program_options.hpp>

#include "citycard/devices/card_profile.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/hil/nfc_tools.h"
#include "citycard/hil/pn532_control.h"
#include "citycard/protocol/bytes.h"
#include "citycard/protocol/personalisation.h"
#include "signal_stop.h"

namespace citycard::scenarios {
namespace {

namespace po = boost::program_options;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

constexpr const char* kNfcUsage = R"(usage: citycard nfc <list|read|emulate|pn532> [options]
  list                    readers libnfc sees and the cards in each one's field
  read                    a card: purse (balance, counters, last records) or M1 sectors
  emulate --card PROFILE  serve a simulated CPU purse card through a PN532 in target mode
  pn532 --pty PATH        run the software PN532 on a pty linked at PATH
`citycard nfc <sub> --help` shows its options. emulate and pn532 run until SIGINT/SIGTERM.
)";

// Parses argv; on --help prints and returns 0 through `exit`, on an error prints and returns 2.
bool parse(const std::string& name, const std::vector<std::string>& args,
           const po::options_description& opts, po::variables_map& vm, int& exit) {
  try {
    po::store(po::command_line_parser(args).options(opts).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "citycard nfc " << name << ": " << e.what() << "\n" << opts;
    exit = kExitUsage;
    return false;
  }
  if (vm.count("help")) {
    std::cout << opts;
    exit = kExitOk;
    return false;
  }
  return true;
}

template <std::size_t N>
bool parse_key(const std::string& text, std::array<std::uint8_t, N>& out) {
  if (text.size() != 2 * N) return false;
  for (char c : text) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  out = array_from_hex<N>(text);
  return true;
}

bool parse_hex_bytes(const std::string& text, Bytes& out) {
  if (text.size() % 2 != 0) return false;
  for (char c : text) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  out = from_hex(text);
  return true;
}

std::string bcd_date(const std::array<std::uint8_t, 4>& d) {
  const std::string h = to_hex(d);
  return h.substr(0, 4) + "-" + h.substr(4, 2) + "-" + h.substr(6, 2);
}

std::string yuan(std::uint32_t fen) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%u.%02u", fen / 100, fen % 100);
  return buf;
}

int cmd_list(const std::vector<std::string>& args) {
  po::options_description opts("citycard nfc list [options]");
  std::vector<std::string> devices;
  opts.add_options()("help,h", "this help")(
      "device,d", po::value(&devices),
      "a connstring to list (repeatable); default: what libnfc "
      "finds (LIBNFC_DEVICE, scans)");
  po::variables_map vm;
  int exit = 0;
  if (!parse("list", args, opts, vm, exit)) return exit;
  hil::tools::ListOptions lo;
  lo.connstrings = devices;
  auto readers = hil::tools::list(lo);
  if (!readers) {
    std::cerr << "citycard nfc list: " << readers.status().to_string() << "\n";
    return kExitFailed;
  }
  std::printf("libnfc %s: %zu reader(s)\n", hil::libnfc_version(), readers->size());
  for (const auto& r : *readers) {
    if (!r.status) {
      std::printf("  %s  unavailable: %s\n", r.connstring.c_str(), r.status.to_string().c_str());
      continue;
    }
    std::printf("  %s  %s: %zu card(s)\n", r.connstring.c_str(), r.name.c_str(), r.cards.size());
    for (const auto& c : r.cards) std::printf("    %s\n", c.to_string().c_str());
  }
  if (readers->empty()) {
    std::printf(
        "  (none found; give one with --device pn532_uart:/dev/ttyUSB0 or LIBNFC_DEVICE)\n");
  }
  return kExitOk;
}

int cmd_read(const std::vector<std::string>& args) {
  po::options_description opts("citycard nfc read [options]");
  std::string device, uid, master;
  std::vector<std::string> keys;
  int wait_ms = 0;
  std::size_t records = 10, sectors = 16;
  opts.add_options()("help,h", "this help")(
      "device,d", po::value(&device), "the reader's connstring; default: the first libnfc finds")(
      "uid", po::value(&uid), "read this card (hex UID); default: the first that answers")(
      "wait-ms", po::value(&wait_ms), "wait this long for a card to come (default 0)")(
      "key", po::value(&keys),
      "an M1 key to try (12 hex digits, repeatable); default: the "
      "transport and well-known keys")("m1-master", po::value(&master),
                                       "M1 master key (32 hex digits): each sector's derived "
                                       "keys are tried first")(
      "demo-keys", "use the harness's demo M1 master key (cards the harness issued)")(
      "records", po::value(&records), "log records to read (default 10)")(
      "sectors", po::value(&sectors), "M1 sectors to read (default 16)");
  po::variables_map vm;
  int exit = 0;
  if (!parse("read", args, opts, vm, exit)) return exit;
  hil::tools::ReadOptions ro;
  ro.connstring = device;
  ro.wait_ms = wait_ms;
  ro.records_max = records;
  ro.m1_sectors = sectors;
  if (!uid.empty() && (!parse_hex_bytes(uid, ro.uid) ||
                       (ro.uid.size() != 4 && ro.uid.size() != 7 && ro.uid.size() != 10))) {
    std::cerr << "citycard nfc read: --uid takes 4, 7 or 10 bytes of hex, not '" << uid << "'\n";
    return kExitUsage;
  }
  if (!keys.empty()) {
    ro.m1_keys.clear();
    for (const auto& k : keys) {
      hil::MifareKey key{};
      if (!parse_key(k, key)) {
        std::cerr << "citycard nfc read: --key takes 12 hex digits, not '" << k << "'\n";
        return kExitUsage;
      }
      ro.m1_keys.push_back(key);
    }
  }
  if (!master.empty()) {
    protocol::crypto::Key16 k{};
    if (!parse_key(master, k)) {
      std::cerr << "citycard nfc read: --m1-master takes 32 hex digits\n";
      return kExitUsage;
    }
    ro.m1_master = k;
  } else if (vm.count("demo-keys")) {
    ro.m1_master = hil::demo_issuer_keys().m1;
  }
  auto r = hil::tools::read(ro);
  if (!r) {
    std::cerr << "citycard nfc read: " << r.status().to_string() << "\n";
    return kExitFailed;
  }
  std::printf("reader %s\ncard   %s\n", r->reader.c_str(), r->card.to_string().c_str());
  if (r->purse) {
    const auto& p = *r->purse;
    std::printf("purse  %s  balance %u fen (%s yuan)\n", protocol::family_name(p.family),
                p.balance_fen, yuan(p.balance_fen).c_str());
    std::printf("       application serial %s  issuer data %s  valid %s .. %s\n",
                to_hex(p.application_serial).c_str(), to_hex(p.issuer_data).c_str(),
                bcd_date(p.valid_from).c_str(), bcd_date(p.valid_to).c_str());
    if (p.next_offline_counter) {
      std::printf("       next offline counter %u\n", unsigned{*p.next_offline_counter});
    } else {
      std::printf("       next offline counter 0 (no purchase yet)\n");
    }
    std::printf("records %zu (newest first)\n", p.records.size());
    for (const auto& rec : p.records) {
      std::printf("  #%-5u type %02x amount %u fen  overdraft %u  terminal %s  at %s\n",
                  unsigned{rec.counter}, unsigned{rec.type}, rec.amount_fen, rec.overdraft_fen,
                  to_hex(rec.terminal).c_str(), to_hex(rec.datetime).c_str());
    }
  } else if (r->sectors.empty()) {
    std::printf("no purse application (JT/T 978 or CJ/T 166) on this card\n");
  }
  for (const auto& s : r->sectors) {
    if (!s.key_type) {
      std::printf("sector %2u  (no given key opens it)\n", unsigned{s.sector});
      continue;
    }
    std::printf("sector %2u  key %c %s\n", unsigned{s.sector},
                *s.key_type == hil::MifareKeyType::kA ? 'A' : 'B', to_hex(s.key).c_str());
    for (std::size_t b = 0; b < s.blocks.size(); ++b) {
      std::printf("  block %2zu  %s\n", s.sector * 4 + b, to_hex(s.blocks[b]).c_str());
    }
  }
  return kExitOk;
}

// The card a profile name stands for, issued with the demo keys.
bool make_card(const std::string& profile, std::uint64_t serial, std::uint32_t balance,
               std::unique_ptr<devices::CpuCard>& card) {
  protocol::CardImage image = hil::demo_card_image(serial, balance);
  const devices::CardProfile* p = nullptr;
  if (profile == "jtt978") {
    p = &devices::CardProfile::jtt978();
  } else if (profile == "jtt978-slow") {
    p = &devices::CardProfile::slow(protocol::Family::kJtt978);
  } else if (profile == "cjt166" || profile == "cjt166-slow") {
    image.family = protocol::Family::kCjt166;
    p = profile == "cjt166" ? &devices::CardProfile::cjt166()
                            : &devices::CardProfile::slow(protocol::Family::kCjt166);
  } else {
    return false;
  }
  card = std::make_unique<devices::CpuCard>(image, sim::Rng(serial).fork("card"), *p);
  return true;
}

int cmd_emulate(const std::vector<std::string>& args) {
  po::options_description opts("citycard nfc emulate --card PROFILE [options]");
  std::string device, profile, uid_tail;
  std::uint64_t serial = 1;
  std::uint32_t balance = 10'000, sessions = 0;
  opts.add_options()("help,h", "this help")(
      "card", po::value(&profile), "jtt978 | cjt166 | jtt978-slow | cjt166-slow (demo keys)")(
      "device,d", po::value(&device), "the PN532's connstring; default: the first libnfc finds")(
      "serial", po::value(&serial), "the card's serial number (default 1)")(
      "balance", po::value(&balance), "the purse balance in fen (default 10000)")(
      "uid-tail", po::value(&uid_tail),
      "UID bytes 1..3 (6 hex digits; the PN532 fixes byte 0 "
      "to 08)")("sessions", po::value(&sessions),
                "end after this many terminal sessions (default 0: "
                "until SIGINT/SIGTERM)");
  po::variables_map vm;
  int exit = 0;
  if (!parse("emulate", args, opts, vm, exit)) return exit;
  std::unique_ptr<devices::CpuCard> card;
  if (profile.empty() || !make_card(profile, serial, balance, card)) {
    std::cerr << "citycard nfc emulate: --card takes jtt978, cjt166, jtt978-slow or cjt166-slow"
              << (profile.empty() ? "" : ", not '" + profile + "'") << "\n";
    return kExitUsage;
  }
  hil::tools::EmulateOptions eo;
  eo.connstring = device;
  eo.emulation.sessions_max = sessions;
  if (!uid_tail.empty() && !parse_key(uid_tail, eo.emulation.uid_tail)) {
    std::cerr << "citycard nfc emulate: --uid-tail takes 6 hex digits\n";
    return kExitUsage;
  }
  SignalStop signals;
  std::printf("emulating a %s card, serial %llu, balance %u fen; SIGINT/SIGTERM ends\n",
              profile.c_str(), static_cast<unsigned long long>(serial), balance);
  std::fflush(stdout);
  auto report = hil::tools::emulate(
      eo, [&card](ByteView c) { return card->process(c); }, signals.token());
  if (!report) {
    std::cerr << "citycard nfc emulate: " << report.status().to_string() << "\n";
    return kExitFailed;
  }
  std::printf("emulation ended%s: %u session(s), %llu APDU(s), balance now %u fen\n",
              report->stopped ? " (stopped)" : "", report->sessions,
              static_cast<unsigned long long>(report->apdus), card->balance_fen());
  return kExitOk;
}

int cmd_pn532(const std::vector<std::string>& args) {
  po::options_description opts("citycard nfc pn532 --pty PATH [options]");
  std::string pty, control;
  std::vector<std::string> inserts;
  bool log = false;
  opts.add_options()("help,h", "this help")(
      "pty", po::value(&pty), "symlink to the pty, for tools: pn532_uart:PATH (no ':' in it)")(
      "control", po::value(&control), "a unix socket for control lines (see hil/README.md)")(
      "stdin", "read control lines on stdin too (replies on stdout)")(
      "insert", po::value(&inserts),
      "a control line run first, e.g. \"cpu 1 500\" for "
      "\"insert cpu 1 500\" (repeatable)")("log", po::bool_switch(&log),
                                           "log events to stderr (rate-limited)");
  po::variables_map vm;
  int exit = 0;
  if (!parse("pn532", args, opts, vm, exit)) return exit;
  if (pty.empty()) {
    std::cerr << "citycard nfc pn532: --pty PATH is required\n" << opts;
    return kExitUsage;
  }
  if (pty.find(':') != std::string::npos) {
    std::cerr << "citycard nfc pn532: --pty must not contain ':' (libnfc's separator)\n";
    return kExitUsage;
  }
  hil::tools::ServeOptions so;
  so.pn532.link_path = pty;
  so.control_socket = control;
  so.control_stdin = vm.count("stdin") > 0;
  for (const auto& i : inserts) so.initial_commands.push_back("insert " + i);
  if (log) {
    so.pn532.log_sink = [](std::string_view line) {
      std::fprintf(stderr, "pn532: %.*s\n", static_cast<int>(line.size()), line.data());
    };
  }
  so.on_ready = [](const std::string& connstring) {
    std::printf("pn532: serving %s\n", connstring.c_str());
    std::fflush(stdout);
  };
  SignalStop signals;
  Status s = hil::tools::serve_soft_pn532(so, signals.token());
  if (!s) {
    std::cerr << "citycard nfc pn532: " << s.to_string() << "\n";
    return kExitFailed;
  }
  std::printf("pn532: stopped\n");
  return kExitOk;
}

}  // namespace

int cmd_nfc(const std::vector<std::string>& args) {
  if (args.empty()) {
    std::cerr << kNfcUsage;
    return kExitUsage;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "list") return cmd_list(rest);
  if (args[0] == "read") return cmd_read(rest);
  if (args[0] == "emulate") return cmd_emulate(rest);
  if (args[0] == "pn532") return cmd_pn532(rest);
  if (args[0] == "--help" || args[0] == "-h") {
    std::cout << kNfcUsage;
    return kExitOk;
  }
  std::cerr << "citycard nfc: unknown subcommand '" << args[0] << "'\n" << kNfcUsage;
  return kExitUsage;
}

}  // namespace citycard::scenarios
