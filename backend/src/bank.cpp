#include "citycard/backend/bank.h"

#include <cstdio>
#include <sstream>

namespace citycard::backend {

const char* statement_kind_name(StatementKind k) {
  switch (k) {
    case StatementKind::kPaymentIn:
      return "payment_in";
    case StatementKind::kRefundOut:
      return "refund_out";
    case StatementKind::kPayoutOut:
      return "payout_out";
    case StatementKind::kPayoutReturned:
      return "payout_returned";
  }
  return "unknown";
}

namespace {

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> out;
  std::string field;
  std::istringstream in(line);
  while (std::getline(in, field, ',')) out.push_back(field);
  if (!line.empty() && line.back() == ',') out.emplace_back();
  return out;
}

bool parse_int(const std::string& s, std::int64_t& out) {
  if (s.empty() || s.size() > 18) return false;
  std::int64_t v = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  out = v;
  return true;
}

}  // namespace

SimBank::SimBank(const Calendar& calendar, SimBankOptions options)
    : calendar_(calendar), options_(options), rng_(options.seed) {}

std::string SimBank::next_ref() {
  char buf[24];
  std::snprintf(buf, sizeof buf, "B%010llu", static_cast<unsigned long long>(++seq_));
  return buf;
}

int SimBank::date_at(std::int64_t at_us) const {
  const std::int64_t delta_s = (at_us - calendar_.now_us()) / 1'000'000;
  return Calendar::yyyymmdd(
      protocol::datetime_from_epoch2000(calendar_.now_epoch2000_s() + delta_s));
}

Status SimBank::submit(const BankPayment& p) {
  if (payments_.count(p.order_id) != 0) {
    return Status(Errc::kDuplicate, "bank already has order " + p.order_id);
  }
  if (payments_.size() >= options_.payments_max) {
    return Status(Errc::kTooLarge, "simulated bank is full");
  }
  if (p.amount_fen <= 0) return Status(Errc::kInvalidArgument, "payment amount must be positive");
  Payment pay;
  pay.amount_fen = p.amount_fen;
  pay.bank_ref = next_ref();
  pay.result =
      rng_.bernoulli(options_.decline_probability) ? BankResult::kDeclined : BankResult::kApproved;
  pay.decided_at_us =
      calendar_.now_us() + rng_.uniform_range(options_.latency_us_min, options_.latency_us_max);
  BankCallback cb{p.order_id, pay.bank_ref, pay.result, p.amount_fen,
                  pay.result == BankResult::kDeclined ? "declined by issuer bank" : ""};
  // Draw every knob for every payment, so that changing one probability does not shift the
  // random stream of the others.
  const bool lost = rng_.bernoulli(options_.lost_callback_probability);
  const bool twice = rng_.bernoulli(options_.duplicate_callback_probability);
  const std::int64_t again_us = rng_.uniform_range(1, options_.duplicate_delay_us_max);
  if (!lost) due_.emplace(std::make_pair(pay.decided_at_us, ++seq_), cb);
  if (twice) due_.emplace(std::make_pair(pay.decided_at_us + again_us, ++seq_), cb);
  payments_.emplace(p.order_id, std::move(pay));
  return Status::ok();
}

void SimBank::book_due() {
  const std::int64_t now = calendar_.now_us();
  for (auto& [order_id, p] : payments_) {
    if (p.booked || p.decided_at_us > now) continue;
    p.booked = true;
    if (p.result == BankResult::kApproved) {
      statement_.push_back({date_at(p.decided_at_us), p.bank_ref, StatementKind::kPaymentIn,
                            order_id, p.amount_fen});
    }
  }
}

std::vector<BankCallback> SimBank::poll() {
  book_due();
  std::vector<BankCallback> out;
  const std::int64_t now = calendar_.now_us();
  while (!due_.empty() && due_.begin()->first.first <= now) {
    out.push_back(std::move(due_.begin()->second));
    due_.erase(due_.begin());
  }
  return out;
}

Result<BankQueryReply> SimBank::query(const std::string& order_id) {
  book_due();
  auto it = payments_.find(order_id);
  if (it == payments_.end()) return BankQueryReply{};
  const Payment& p = it->second;
  if (p.decided_at_us > calendar_.now_us()) {
    return BankQueryReply{BankPaymentState::kProcessing, p.bank_ref, p.amount_fen};
  }
  return BankQueryReply{
      p.result == BankResult::kApproved ? BankPaymentState::kApproved : BankPaymentState::kDeclined,
      p.bank_ref, p.amount_fen};
}

Status SimBank::refund(const std::string& order_id, std::int64_t amount_fen) {
  book_due();
  auto it = payments_.find(order_id);
  if (it == payments_.end() || !it->second.booked || it->second.result != BankResult::kApproved) {
    return Status(Errc::kNotFound, "no approved payment for order " + order_id);
  }
  Payment& p = it->second;
  if (p.refunded) return Status(Errc::kDuplicate, "order " + order_id + " was refunded already");
  if (amount_fen != p.amount_fen) {
    return Status(Errc::kInvalidArgument, "refund must be the whole payment");
  }
  p.refunded = true;
  statement_.push_back(
      {calendar_.today_yyyymmdd(), next_ref(), StatementKind::kRefundOut, order_id, amount_fen});
  return Status::ok();
}

Result<PayoutFileResult> SimBank::execute_payout_file(const std::string& csv) {
  std::istringstream in(csv);
  std::string line;
  std::vector<std::vector<std::string>> details;
  std::int64_t header_count = -1, header_total = -1, trailer_count = -1, trailer_total = -1;
  std::int64_t sum = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto f = split(line);
    if (f[0] == "H" && f.size() == 5) {
      if (!parse_int(f[3], header_count) || !parse_int(f[4], header_total)) {
        return Status(Errc::kMalformed, "bad header line");
      }
    } else if (f[0] == "D" && f.size() == 12) {
      std::int64_t amount = 0;
      if (!parse_int(f[8], amount)) return Status(Errc::kMalformed, "bad amount in " + line);
      sum += amount;
      details.push_back(std::move(f));
      if (details.size() > options_.payout_lines_max) {
        return Status(Errc::kTooLarge,
                      "payout file over " + std::to_string(options_.payout_lines_max) + " lines");
      }
    } else if (f[0] == "T" && f.size() == 3) {
      if (!parse_int(f[1], trailer_count) || !parse_int(f[2], trailer_total)) {
        return Status(Errc::kMalformed, "bad trailer line");
      }
    } else {
      return Status(Errc::kMalformed, "unknown line: " + line.substr(0, 80));
    }
  }
  const auto n = static_cast<std::int64_t>(details.size());
  if (header_count != n || trailer_count != n || header_total != sum || trailer_total != sum) {
    return Status(Errc::kMalformed, "payout file totals do not match its lines; nothing paid");
  }
  PayoutFileResult r;
  const int today = calendar_.today_yyyymmdd();
  for (const auto& f : details) {
    std::int64_t amount = 0;
    (void)parse_int(f[8], amount);
    const std::string& reference = f[2];
    const std::string& account = f[7];
    const bool bounce = rng_.bernoulli(options_.payout_return_probability) || account.empty();
    ++r.lines;
    statement_.push_back({today, next_ref(), StatementKind::kPayoutOut, reference, amount});
    if (bounce) {
      ++r.returned;
      statement_.push_back({today, next_ref(), StatementKind::kPayoutReturned, reference, amount});
    } else {
      ++r.paid;
      r.paid_fen += amount;
    }
  }
  return r;
}

std::vector<StatementLine> SimBank::statement(int date) {
  book_due();
  std::vector<StatementLine> out;
  for (const StatementLine& l : statement_) {
    if (l.date_yyyymmdd == date) out.push_back(l);
  }
  return out;
}

}  // namespace citycard::backend
