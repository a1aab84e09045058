#include "citycard/hil/bridge_terminal.h"

#include <memory>

#include "citycard/devices/fare_policy.h"
#include "citycard/devices/terminal_core.h"
#include "citycard/hil/bridge.h"
#include "citycard/protocol/apdu.h"
#include "citycard/protocol/purse.h"
#include "citycard/protocol/wire.h"

namespace citycard::hil {

namespace bp = citycard::bridge;

namespace {

constexpr const char* kDefectNames[kTerminalDefectCount] = {
    "skip_blacklist", "wrong_fare", "no_tear_recovery", "double_upload",
    "bad_mac",        "slow",       "ignore_params",    "no_offline"};

constexpr std::uint8_t kSfiLogP2 = (protocol::sfi::kLog << 3) | 0x04;

// The defects that live on the card link: a wrong MAC1 on CJ/T 166 cards, extra reads.
class DefectLink final : public devices::CardLink {
 public:
  DefectLink(devices::CardLink& inner, bool bad_mac) : inner_(inner), bad_mac_(bad_mac) {}
  Result<protocol::Response> transceive(const protocol::Command& command) override {
    if (command.ins == 0xA4 && command.p1 == 0x04) {
      cjt166_ = command.data == protocol::aid_for(protocol::Family::kCjt166);
    }
    if (bad_mac_ && cjt166_ && command.cla == 0x80 && command.ins == 0x54 &&
        command.data.size() == 15) {
      protocol::Command c = command;
      c.data[14] ^= 0x5A;  // MAC1 is the last 4 bytes
      return inner_.transceive(c);
    }
    return inner_.transceive(command);
  }

 private:
  devices::CardLink& inner_;
  bool bad_mac_;
  bool cjt166_ = false;
};

// double_upload: every upload batch is sent again under a new batch number.
class DefectChannel final : public sim::Channel {
 public:
  DefectChannel(sim::Channel& inner, bool twice) : inner_(inner), twice_(twice) {}
  void request(Bytes frame, ReplyFn on_reply) override {
    if (twice_) {
      auto env = protocol::wire::decode(frame);
      if (env && env->has_upload()) {
        citycard::wire::Envelope copy = *env;
        copy.mutable_upload()->set_batch_no(env->upload().batch_no() + 1'000'000);
        inner_.request(protocol::wire::encode(copy), [](Result<Bytes>) {});
      }
    }
    inner_.request(std::move(frame), std::move(on_reply));
  }

 private:
  sim::Channel& inner_;
  bool twice_;
};

struct Facts {
  protocol::Family family = protocol::Family::kJtt978;
  protocol::CardType card_type = protocol::CardType::kAdult;
  std::optional<protocol::LogRecord> last;
};

// What the fare depends on: the card type (0x16) and the newest purchase record (0x18).
Result<Facts> read_facts(devices::CardLink& card, bool slow) {
  Facts f;
  Result<protocol::Response> sel = card.transceive(
      {0x00, 0xA4, 0x04, 0x00, protocol::aid_for(protocol::Family::kJtt978), std::uint16_t{256}});
  if (sel && sel->sw == protocol::sw::kFileNotFound) {
    f.family = protocol::Family::kCjt166;
    sel = card.transceive(
        {0x00, 0xA4, 0x04, 0x00, protocol::aid_for(protocol::Family::kCjt166), std::uint16_t{256}});
  }
  if (!sel) return sel.status();
  if (!sel->ok())
    return Result<Facts>(Errc::kRejected, "SELECT answered " + std::to_string(sel->sw));
  Result<protocol::Response> holder =
      card.transceive({0x00,
                       0xB0,
                       static_cast<std::uint8_t>(0x80 | protocol::sfi::kHolder),
                       0x00,
                       {},
                       std::uint16_t{2}});
  if (!holder) return holder.status();
  if (holder->ok() && !holder->data.empty()) {
    f.card_type = static_cast<protocol::CardType>(holder->data[0] & 0x03);
  }
  const int reads = slow ? 10 : 1;
  for (int n = 1; n <= reads; ++n) {
    Result<protocol::Response> rec = card.transceive({0x00,
                                                      0xB2,
                                                      static_cast<std::uint8_t>(n),
                                                      kSfiLogP2,
                                                      {},
                                                      std::uint16_t{protocol::LogRecord::kSize}});
    if (!rec) return rec.status();
    if (n == 1 && rec->ok()) f.last = protocol::LogRecord::decode(rec->data);
  }
  return f;
}

devices::FarePolicy policy_from(const bp::Params& p) {
  devices::FarePolicy f;
  f.flat_fen = p.flat_fare_fen();
  f.transfer.window_s = p.transfer_window_s();
  f.transfer.discount_fen = p.transfer_discount_fen();
  for (int i = 0; i < p.card_type_discount_bp_size() && i < 4; ++i) {
    f.card_type_discount_bp[static_cast<std::size_t>(i)] = p.card_type_discount_bp(i);
  }
  return f;
}

const char* reason_of(const devices::TapResult& r) {
  if (!r.refusal) return "";
  switch (*r.refusal) {
    case devices::Refusal::kBlacklisted:
      return "blacklisted";
    case devices::Refusal::kCardExpired:
      return "expired";
    case devices::Refusal::kInsufficientBalance:
      return "insufficient_balance";
    case devices::Refusal::kTorn:
      return "torn";
    case devices::Refusal::kCardBlocked:
      return "blocked";
    default:
      return devices::refusal_name(*r.refusal);
  }
}

}  // namespace

const char* terminal_defect_name(TerminalDefect d) {
  return kDefectNames[static_cast<std::size_t>(d)];
}

std::optional<TerminalDefect> terminal_defect_from_name(std::string_view name) {
  for (std::size_t i = 0; i < kTerminalDefectCount; ++i) {
    if (name == kDefectNames[i]) return static_cast<TerminalDefect>(i);
  }
  return std::nullopt;
}

std::vector<TerminalDefect> all_terminal_defects() {
  std::vector<TerminalDefect> all;
  for (std::size_t i = 0; i < kTerminalDefectCount; ++i)
    all.push_back(static_cast<TerminalDefect>(i));
  return all;
}

Status run_bridge_terminal(const BridgeTerminalOptions& options, std::stop_token stop) {
  auto has = [&](TerminalDefect d) { return options.defects.count(d) > 0; };
  zmq::context_t ctx;
  BridgeClient client(ctx, options.endpoint, options.timeout_ms);
  bp::Hello hello;
  hello.set_version(kBridgeVersion);
  hello.set_terminal(options.name);
  hello.set_kind(options.kind);
  hello.set_vendor("citycard");
  Result<bp::Welcome> welcome = client.hello(hello);
  if (!welcome) return welcome.status();

  BridgePsamLink psam(client);
  BridgeChannel bridge_channel(client);
  DefectChannel channel(bridge_channel, has(TerminalDefect::kDoubleUpload));
  auto make_core = [&](std::uint64_t first_batch_no) {
    devices::UploadQueueOptions q;
    q.first_batch_no = first_batch_no;
    return std::make_unique<devices::TerminalCore>(psam, channel, q);
  };
  std::unique_ptr<devices::TerminalCore> core = make_core(1);
  devices::FarePolicy fare;
  std::set<protocol::Serial8> blacklist;
  std::uint64_t params_version = 0, blacklist_version = 0, done = 0;
  bool link_up = true;

  while (!stop.stop_requested()) {
    if (core->queue().size() > 0) {
      core->upload();
      link_up = core->queue().last_failure().code() != Errc::kUnavailable;
    }
    if (core->queue().size() == 0) link_up = true;  // nothing is failing to go
    bp::BridgeRequest req;
    bp::Poll* poll = req.mutable_poll();
    poll->set_wait_ms(static_cast<std::uint32_t>(options.poll_wait_ms));
    poll->set_queued_records(static_cast<std::uint32_t>(core->queue().size()));
    poll->set_done_session(done);
    poll->set_params_version(params_version);
    poll->set_blacklist_version(blacklist_version);
    Result<bp::BridgeReply> reply = client.call(std::move(req));
    if (!reply) {
      if (reply.status().code() == Errc::kUnavailable) continue;  // the harness is busy/away
      return reply.status();
    }
    const bp::PollReply& p = reply->poll();
    if (p.has_params() && (params_version == 0 || !has(TerminalDefect::kIgnoreParams))) {
      fare = policy_from(p.params());
      if (options.kind == "pos") {  // a shop: the keyed amount, no fare rules
        fare.transfer = {};
        fare.card_type_discount_bp = {};
      }
    }
    if (p.has_params()) params_version = p.params().version();
    if (p.has_blacklist()) {
      blacklist.clear();
      for (const std::string& s : p.blacklist().serials()) {
        protocol::Serial8 serial{};
        if (s.size() == serial.size()) {
          std::copy(s.begin(), s.end(), serial.begin());
          blacklist.insert(serial);
        }
      }
      blacklist_version = p.blacklist().version();
    }
    if (p.card_session() == 0 || p.card_session() == done) continue;

    // A card: read what the fare depends on, sell, upload, show the outcome.
    const std::uint64_t session = p.card_session();
    BridgeCardLink bridge_link(client, session);
    DefectLink link(bridge_link, has(TerminalDefect::kBadMac));
    bp::BridgeRequest out;
    bp::Outcome* outcome = out.mutable_outcome();
    outcome->set_card_session(session);
    if (has(TerminalDefect::kNoOffline) && !link_up) {
      outcome->set_reason("offline");
    } else if (Result<Facts> facts = read_facts(link, has(TerminalDefect::kSlow)); !facts) {
      outcome->set_reason(facts.status().code() == Errc::kTorn ? "torn" : "card_error");
    } else {
      devices::FareContext fc;
      fc.card_type =
          has(TerminalDefect::kWrongFare) ? protocol::CardType::kAdult : facts->card_type;
      fc.now_epoch2000_s = p.now_epoch2000_s();
      const bool ours = core->engine().is_open() && facts->last &&
                        facts->last->terminal == core->engine().terminal_id();
      if (facts->last && !ours &&
          (facts->last->type == protocol::txn::kPurchase ||
           facts->last->type == protocol::txn::kCappPurchase)) {
        fc.last_boarding_epoch2000_s = protocol::epoch2000_from_datetime(facts->last->datetime);
      }
      const devices::Fare quoted = devices::quote(fare, fc);
      if (has(TerminalDefect::kSkipBlacklist)) {
        core->engine().set_blacklist({});
      } else {
        core->engine().set_blacklist(
            [&blacklist](const protocol::Serial8& s) { return blacklist.count(s) > 0; });
      }
      devices::PurchaseRequest request;
      request.amount_fen = quoted.charged_fen;
      request.datetime = protocol::datetime_from_epoch2000(p.now_epoch2000_s());
      citycard::wire::SwipeRecord tmpl;
      tmpl.set_operator_id(welcome->operator_id());
      tmpl.set_route(welcome->route());
      tmpl.set_vehicle(welcome->vehicle());
      tmpl.set_device(welcome->device_id());
      tmpl.set_fare_full_fen(quoted.full_fen);
      tmpl.set_transfer_count(quoted.transfer ? 1 : 0);
      devices::TapResult r = core->sell(link, request, tmpl);
      if (r.ok()) {
        outcome->set_accepted(true);
        outcome->set_charged_fen(r.recovered ? 0 : r.record.amount_fen());
        outcome->set_reason(r.recovered ? "recovered" : "");
        core->upload();
        link_up = core->queue().last_failure().code() != Errc::kUnavailable;
      } else {
        outcome->set_reason(reason_of(r));
        if (*r.refusal == devices::Refusal::kTorn && has(TerminalDefect::kNoTearRecovery) &&
            core->queue().size() == 0) {
          core = make_core(core->queue().next_batch_no());  // the torn purchase is forgotten
        }
      }
    }
    done = session;
    (void)client.call(std::move(out));
  }
  return Status();
}

}  // namespace citycard::hil
