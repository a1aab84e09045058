#include "citycard/devices/load.h"

#include <algorithm>

#include "citycard/protocol/crypto.h"
#include "citycard/protocol/load.h"
#include "refusals.h"

namespace citycard::devices {

using protocol::Command;
using protocol::Response;
namespace crypto = protocol::crypto;

namespace {

constexpr std::size_t kInitLoadReplyBytes = 16;
constexpr std::size_t kCreditReplyBytes = 4;
constexpr std::size_t kProveReplyBytes = 8;

LoadResult as_load(PurchaseResult r) {
  LoadResult out;
  out.refusal = r.refusal;
  out.sw = r.sw;
  out.detail = std::move(r.detail);
  return out;
}

// VERIFY's data: the PIN digits as BCD, padded with F.
Bytes pin_block(const std::string& digits) {
  Bytes out((digits.size() + 1) / 2, 0xFF);
  for (std::size_t i = 0; i < digits.size(); ++i) {
    const auto d = static_cast<std::uint8_t>(digits[i] - '0');
    out[i / 2] = i % 2 == 0 ? static_cast<std::uint8_t>((d << 4) | 0x0F)
                            : static_cast<std::uint8_t>((out[i / 2] & 0xF0) | d);
  }
  return out;
}

}  // namespace

LoadHost::~LoadHost() = default;

Result<LoadApproval> KeyedLoadHost::authorise(const LoadAuthorisation& a) {
  const std::optional<crypto::Algorithm> alg = crypto::algorithm_from_id(a.algorithm_id);
  if (!alg) return Result<LoadApproval>(Errc::kRejected, "unknown algorithm id");
  if (!keys_.has_version(a.key_version)) {
    return Result<LoadApproval>(Errc::kNotFound,
                                "no load key of version " + std::to_string(a.key_version));
  }
  // The host-side computation the backend uses too (protocol/load.h), so the two hosts and the
  // card model cannot drift apart.
  const protocol::load::LoadInit init{
      *alg,   a.balance_before_fen, a.online_counter,       a.card_random,
      a.mac1, a.amount_fen,         protocol::txn::kLoadEp, a.terminal};
  const crypto::Key16 dlk = keys_.card_key(a.card_serial, a.key_version, *alg, KeyUse::kLoad);
  if (!protocol::load::mac1_ok(init, dlk)) {
    return Result<LoadApproval>(Errc::kBadMac, "load MAC1 does not verify");
  }
  ++approvals_;
  return LoadApproval{protocol::load::mac2(init, dlk, a.datetime), options_.host_latency_us};
}

LoadResult LoadEngine::load(CardLink& card, const LoadRequest& request) {
  const std::int64_t start_us = card.elapsed_us();
  std::int64_t host_us = 0;
  LoadResult r = run(card, request, &host_us);
  r.duration_us = card.elapsed_us() - start_us + host_us;
  return r;
}

LoadResult LoadEngine::run(CardLink& card, const LoadRequest& request, std::int64_t* host_us) {
  PurchaseResult refusal;
  Result<CardIdentity> id = identify_card(card, options_.accept_jtt978, options_.accept_cjt166,
                                          options_.cjt166_city_code_offset, &refusal);
  if (!id) return as_load(std::move(refusal));
  const protocol::Serial8& serial = id->serial;

  const auto grey = std::find_if(grey_.begin(), grey_.end(),
                                 [&](const Load& l) { return l.card_serial == serial; });
  if (grey != grey_.end()) {
    if (auto done = recover(card, static_cast<std::size_t>(grey - grey_.begin()))) return *done;
  }
  if (!within_validity(*id, request.datetime)) {
    return as_load(refused(Refusal::kCardExpired, 0, "outside the card's validity dates"));
  }
  if (request.pin) {
    Result<Response> verify =
        card.transceive(Command{0x00, 0x20, 0x00, 0x00, pin_block(*request.pin), std::nullopt});
    if (!verify || !verify->ok()) return as_load(card_refusal("VERIFY", verify));
  }

  Bytes init_data;
  put_u8(init_data, options_.key_index);
  put_u32be(init_data, request.amount_fen);
  put_bytes(init_data, terminal_);
  Result<Response> init =
      card.transceive(Command{0x80, 0x50, 0x00, 0x02, std::move(init_data), kInitLoadReplyBytes});
  if (!init || !init->ok()) return as_load(card_refusal("INITIALIZE FOR LOAD", init));
  if (init->data.size() != kInitLoadReplyBytes) {
    return as_load(wrong_shape("INITIALIZE FOR LOAD", *init, kInitLoadReplyBytes));
  }
  const ByteView ir = init->data;
  Load l;
  l.card_serial = serial;
  l.balance_before_fen = get_u32be(ir, 0);
  l.online_counter = get_u16be(ir, 4);
  l.key_version = ir[6];
  l.algorithm_id = ir[7];
  l.amount_fen = request.amount_fen;
  l.terminal = terminal_;
  l.datetime = request.datetime;
  resolve_grey(serial, l.online_counter);

  Result<LoadApproval> approval = host_.authorise(LoadAuthorisation{
      serial, l.key_version, l.algorithm_id, l.balance_before_fen, l.online_counter, take<4>(ir, 8),
      l.amount_fen, l.terminal, l.datetime, take<4>(ir, 12)});
  if (!approval) {
    return as_load(
        refused(Refusal::kHostRefused, 0, "load host: " + approval.status().to_string()));
  }
  *host_us += approval->host_us;
  l.mac2 = approval->mac2;
  if (approval->datetime) l.datetime = *approval->datetime;

  Bytes credit_data;
  put_bytes(credit_data, l.datetime);
  put_bytes(credit_data, l.mac2);
  Result<Response> credit =
      card.transceive(Command{0x80, 0x52, 0x00, 0x00, std::move(credit_data), kCreditReplyBytes});
  if (!credit) {
    keep_grey(l);  // the card may have committed the credit before its answer was lost
    return as_load(card_refusal("CREDIT FOR LOAD", credit));
  }
  if (!credit->ok()) return as_load(card_refusal("CREDIT FOR LOAD", credit));
  if (credit->data.size() != kCreditReplyBytes) {
    keep_grey(l);
    return as_load(wrong_shape("CREDIT FOR LOAD", *credit, kCreditReplyBytes));
  }
  l.tac = take<4>(credit->data, 0);
  LoadResult done;
  done.load = l;
  return done;
}

std::optional<LoadResult> LoadEngine::recover(CardLink& card, std::size_t grey_index) {
  const Load& grey = grey_[grey_index];
  Bytes counter_after;
  put_u16be(counter_after, static_cast<std::uint16_t>(grey.online_counter + 1));
  Result<Response> prove = card.transceive(
      Command{0x80, 0x5A, 0x00, options_.prove_type, std::move(counter_after), kProveReplyBytes});
  if (!prove) return as_load(card_refusal("GET TRANSACTION PROVE", prove));
  // The proof must carry the MAC2 this terminal sent: then it is this load and no other.
  if (!prove->ok() || prove->data.size() != kProveReplyBytes ||
      !crypto::mac_equal(take<4>(prove->data, 0), grey.mac2)) {
    return std::nullopt;
  }
  LoadResult done;
  done.recovered = true;
  done.load = grey;
  done.load.tac = take<4>(prove->data, 4);
  grey_.erase(grey_.begin() + static_cast<std::ptrdiff_t>(grey_index));
  ++grey_counters_.completed;
  return done;
}

void LoadEngine::keep_grey(const Load& grey) {
  ++grey_counters_.recorded;
  if (grey_.size() == kGreyLoadsMax) {
    grey_.erase(grey_.begin());
    ++grey_counters_.unresolved;
  }
  grey_.push_back(grey);
}

void LoadEngine::resolve_grey(const protocol::Serial8& serial, std::uint16_t online_counter_now) {
  const auto it = std::find_if(grey_.begin(), grey_.end(),
                               [&](const Load& l) { return l.card_serial == serial; });
  if (it == grey_.end()) return;
  if (online_counter_now == it->online_counter) {
    ++grey_counters_.cleared;
  } else {
    ++grey_counters_.unresolved;
  }
  grey_.erase(it);
}

}  // namespace citycard::devices
