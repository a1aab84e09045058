#include "citycard/hil/nfc.h"

#include <nfc/nfc.h>

#include "citycard/protocol/mifare.h"

#include <algorithm>
#include <chrono>
#include <cstring>

namespace citycard::hil {

namespace {

constexpr nfc_modulation kIso14443a{NMT_ISO14443A, NBR_106};
// stop(): how often, and how far apart, libnfc's abort is tried while run() is inside libnfc.
constexpr int kAbortAttempts = 50;
constexpr std::chrono::milliseconds kAbortRetry{100};
// TgSetData is answered by the chip at once; this bounds a chip that hangs.
constexpr int kTargetSendTimeoutMs = 1000;
// InAutoPoll as libnfc issues it for ISO 14443-A polls two target types (ISO-DEP, MIFARE)
// per round; one round takes period x 150 ms per type.
constexpr int kPollRoundMs = 2 * 150;

CardIdentity identity_of(const nfc_target& nt) {
  const nfc_iso14443a_info& a = nt.nti.nai;
  // libnfc's structs are packed: copy the size fields out rather than bind references to them.
  const std::size_t uid_len = a.szUidLen;
  const std::size_t ats_len = a.szAtsLen;
  CardIdentity id;
  id.uid.assign(a.abtUid, a.abtUid + std::min(uid_len, sizeof(a.abtUid)));
  id.atqa = {a.abtAtqa[0], a.abtAtqa[1]};
  id.sak = a.btSak;
  id.ats.assign(a.abtAts, a.abtAts + std::min(ats_len, sizeof(a.abtAts)));
  return id;
}

const char* libnfc_error_name(int code) {
  switch (code) {
    case NFC_EIO:
      return "input/output error (NFC_EIO)";
    case NFC_EINVARG:
      return "invalid argument (NFC_EINVARG)";
    case NFC_EDEVNOTSUPP:
      return "operation not supported by the reader (NFC_EDEVNOTSUPP)";
    case NFC_ENOTSUCHDEV:
      return "no such reader (NFC_ENOTSUCHDEV)";
    case NFC_EOVFLOW:
      return "buffer overflow (NFC_EOVFLOW)";
    case NFC_ETIMEOUT:
      return "the reader did not answer in time (NFC_ETIMEOUT)";
    case NFC_EOPABORTED:
      return "operation aborted (NFC_EOPABORTED)";
    case NFC_ENOTIMPL:
      return "not implemented by the reader (NFC_ENOTIMPL)";
    case NFC_ETGRELEASED:
      return "target released (NFC_ETGRELEASED)";
    case NFC_ERFTRANS:
      return "no answer from the card over RF (NFC_ERFTRANS)";
    case NFC_EMFCAUTHFAIL:
      return "MIFARE authentication refused (NFC_EMFCAUTHFAIL)";
    case NFC_ESOFT:
      return "libnfc software error (NFC_ESOFT)";
    case NFC_ECHIP:
      return "the reader's chip reported an error (NFC_ECHIP)";
    default:
      return "unknown libnfc error";
  }
}

Errc errc_of(int code) {
  switch (code) {
    case NFC_ETIMEOUT:
      return Errc::kTimeout;
    case NFC_ERFTRANS:
    case NFC_ETGRELEASED:
      return Errc::kTorn;
    case NFC_EIO:
    case NFC_ENOTSUCHDEV:
    case NFC_EOPABORTED:
    case NFC_EDEVNOTSUPP:
    case NFC_ENOTIMPL:
      return Errc::kUnavailable;
    case NFC_EMFCAUTHFAIL:
      return Errc::kRejected;
    case NFC_EINVARG:
      return Errc::kInvalidArgument;
    case NFC_EOVFLOW:
      return Errc::kTooLarge;
    case NFC_ECHIP:
      return Errc::kIo;
    default:
      return Errc::kInternal;
  }
}

}  // namespace

const char* libnfc_version() {
  return nfc_version();
}

Status status_from_libnfc(int code, std::string_view what) {
  return Status(errc_of(code), std::string(what) + ": " + libnfc_error_name(code));
}

// ---- NfcContext ----

Result<std::unique_ptr<NfcContext>> NfcContext::create() {
  nfc_context* ctx = nullptr;
  nfc_init(&ctx);
  if (!ctx) return Result<std::unique_ptr<NfcContext>>(Errc::kUnavailable, "nfc_init failed");
  return std::unique_ptr<NfcContext>(new NfcContext(ctx));
}

NfcContext::~NfcContext() {
  nfc_exit(ctx_);
}

std::vector<std::string> NfcContext::list_readers(std::size_t max_readers) {
  std::vector<nfc_connstring> found(max_readers);
  const std::size_t n = nfc_list_devices(ctx_, found.data(), found.size());
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n; ++i) out.emplace_back(found[i]);
  return out;
}

Result<std::unique_ptr<NfcReader>> NfcContext::open(const std::string& connstring) {
  if (connstring.size() >= sizeof(nfc_connstring)) {
    return Result<std::unique_ptr<NfcReader>>(Errc::kInvalidArgument,
                                              "connstring too long: " + connstring);
  }
  nfc_device* dev = nfc_open(ctx_, connstring.c_str());
  if (!dev) {
    return Result<std::unique_ptr<NfcReader>>(
        Errc::kUnavailable, "no NFC reader answers at '" + connstring +
                                "' (is it plugged in, and is the connstring right? "
                                "e.g. pn532_uart:/dev/ttyUSB0)");
  }
  return std::unique_ptr<NfcReader>(new NfcReader(dev, connstring));
}

// ---- NfcReader ----

NfcReader::~NfcReader() {
  nfc_close(dev_);
}

std::string NfcReader::name() const {
  return nfc_device_get_name(dev_);
}

Status NfcReader::start_initiator() {
  selected_.reset();
  if (int rc = nfc_initiator_init(dev_); rc < 0)
    return status_from_libnfc(rc, "nfc_initiator_init");
  // libnfc's initiator default waits for a card forever; a terminal polls instead.
  if (int rc = nfc_device_set_property_bool(dev_, NP_INFINITE_SELECT, false); rc < 0) {
    return status_from_libnfc(rc, "disable infinite select");
  }
  return Status::ok();
}

Result<std::vector<CardIdentity>> NfcReader::list_cards(std::size_t max_cards) {
  std::vector<nfc_target> targets(std::max<std::size_t>(1, max_cards));
  const int n =
      nfc_initiator_list_passive_targets(dev_, kIso14443a, targets.data(), targets.size());
  selected_.reset();
  if (n < 0) return status_from_libnfc(n, "list ISO 14443-A cards");
  std::vector<CardIdentity> out;
  for (int i = 0; i < n; ++i) out.push_back(identity_of(targets[static_cast<std::size_t>(i)]));
  return out;
}

Result<CardIdentity> NfcReader::select_card(ByteView uid) {
  nfc_target nt{};
  selected_.reset();
  const int n = nfc_initiator_select_passive_target(
      dev_, kIso14443a, uid.empty() ? nullptr : uid.data(), uid.size(), &nt);
  if (n < 0) return status_from_libnfc(n, "select an ISO 14443-A card");
  if (n == 0) {
    return Result<CardIdentity>(
        Errc::kNotFound,
        uid.empty() ? "no card in the field" : "card " + to_hex(uid) + " is not in the field");
  }
  selected_ = identity_of(nt);
  return *selected_;
}

Result<CardIdentity> NfcReader::poll_card(int timeout_ms) {
  nfc_target nt{};
  selected_.reset();
  // Poll rounds of kPollRoundMs; 0xFF would mean forever, so at most 254.
  const int rounds = std::clamp(timeout_ms / kPollRoundMs, 1, 254);
  const int n =
      nfc_initiator_poll_target(dev_, &kIso14443a, 1, static_cast<std::uint8_t>(rounds), 1, &nt);
  if (n < 0) return status_from_libnfc(n, "poll for an ISO 14443-A card");
  if (n == 0) return Result<CardIdentity>(Errc::kNotFound, "no card came within the poll");
  selected_ = identity_of(nt);
  return *selected_;
}

Status NfcReader::deselect_card() {
  selected_.reset();
  if (int rc = nfc_initiator_deselect_target(dev_); rc < 0) {
    return status_from_libnfc(rc, "deselect the card");
  }
  return Status::ok();
}

bool NfcReader::card_present() {
  return selected_ && nfc_initiator_target_is_present(dev_, nullptr) == 0;
}

Result<Bytes> NfcReader::transceive(ByteView frame) {
  if (!selected_) return Result<Bytes>(Errc::kInvalidArgument, "no card selected");
  std::array<std::uint8_t, kAnswerBytesMax> rx{};
  const int n = nfc_initiator_transceive_bytes(dev_, frame.data(), frame.size(), rx.data(),
                                               rx.size(), exchange_timeout_ms_);
  if (n < 0) return status_from_libnfc(n, "exchange with card " + to_hex(selected_->uid));
  return Bytes(rx.begin(), rx.begin() + n);
}

// ---- NfcCardLink ----

Result<protocol::Response> NfcCardLink::transceive(const protocol::Command& command) {
  const std::int64_t start_us = clock_.now_us();
  Result<Bytes> answer = reader_.transceive(command.encode());
  const std::int64_t duration_us = clock_.now_us() - start_us;
  elapsed_us_ += duration_us;
  if (!answer) {
    return Status(answer.status().code(), command.to_string() + ": " + answer.status().message());
  }
  Result<protocol::Response> response = protocol::Response::parse(*answer);
  if (!response) return response;
  ++exchanges_;
  if (trace_) trace_(command, *response, duration_us);
  return response;
}

// ---- NfcM1Link ----

protocol::m1::Uid4 NfcM1Link::uid() const {
  protocol::m1::Uid4 u{};
  if (!reader_.selected() || reader_.selected()->uid.size() < u.size()) return u;
  const Bytes& uid = reader_.selected()->uid;
  std::copy(uid.end() - static_cast<std::ptrdiff_t>(u.size()), uid.end(), u.begin());
  return u;
}

Result<Bytes> NfcM1Link::transceive(ByteView command) {
  const std::int64_t start_us = clock_.now_us();
  Result<Bytes> r = reader_.transceive(command);
  Bytes answer;
  if (r) {
    answer.reserve(1 + r->size());
    answer.push_back(protocol::m1::status::kOk);
    put_bytes(answer, *r);
  } else if (r.status().code() == Errc::kRejected) {  // NFC_EMFCAUTHFAIL
    answer = {protocol::m1::status::kMifareError};
  } else if (r.status().code() == Errc::kTorn && reader_.card_present()) {
    answer = {protocol::m1::status::kTimeout};  // a NAK, or a halted card's silence
  }
  const std::int64_t duration_us = clock_.now_us() - start_us;
  elapsed_us_ += duration_us;
  if (answer.empty()) return r.status();
  ++exchanges_;
  if (trace_) trace_(command, answer, duration_us);
  return answer;
}

// ---- MifareClassicSession ----

Status MifareClassicSession::command(ByteView frame, const char* what, Bytes* answer) {
  Result<Bytes> r = reader_.transceive(frame);
  if (r) {
    if (answer) *answer = *std::move(r);
    return Status::ok();
  }
  if (r.status().code() != Errc::kTorn) return r.status();
  // Through the PN532 a NAK looks like silence (status 01). Tell them apart by asking whether
  // the card is still there; the check re-selects it, which a NAK requires anyway.
  if (reader_.card_present())
    return Status(Errc::kRejected, std::string(what) + ": the card refused");
  return r.status();
}

Status MifareClassicSession::authenticate(std::uint8_t block, MifareKeyType type,
                                          const MifareKey& key) {
  if (!reader_.selected() || reader_.selected()->uid.size() < 4) {
    return Status(Errc::kInvalidArgument, "no MIFARE card selected");
  }
  const Bytes uid = reader_.selected()->uid;
  Bytes frame{static_cast<std::uint8_t>(type), block};
  put_bytes(frame, key);
  put_bytes(frame, ByteView(uid).subspan(uid.size() - 4));  // libnfc's mifare.c: last 4 bytes
  Result<Bytes> r = reader_.transceive(frame);
  if (r) return Status::ok();
  if (r.status().code() != Errc::kRejected) return r.status();
  // The card halts on a refused AUTH: select it again so another key can be tried.
  if (Result<CardIdentity> again = reader_.select_card(uid); !again) return again.status();
  return Status(Errc::kRejected, "block " + std::to_string(block) + ": key " +
                                     (type == MifareKeyType::kA ? "A" : "B") + " refused");
}

Result<MifareBlock> MifareClassicSession::read_block(std::uint8_t block) {
  Bytes answer;
  const Bytes frame{0x30, block};
  if (Status s = command(frame, "READ", &answer); !s) return s;
  if (answer.size() != 16) {
    return Result<MifareBlock>(Errc::kMalformed, "READ of block " + std::to_string(block) +
                                                     " gave " + std::to_string(answer.size()) +
                                                     " bytes");
  }
  MifareBlock b{};
  std::copy(answer.begin(), answer.end(), b.begin());
  return b;
}

Status MifareClassicSession::write_block(std::uint8_t block, const MifareBlock& data) {
  Bytes frame{0xA0, block};
  put_bytes(frame, data);
  return command(frame, "WRITE");
}

namespace {
Bytes value_command(std::uint8_t op, std::uint8_t block, std::uint32_t value) {
  Bytes frame{op, block};
  for (int i = 0; i < 4; ++i) frame.push_back(static_cast<std::uint8_t>(value >> (8 * i)));  // LE
  return frame;
}
}  // namespace

Status MifareClassicSession::increment(std::uint8_t block, std::uint32_t value) {
  return command(value_command(0xC1, block, value), "INCREMENT");
}
Status MifareClassicSession::decrement(std::uint8_t block, std::uint32_t value) {
  return command(value_command(0xC0, block, value), "DECREMENT");
}
Status MifareClassicSession::restore(std::uint8_t block) {
  return command(value_command(0xC2, block, 0), "RESTORE");
}
Status MifareClassicSession::transfer(std::uint8_t block) {
  const Bytes frame{0xB0, block};
  return command(frame, "TRANSFER");
}

// ---- CardEmulator ----

bool CardEmulator::enter_libnfc() {
  std::lock_guard lock(mu_);
  if (stop_.load()) return false;
  in_libnfc_ = true;
  return true;
}

void CardEmulator::leave_libnfc() {
  {
    std::lock_guard lock(mu_);
    in_libnfc_ = false;
  }
  cv_.notify_all();
}

void CardEmulator::stop() {
  std::unique_lock lock(mu_);
  stop_.store(true);
  // An abort only reaches a receive that is already waiting; one that starts just after is
  // missed, so abort again until run() has come out of libnfc.
  for (int i = 0; i < kAbortAttempts && in_libnfc_; ++i) {
    nfc_abort_command(reader_.dev_);
    cv_.wait_for(lock, kAbortRetry, [&] { return !in_libnfc_; });
  }
}

Result<EmulationReport> CardEmulator::run(const ApduHandler& card,
                                          const EmulationOptions& options) {
  nfc_target nt{};
  nt.nm = {NMT_ISO14443A, NBR_UNDEFINED};
  nfc_iso14443a_info& a = nt.nti.nai;
  a.abtAtqa[0] = options.atqa[0];
  a.abtAtqa[1] = options.atqa[1];
  a.btSak = kSakIsoDep;
  a.szUidLen = 4;
  a.abtUid[0] = 0x08;
  std::copy(options.uid_tail.begin(), options.uid_tail.end(), a.abtUid + 1);
  // An ATS (without TL) for libnfc to take the historical bytes from: T0 says TA TB TC follow.
  const std::size_t hist = std::min(options.historical_bytes.size(), sizeof(a.abtAts) - 4);
  const std::uint8_t ats_head[] = {0x78, 0x80, 0x70, 0x02};
  std::copy(std::begin(ats_head), std::end(ats_head), a.abtAts);
  std::copy_n(options.historical_bytes.begin(), hist, a.abtAts + 4);
  a.szAtsLen = 4 + hist;

  EmulationReport report;
  std::array<std::uint8_t, NfcReader::kAnswerBytesMax> rx{};
  auto stopped_or = [&](int rc, const char* what) -> Result<EmulationReport> {
    if (stop_.load()) {
      report.stopped = true;
      return report;
    }
    return status_from_libnfc(rc, what);
  };
  reader_.selected_.reset();
  while (options.sessions_max == 0 || report.sessions < options.sessions_max) {
    if (!enter_libnfc()) return stopped_or(NFC_EOPABORTED, "wait for a terminal");
    nfc_target init = nt;  // libnfc updates it with the activated bit rate
    const int rc =
        nfc_target_init(reader_.dev_, &init, rx.data(), rx.size(), options.activation_timeout_ms);
    leave_libnfc();
    if (rc < 0) return stopped_or(rc, "wait for a terminal (TgInitAsTarget)");
    while (true) {
      if (report.apdus >= options.apdus_max) return report;
      if (!enter_libnfc()) return stopped_or(NFC_EOPABORTED, "wait for a C-APDU");
      const int n =
          nfc_target_receive_bytes(reader_.dev_, rx.data(), rx.size(), options.apdu_timeout_ms);
      leave_libnfc();
      if (n == NFC_ETGRELEASED) break;  // the terminal released the card: session over
      if (n < 0) return stopped_or(n, "receive a C-APDU (TgGetData)");
      const Bytes rapdu = card(ByteView(rx.data(), static_cast<std::size_t>(n)));
      ++report.apdus;
      if (rapdu.empty() || rapdu.size() > NfcReader::kAnswerBytesMax - 1) {
        return Result<EmulationReport>(
            Errc::kInvalidArgument, "the card answered " + std::to_string(rapdu.size()) + " bytes");
      }
      if (!enter_libnfc()) return stopped_or(NFC_EOPABORTED, "send an R-APDU");
      const int sent =
          nfc_target_send_bytes(reader_.dev_, rapdu.data(), rapdu.size(), kTargetSendTimeoutMs);
      leave_libnfc();
      if (sent == NFC_ETGRELEASED) break;
      if (sent < 0) return stopped_or(sent, "send an R-APDU (TgSetData)");
    }
    ++report.sessions;
  }
  return report;
}

}  // namespace citycard::hil
