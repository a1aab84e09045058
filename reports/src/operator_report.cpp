#include "citycard/reports/operator_report.h"

#include <cstdio>
#include <map>
#include <sstream>

#include "citycard/reports/svg.h"

namespace citycard::reports {

using svg::escape;

namespace {

// PayoutState of settlement.h.
constexpr int kPayoutPending = 1;
constexpr int kPayoutReturned = 3;
const char* payout_name(int p) {
  switch (p) {
    case 0:
      return "none";
    case 1:
      return "pending";
    case 2:
      return "paid";
    case 3:
      return "returned";
    default:
      return "?";
  }
}

std::int64_t i64(const Json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<std::int64_t>() : 0;
}
// A member by reference (an empty object or array when missing), so ranging over its items()
// never ranges over a temporary.
const Json& sub(const Json& j, const char* key, bool array = false) {
  static const Json kObject = Json::object(), kArray = Json::array();
  if (j.contains(key) && (array ? j[key].is_array() : j[key].is_object())) return j[key];
  return array ? kArray : kObject;
}

std::string str(const Json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

std::string csv(const std::string& v) {
  if (v.find_first_of(",\"\r\n") == std::string::npos) return v;
  std::string q = "\"";
  for (char c : v) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

// 1234 -> "12.34", no grouping (the bank file's yuan column).
std::string plain_yuan(std::int64_t fen) {
  char b[40];
  const long long a = fen < 0 ? -fen : fen;
  std::snprintf(b, sizeof b, "%s%lld.%02lld", fen < 0 ? "-" : "", a / 100, a % 100);
  return b;
}

std::string ppm_percent(std::int64_t ppm) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4f%%", static_cast<double>(ppm) / 1e4);
  return b;
}

struct Events {
  const Json* issuance = nullptr;
  const Json* transactions = nullptr;
  const Json* failures = nullptr;
  const Json* skipped = nullptr;
  std::vector<const Json*> merchants, terminals, transit, batches;
};

Events sort_events(const TraceStats& st) {
  Events e;
  for (const auto& ev : st.operator_events) {
    const std::string type = str(ev, "ev");
    if (type == "op_issuance")
      e.issuance = &ev;
    else if (type == "op_transactions")
      e.transactions = &ev;
    else if (type == "op_failures")
      e.failures = &ev;
    else if (type == "operator_reports_skipped")
      e.skipped = &ev;
    else if (type == "op_merchant")
      e.merchants.push_back(&ev);
    else if (type == "op_terminal")
      e.terminals.push_back(&ev);
    else if (type == "op_transit")
      e.transit.push_back(&ev);
    else if (type == "settlement_batch")
      e.batches.push_back(&ev);
  }
  return e;
}

void row(std::ostringstream& o, const std::string& k, const std::string& v) {
  o << "<tr><th>" << escape(k) << "</th><td class='num'>" << escape(v) << "</td></tr>";
}
std::string n(std::int64_t v) {
  return svg::thousands(v);
}

}  // namespace

std::string operator_html_sections(const TraceStats& st) {
  const Events e = sort_events(st);
  std::ostringstream o;
  if (e.skipped) {
    o << "<section id='operator'><h2>Operator reports</h2><p>Not written: "
      << escape(str(*e.skipped, "reason")) << "</p></section>";
  }
  if (e.issuance || e.transactions || e.failures) {
    o << "<section id='operator'><h2>Operator reports</h2><div class='kpis'>";
    if (e.issuance) {
      const Json& j = *e.issuance;
      o << "<div style='flex:1;min-width:300px'><h3>Issuance</h3><table>";
      row(o, "cards issued", n(i64(j, "cards")));
      row(o, "named / anonymous", n(i64(j, "named")) + " / " + n(i64(j, "anonymous")));
      for (const auto& [type, c] : sub(j, "by_type").items()) {
        row(o, "type " + type, n(c.get<std::int64_t>()));
      }
      for (const auto& [status, c] : sub(j, "by_status").items()) {
        row(o, "status " + status, n(c.get<std::int64_t>()));
      }
      row(o, "balances (yuan)", svg::yuan(i64(j, "balance_fen")));
      row(o, "deposits (yuan)", svg::yuan(i64(j, "deposit_fen")));
      o << "</table></div>";
    }
    if (e.transactions) {
      const Json& j = *e.transactions;
      o << "<div style='flex:1;min-width:300px'><h3>Transactions by type</h3><table>"
        << "<tr><th>type</th><th class='num'>count</th><th class='num'>yuan</th></tr>";
      o << "<tr><td>purchase</td><td class='num'>" << n(i64(j, "purchases"))
        << "</td><td class='num'>" << svg::yuan(i64(j, "purchase_fen")) << "</td></tr>";
      for (const auto& [ch, r] : sub(j, "recharges").items()) {
        o << "<tr><td>recharge: " << escape(ch) << "</td><td class='num'>" << n(i64(r, "count"))
          << "</td><td class='num'>" << svg::yuan(i64(r, "amount_fen")) << "</td></tr>";
      }
      for (const char* k : {"reversals", "suspicious", "rejected_records", "duplicate_records"}) {
        o << "<tr><td>" << k << "</td><td class='num'>" << n(i64(j, k)) << "</td><td></td></tr>";
      }
      o << "</table></div>";
    }
    if (e.failures) {
      const Json& j = *e.failures;
      o << "<div style='flex:1;min-width:300px'><h3>Failure rates</h3><table>"
        << "<tr><th>what</th><th class='num'>total</th><th class='num'>failed</th>"
        << "<th class='num'>rate</th></tr>";
      auto rate = [&](const char* what, const char* total, const char* failed, const char* ppm) {
        o << "<tr><td>" << what << "</td><td class='num'>" << n(i64(j, total))
          << "</td><td class='num'>" << n(i64(j, failed)) << "</td><td class='num'>"
          << ppm_percent(i64(j, ppm)) << "</td></tr>";
      };
      rate("uploaded records refused", "records", "records_refused", "refused_ppm");
      rate("card loads failed", "load_attempts", "load_failures", "load_failure_ppm");
      rate("recharge orders failed", "orders", "orders_failed", "order_failure_ppm");
      o << "</table></div>";
    }
    o << "</div></section>";
  }

  if (!e.transit.empty()) {
    o << "<section id='transit'><h2>Transit by route, vehicle and driver (backend)</h2>";
    for (const char* dim : {"route", "vehicle", "driver"}) {
      std::vector<const Json*> rows;
      for (const Json* t : e.transit) {
        if (str(*t, "dimension") == dim) rows.push_back(t);
      }
      if (rows.empty()) continue;
      if (std::string(dim) == "route" && rows.size() <= 60) {
        std::vector<std::pair<std::string, double>> bars;
        for (const Json* t : rows) {
          bars.emplace_back(str(*t, "key"), static_cast<double>(i64(*t, "amount_fen")) / 100.0);
        }
        o << svg::bar_chart({"Takings per route (backend clearing)", "route", "yuan"}, bars);
      }
      o << "<h3>Per " << dim << "</h3><table><tr><th>operator</th><th>" << dim
        << "</th><th class='num'>rides</th><th class='num'>yuan</th>"
        << "<th class='num'>full fare (yuan)</th><th class='num'>transfers</th></tr>";
      std::size_t shown = 0;
      for (const Json* t : rows) {
        if (++shown > 500) break;
        o << "<tr><td>" << escape(str(*t, "operator")) << "</td><td>" << escape(str(*t, "key"))
          << "</td><td class='num'>" << n(i64(*t, "count")) << "</td><td class='num'>"
          << svg::yuan(i64(*t, "amount_fen")) << "</td><td class='num'>"
          << svg::yuan(i64(*t, "full_fare_fen")) << "</td><td class='num'>"
          << n(i64(*t, "transfers")) << "</td></tr>";
      }
      o << "</table>";
      if (rows.size() > 500) o << "<p>" << rows.size() << " rows; all in transit.csv.</p>";
    }
    o << "</section>";
  }

  auto period_tables = [&](const std::vector<const Json*>& rows, const char* id, const char* title,
                           bool terminal) {
    if (rows.empty()) return;
    o << "<section id='" << id << "'><h2>" << title << "</h2>";
    for (const char* kind : {"day", "month"}) {
      o << "<h3>By " << kind << "</h3><table><tr><th>" << kind << "</th>"
        << (terminal ? "<th>terminal</th>" : "") << "<th>merchant</th>"
        << "<th class='num'>purchases</th><th class='num'>yuan</th>"
        << (terminal ? "<th class='num'>batches</th><th class='num'>rejected</th>"
                     : "<th class='num'>recharges</th><th class='num'>recharged (yuan)</th>")
        << "</tr>";
      for (const Json* r : rows) {
        if (str(*r, "period_kind") != kind) continue;
        o << "<tr><td>" << i64(*r, "period") << "</td>";
        if (terminal) o << "<td><code>" << escape(str(*r, "terminal")) << "</code></td>";
        o << "<td>" << escape(str(*r, "merchant")) << "</td><td class='num'>"
          << n(i64(*r, "purchases")) << "</td><td class='num'>"
          << svg::yuan(i64(*r, "purchase_fen")) << "</td>";
        if (terminal) {
          o << "<td class='num'>" << n(i64(*r, "batches")) << "</td><td class='num'>"
            << n(i64(*r, "rejected")) << "</td>";
        } else {
          o << "<td class='num'>" << n(i64(*r, "recharges")) << "</td><td class='num'>"
            << svg::yuan(i64(*r, "recharge_fen")) << "</td>";
        }
        o << "</tr>";
      }
      o << "</table>";
    }
    o << "</section>";
  };
  period_tables(e.merchants, "merchants", "Merchants by day and month", false);
  period_tables(e.terminals, "terminals", "Terminals by day and month", true);

  if (!e.batches.empty()) {
    o << "<section id='settlement'><h2>Settlement</h2><table><tr><th class='num'>batch</th>"
      << "<th>business date</th><th>state</th><th>prepared by</th><th>approved by</th>"
      << "<th class='num'>lines</th><th class='num'>gross (yuan)</th><th class='num'>fee (yuan)"
      << "</th><th class='num'>net (yuan)</th></tr>";
    for (const Json* b : e.batches) {
      o << "<tr><td class='num'>" << i64(*b, "batch") << "</td><td>" << i64(*b, "business_date")
        << "</td><td>" << escape(str(*b, "state")) << "</td><td>" << escape(str(*b, "created_by"))
        << "</td><td>" << escape(str(*b, "approved_by")) << "</td><td class='num'>"
        << sub(*b, "lines", true).size() << "</td><td class='num'>"
        << svg::yuan(i64(*b, "gross_fen")) << "</td><td class='num'>"
        << svg::yuan(i64(*b, "fee_fen")) << "</td><td class='num'>" << svg::yuan(i64(*b, "net_fen"))
        << "</td></tr>";
    }
    o << "</table><h3>Lines</h3><table><tr><th class='num'>batch</th><th>payee</th>"
      << "<th>period</th><th class='num'>swipes</th><th class='num'>gross</th>"
      << "<th class='num'>fee</th><th class='num'>commission</th><th class='num'>net</th>"
      << "<th>payout</th></tr>";
    for (const Json* b : e.batches) {
      for (const auto& l : sub(*b, "lines", true)) {
        o << "<tr><td class='num'>" << i64(*b, "batch") << "</td><td>"
          << escape(str(l, "party_kind") + " " + str(l, "party")) << "</td><td>"
          << i64(l, "period_from") << "–" << i64(l, "period_to") << "</td><td class='num'>"
          << n(i64(l, "txn_count")) << "</td><td class='num'>" << svg::yuan(i64(l, "gross_fen"))
          << "</td><td class='num'>" << svg::yuan(i64(l, "fee_fen")) << "</td><td class='num'>"
          << svg::yuan(i64(l, "commission_fen")) << "</td><td class='num'>"
          << svg::yuan(i64(l, "net_fen")) << "</td><td>"
          << payout_name(static_cast<int>(i64(l, "payout"))) << " <code>"
          << escape(str(l, "payout_ref")) << "</code></td></tr>";
      }
    }
    o << "</table></section>";
  }
  return o.str();
}

std::string bank_batch_file(const Json& b) {
  std::string details;
  int count = 0;
  std::int64_t total = 0;
  for (const auto& l : sub(b, "lines", true)) {
    const int payout = static_cast<int>(i64(l, "payout"));
    if (payout != kPayoutPending && payout != kPayoutReturned) continue;
    ++count;
    total += i64(l, "net_fen");
    details += "D," + std::to_string(count) + "," + str(l, "payout_ref") + "," +
               str(l, "party_kind") + "," + str(l, "party") + "," + str(l, "account_name") + "," +
               str(l, "bank_name") + "," + str(l, "bank_account") + "," +
               std::to_string(i64(l, "net_fen")) + "," + plain_yuan(i64(l, "net_fen")) +
               ",CNY,settlement " + std::to_string(i64(l, "period_from")) + "-" +
               std::to_string(i64(l, "period_to")) + "\n";
  }
  return "# citycard batch payment file v1\nH," + std::to_string(i64(b, "batch")) + "," +
         std::to_string(i64(b, "business_date")) + "," + std::to_string(count) + "," +
         std::to_string(total) + "\n" + details + "T," + std::to_string(count) + "," +
         std::to_string(total) + "\n";
}

std::vector<std::pair<std::string, std::string>> operator_csv_files(const TraceStats& st) {
  const Events e = sort_events(st);
  std::vector<std::pair<std::string, std::string>> files;
  if (e.issuance) {
    const Json& j = *e.issuance;
    std::ostringstream o;
    o << "metric,value\n";
    for (const char* k : {"cards", "named", "anonymous", "balance_fen", "deposit_fen"}) {
      o << k << ',' << i64(j, k) << '\n';
    }
    for (const auto& [k, v] : sub(j, "by_type").items()) {
      o << "type:" << csv(k) << ',' << v.get<std::int64_t>() << '\n';
    }
    for (const auto& [k, v] : sub(j, "by_status").items()) {
      o << "status:" << csv(k) << ',' << v.get<std::int64_t>() << '\n';
    }
    for (const auto& d : sub(j, "issued", true)) {
      o << "issued:" << d[0].get<std::int64_t>() << ',' << d[1].get<std::int64_t>() << '\n';
    }
    files.emplace_back("issuance.csv", o.str());
  }
  if (e.transactions) {
    const Json& j = *e.transactions;
    std::ostringstream o;
    o << "type,count,amount_fen\n";
    o << "purchase," << i64(j, "purchases") << ',' << i64(j, "purchase_fen") << '\n';
    for (const auto& [ch, r] : sub(j, "recharges").items()) {
      o << "recharge:" << csv(ch) << ',' << i64(r, "count") << ',' << i64(r, "amount_fen") << '\n';
    }
    for (const char* k : {"reversals", "suspicious", "rejected_records", "duplicate_records"}) {
      o << k << ',' << i64(j, k) << ",\n";
    }
    for (const auto& [s, c] : sub(j, "orders_by_state").items()) {
      o << "order:" << csv(s) << ',' << c.get<std::int64_t>() << ",\n";
    }
    for (const auto& [s, c] : sub(j, "cards_by_status").items()) {
      o << "card:" << csv(s) << ',' << c.get<std::int64_t>() << ",\n";
    }
    files.emplace_back("transactions.csv", o.str());
  }
  if (e.failures) {
    const Json& j = *e.failures;
    std::ostringstream o;
    o << "what,total,failed,rate_ppm\n"
      << "records_refused," << i64(j, "records") << ',' << i64(j, "records_refused") << ','
      << i64(j, "refused_ppm") << '\n'
      << "load_failures," << i64(j, "load_attempts") << ',' << i64(j, "load_failures") << ','
      << i64(j, "load_failure_ppm") << '\n'
      << "order_failures," << i64(j, "orders") << ',' << i64(j, "orders_failed") << ','
      << i64(j, "order_failure_ppm") << '\n';
    for (const auto& [code, c] : sub(j, "refused_by_code").items()) {
      o << "refused:" << csv(code) << ",," << c.get<std::int64_t>() << ",\n";
    }
    files.emplace_back("failure_rates.csv", o.str());
  }
  if (!e.merchants.empty()) {
    std::ostringstream o;
    o << "period_kind,period,merchant,purchases,purchase_fen,recharges,recharge_fen\n";
    for (const Json* r : e.merchants) {
      o << str(*r, "period_kind") << ',' << i64(*r, "period") << ',' << csv(str(*r, "merchant"))
        << ',' << i64(*r, "purchases") << ',' << i64(*r, "purchase_fen") << ','
        << i64(*r, "recharges") << ',' << i64(*r, "recharge_fen") << '\n';
    }
    files.emplace_back("merchant_summary.csv", o.str());
  }
  if (!e.terminals.empty()) {
    std::ostringstream o;
    o << "period_kind,period,terminal,merchant,purchases,purchase_fen,batches,rejected\n";
    for (const Json* r : e.terminals) {
      o << str(*r, "period_kind") << ',' << i64(*r, "period") << ',' << csv(str(*r, "terminal"))
        << ',' << csv(str(*r, "merchant")) << ',' << i64(*r, "purchases") << ','
        << i64(*r, "purchase_fen") << ',' << i64(*r, "batches") << ',' << i64(*r, "rejected")
        << '\n';
    }
    files.emplace_back("terminal_summary.csv", o.str());
  }
  if (!e.transit.empty()) {
    std::ostringstream o;
    o << "dimension,operator,key,count,amount_fen,full_fare_fen,transfers\n";
    for (const Json* t : e.transit) {
      o << str(*t, "dimension") << ',' << csv(str(*t, "operator")) << ',' << csv(str(*t, "key"))
        << ',' << i64(*t, "count") << ',' << i64(*t, "amount_fen") << ','
        << i64(*t, "full_fare_fen") << ',' << i64(*t, "transfers") << '\n';
    }
    files.emplace_back("transit.csv", o.str());
  }
  if (!e.batches.empty()) {
    std::ostringstream o;
    o << "batch,business_date,state,line,party_kind,party,period_from,period_to,txn_count,"
         "gross_fen,fee_fen,deployer,deployer_share_fen,commission_fen,points_redeemed_fen,"
         "points_cost_fen,net_fen,payout,payout_ref\n";
    for (const Json* b : e.batches) {
      for (const auto& l : sub(*b, "lines", true)) {
        o << i64(*b, "batch") << ',' << i64(*b, "business_date") << ',' << csv(str(*b, "state"))
          << ',' << i64(l, "id") << ',' << str(l, "party_kind") << ',' << csv(str(l, "party"))
          << ',' << i64(l, "period_from") << ',' << i64(l, "period_to") << ','
          << i64(l, "txn_count") << ',' << i64(l, "gross_fen") << ',' << i64(l, "fee_fen") << ','
          << csv(str(l, "deployer")) << ',' << i64(l, "deployer_share_fen") << ','
          << i64(l, "commission_fen") << ',' << i64(l, "points_redeemed_fen") << ','
          << i64(l, "points_cost_fen") << ',' << i64(l, "net_fen") << ','
          << payout_name(static_cast<int>(i64(l, "payout"))) << ',' << csv(str(l, "payout_ref"))
          << '\n';
      }
      const std::string state = str(*b, "state");
      if (state == "file_written" || state == "reconciled") {
        files.emplace_back("bank_batch_" + std::to_string(i64(*b, "batch")) + ".csv",
                           bank_batch_file(*b));
      }
    }
    files.emplace_back("settlement.csv", o.str());
  }
  return files;
}

}  // namespace citycard::reports
