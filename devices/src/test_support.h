// Test-only helpers shared by the devices tests: a fixed issuer key set, card and PSAM images
// personalised from it, APDU shorthands, and a fake clearing centre that acknowledges batches.
#pragma once

#include <cstdint>
#include <deque>
#include <set>
#include <string_view>
#include <vector>

#include "citycard/protocol/apdu.h"
#include "citycard/protocol/bytes.h"
#include "citycard/protocol/mifare.h"
#include "citycard/protocol/personalisation.h"
#include "citycard/protocol/wire.h"
#include "citycard/sim/event_loop.h"
#include "citycard/sim/transport.h"

namespace citycard::devices::testing {

inline protocol::IssuerKeys issuer_keys(std::uint8_t key_version = 1) {
  protocol::IssuerKeys k;
  k.key_version = key_version;
  k.purchase = array_from_hex<16>("0123456789abcdeffedcba9876543210");
  k.load = array_from_hex<16>("00112233445566778899aabbccddeeff");
  k.tac = array_from_hex<16>("a1a2a3a4a5a6a7a8b1b2b3b4b5b6b7b8");
  k.batch = array_from_hex<16>("5a5b5c5d5e5f50515253545556575859");
  k.maintenance = array_from_hex<16>("c1c2c3c4c5c6c7c8d1d2d3d4d5d6d7d8");
  k.m1 = array_from_hex<16>("e0e1e2e3e4e5e6e7f0f1f2f3f4f5f6f7");
  return k;
}

inline protocol::Serial8 serial_of(std::uint64_t n) {
  protocol::Serial8 s{};
  for (std::size_t i = 0; i < 8; ++i) s[i] = static_cast<std::uint8_t>(n >> (56 - 8 * i));
  return s;
}

inline protocol::CardImage card_image(
    std::uint64_t serial_no, std::uint32_t balance_fen,
    protocol::crypto::Algorithm alg = protocol::crypto::Algorithm::kTripleDes,
    const protocol::IssuerKeys& keys = issuer_keys()) {
  protocol::CardImage c;
  c.family = protocol::Family::kJtt978;
  c.serial = serial_of(serial_no);
  c.card_number = "3100" + std::to_string(serial_no);
  c.balance_fen = balance_fen;
  c.valid_from = protocol::date_bcd(2020, 1, 1);
  c.valid_to = protocol::date_bcd(2030, 12, 31);
  c.issuer_data = array_from_hex<8>("3100310001000000");
  protocol::derive_card_keys(keys, alg, c);
  return c;
}

inline const protocol::TerminalId kTerminal = array_from_hex<6>("000102030405");

// A CJ/T 166 card: its family's AID; city code 2000 at offset 2 of file 0x15.
inline protocol::CardImage cjt166_image(std::uint64_t serial_no, std::uint32_t balance_fen) {
  protocol::CardImage c = card_image(serial_no, balance_fen);
  c.family = protocol::Family::kCjt166;
  c.issuer_data = array_from_hex<8>("1234200000000000");
  return c;
}

// An M1 purse card personalised under issuer_keys().m1.
inline protocol::m1::M1Image m1_image(std::uint32_t uid, std::uint32_t balance_fen) {
  protocol::m1::IssuerInfo info;
  info.card_number_bcd = protocol::m1::card_number_bcd("3100" + std::to_string(uid));
  info.city = {0x20, 0x00};
  info.valid_from = protocol::date_bcd(2020, 1, 1);
  info.valid_to = protocol::date_bcd(2030, 12, 31);
  const protocol::m1::Uid4 u{static_cast<std::uint8_t>(uid >> 24),
                             static_cast<std::uint8_t>(uid >> 16),
                             static_cast<std::uint8_t>(uid >> 8), static_cast<std::uint8_t>(uid)};
  return protocol::m1::m1_image(u, balance_fen, info, issuer_keys().m1);
}

inline protocol::PsamImage psam_image(const protocol::TerminalId& terminal = kTerminal,
                                      const protocol::IssuerKeys& keys = issuer_keys()) {
  protocol::PsamImage p;
  p.terminal_id = terminal;
  p.key_version = keys.key_version;
  p.purchase_master = keys.purchase;
  p.batch_key = protocol::terminal_batch_key(keys.batch, terminal);
  p.maintenance_master = keys.maintenance;
  p.next_sequence = 1;
  return p;
}

// "80 5C 00 02 04" -> the R-APDU the device answers.
template <class Device>
protocol::Response send(Device& device, std::string_view hex) {
  const Bytes out = device.process(from_hex(hex));
  Result<protocol::Response> r = protocol::Response::parse(out);
  if (!r) __builtin_trap();
  return *r;
}
template <class Device>
protocol::Response send(Device& device, const protocol::Command& c) {
  const Bytes out = device.process(c.encode());
  Result<protocol::Response> r = protocol::Response::parse(out);
  if (!r) __builtin_trap();
  return *r;
}

// A clearing centre that acknowledges every batch, remembers what it saw, and answers a batch
// number it has seen before with batch_duplicate, as the real one promises.
class FakeClearing final : public sim::RequestHandler {
 public:
  Bytes handle(ByteView request) override {
    Result<citycard::wire::Envelope> env = protocol::wire::decode(request);
    citycard::wire::Envelope reply;
    if (env && env->has_pos_refund()) {
      // Refunds (pos_refund.h) as the backend answers them, for the POS's side of the
      // protocol; the backend's own rules are tested against the real backend (scenarios).
      refunds.push_back(env->pos_refund());
      reply.set_request_id(env->request_id());
      const auto& m = env->pos_refund();
      if (m.manager_password() != refund_password) {
        reply.mutable_error()->set_code(citycard::wire::REFUND_NOT_AUTHORISED);
        reply.mutable_error()->set_message("wrong manager password");
      } else {
        auto* r = reply.mutable_pos_refund_reply();
        r->set_refund_id(m.refund_id());
        r->set_amount_fen(m.amount_fen());
        r->set_duplicate(!refund_ids.insert(m.refund_id()).second);
      }
      return protocol::wire::encode(reply);
    }
    if (!env || !env->has_upload()) {
      reply.mutable_error()->set_code(citycard::wire::MALFORMED);
      return protocol::wire::encode(reply);
    }
    reply.set_request_id(env->request_id());
    const auto& batch = env->upload();
    batches.push_back(batch);
    frames.emplace_back(request.begin(), request.end());
    auto* ack = reply.mutable_upload_ack();
    ack->set_batch_no(batch.batch_no());
    ack->set_accepted(batch.record_count());
    ack->set_batch_duplicate(!seen.insert(batch.batch_no()).second);
    return protocol::wire::encode(reply);
  }

  std::vector<citycard::wire::UploadBatch> batches;
  std::vector<Bytes> frames;
  std::set<std::uint64_t> seen;
  std::vector<citycard::wire::PosRefundRequest> refunds;
  std::set<std::string> refund_ids;
  std::string refund_password = "8888";
};

inline constexpr std::int64_t kRoundTripUs = 2'000;

// A channel whose replies are scripted per request, delivered on the event loop after a
// round trip: the fake clearing centre's answer, a timeout, a link that is down, or a reply
// the test writes itself.
class ScriptedChannel final : public sim::Channel {
 public:
  enum class Outcome { kAnswer, kTimeout, kLinkDown, kBusy, kWrongBatchNo };

  explicit ScriptedChannel(sim::EventLoop& loop) : loop_(loop) {}

  void request(Bytes frame, ReplyFn on_reply) override {
    frames.push_back(frame);
    const Outcome outcome = script.empty() ? Outcome::kAnswer : script.front();
    if (!script.empty()) script.pop_front();
    if (outcome == Outcome::kLinkDown) {
      on_reply(Result<Bytes>(Errc::kUnavailable, "link down"));
      return;
    }
    loop_.schedule_after(
        kRoundTripUs, [this, outcome, frame = std::move(frame), on_reply = std::move(on_reply)] {
          switch (outcome) {
            case Outcome::kTimeout:
              (void)clearing.handle(frame);  // the centre acted; only the answer was lost
              return on_reply(Result<Bytes>(Errc::kTimeout, "no reply within the timeout"));
            case Outcome::kBusy: {
              citycard::wire::Envelope e;
              e.mutable_error()->set_code(citycard::wire::BUSY);
              return on_reply(protocol::wire::encode(e));
            }
            case Outcome::kWrongBatchNo: {
              citycard::wire::Envelope e;
              e.mutable_upload_ack()->set_batch_no(999);
              return on_reply(protocol::wire::encode(e));
            }
            default:
              return on_reply(clearing.handle(frame));
          }
        });
  }

  std::deque<Outcome> script;
  std::vector<Bytes> frames;
  FakeClearing clearing;

 private:
  sim::EventLoop& loop_;
};

}  // namespace citycard::devices::testing
