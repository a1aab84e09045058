#include "citycard/reports/report.h"

#include <fstream>
#include <sstream>

#include "citycard/reports/svg.h"

namespace citycard::reports {

using svg::escape;

Result<TraceStats> aggregate_trace(const std::string& trace_path) {
  std::ifstream in(trace_path, std::ios::binary);
  if (!in) return Result<TraceStats>(Errc::kNotFound, "cannot read trace " + trace_path);
  TraceStats st;
  std::string line;
  while (std::getline(in, line)) {
    ++st.lines;
    Json ev = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (ev.is_discarded() || !ev.is_object()) {
      return Result<TraceStats>(Errc::kMalformed, trace_path + ":" + std::to_string(st.lines) +
                                                      ": not a JSON object");
    }
    const std::int64_t t = ev.value("t_us", std::int64_t{0});
    st.last_t_us = std::max(st.last_t_us, t);
    const std::string type = ev.value("ev", "");
    if (type == "swipe") {
      auto& b = st.per_minute[t / 60'000'000];
      if (ev.value("ok", false)) {
        const std::int64_t amount = ev.value("amount_fen", std::int64_t{0});
        ++b.swipes;
        b.amount_fen += amount;
        auto& r = st.per_route[ev.value("route", "?")];
        ++r.swipes;
        r.amount_fen += amount;
        auto& v = st.per_vehicle[ev.value("vehicle", "?")];
        ++v.swipes;
        v.amount_fen += amount;
      } else {
        ++b.refusals;
        ++st.refusal_reasons[ev.value("reason", "unknown")];
      }
    } else if (type == "upload_ack") {
      ++st.batches;
      st.records_accepted += ev.value("accepted", std::uint64_t{0});
      st.records_duplicate += ev.value("duplicates", std::uint64_t{0});
      st.records_rejected += ev.value("rejected", std::uint64_t{0});
    }
  }
  return st;
}

std::string junit_xml(const std::vector<RunSummary>& runs, const std::string& suite_name) {
  std::size_t tests = 0, failures = 0, errors = 0;
  double time = 0;
  for (const auto& r : runs) {
    tests += r.expectations.size() + (r.error.empty() ? 0 : 1);
    failures += r.failed();
    errors += r.error.empty() ? 0 : 1;
    time += r.wall_duration_s;
  }
  std::ostringstream o;
  o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  o << "<testsuites name=\"" << escape(suite_name) << "\" tests=\"" << tests << "\" failures=\""
    << failures << "\" errors=\"" << errors << "\" time=\"" << time << "\">\n";
  for (const auto& r : runs) {
    o << "  <testsuite name=\"" << escape(r.scenario) << "\" tests=\""
      << r.expectations.size() + (r.error.empty() ? 0 : 1) << "\" failures=\"" << r.failed()
      << "\" errors=\"" << (r.error.empty() ? 0 : 1) << "\" time=\"" << r.wall_duration_s
      << "\">\n";
    o << "    <properties>\n      <property name=\"seed\" value=\"" << r.seed << "\"/>\n"
      << "      <property name=\"trace_digest\" value=\"" << r.trace_digest << "\"/>\n"
      << "      <property name=\"replay\" value=\"" << escape(r.replay_command) << "\"/>\n"
      << "    </properties>\n";
    for (const auto& e : r.expectations) {
      o << "    <testcase classname=\"" << escape(r.scenario) << "\" name=\"" << escape(e.name)
        << "\" time=\"0\"";
      if (e.passed) {
        o << "/>\n";
        continue;
      }
      const std::string msg = e.message.empty() ? "expectation failed" : e.message;
      o << ">\n      <failure message=\"" << escape(msg) << "\" type=\"expectation\">"
        << escape(e.where + ": " + msg + "\nseed " + std::to_string(r.seed) + "; replay: " +
                  r.replay_command)
        << "</failure>\n    </testcase>\n";
    }
    if (!r.error.empty()) {
      o << "    <testcase classname=\"" << escape(r.scenario) << "\" name=\"script\" time=\"0\">\n"
        << "      <error message=\"" << escape(r.error) << "\" type=\"script\">"
        << escape(r.error + "\nseed " + std::to_string(r.seed)) << "</error>\n    </testcase>\n";
    }
    o << "  </testsuite>\n";
  }
  o << "</testsuites>\n";
  return o.str();
}

namespace {
const char* kCss = R"(
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans CJK SC",sans-serif;margin:0;color:#1f2937;background:#f8fafc}
header{padding:20px 32px;color:#fff}
header.pass{background:#15803d} header.fail{background:#b91c1c}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;opacity:.9}
main{padding:16px 32px;max-width:1100px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:16px 20px;margin:16px 0}
h2{font-size:17px;margin:0 0 12px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eef0f3}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#15803d;font-weight:600} .bad{color:#b91c1c;font-weight:600}
code{background:#f1f5f9;padding:2px 5px;border-radius:4px;font-size:13px}
header code{background:rgba(0,0,0,.25);color:#fff}
svg.chart{width:100%;height:auto;max-width:1000px;display:block;margin:4px 0 12px}
.kpis{display:flex;gap:12px;flex-wrap:wrap}
.kpi{flex:1;min-width:140px;background:#f1f5f9;border-radius:6px;padding:10px 12px}
.kpi b{display:block;font-size:20px}
svg.chart .grid{stroke:#e5e7eb} svg.chart .axis{stroke:#374151}
svg.chart .tick{font-size:11px;fill:#4b5563} svg.chart .label{font-size:12px;fill:#374151}
svg.chart .title{font-size:14px;font-weight:600;fill:#111827}
)";

void kpi(std::ostringstream& o, const std::string& label, const std::string& value) {
  o << "<div class='kpi'>" << escape(label) << "<b>" << escape(value) << "</b></div>";
}

template <class Map>
void group_table(std::ostringstream& o, const std::string& title, const std::string& key,
                 const Map& groups) {
  if (groups.empty()) return;
  o << "<section><h2>" << escape(title) << "</h2>";
  std::vector<std::pair<std::string, double>> bars;
  for (const auto& [name, g] : groups) bars.emplace_back(name, static_cast<double>(g.swipes));
  if (bars.size() <= 60) {
    o << svg::bar_chart({title, key, "swipes"}, bars);
  }
  o << "<table><tr><th>" << escape(key) << "</th><th class='num'>swipes</th>"
    << "<th class='num'>amount (yuan)</th></tr>";
  for (const auto& [name, g] : groups) {
    o << "<tr><td>" << escape(name) << "</td><td class='num'>" << svg::thousands(g.swipes)
      << "</td><td class='num'>" << svg::yuan(g.amount_fen) << "</td></tr>";
  }
  o << "</table></section>";
}
}  // namespace

std::string html_report(const RunSummary& s, const TraceStats& st) {
  std::ostringstream o;
  const bool pass = s.ok();
  o << "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
    << "<meta name='viewport' content='width=device-width,initial-scale=1'>"
    << "<title>citycard: " << escape(s.scenario) << " — " << (pass ? "PASS" : "FAIL")
    << "</title><style>" << kCss << "</style></head><body>";
  o << "<header class='" << (pass ? "pass" : "fail") << "'><h1>" << (pass ? "PASS" : "FAIL")
    << " · " << escape(s.scenario) << "</h1><p>" << escape(s.description) << "</p><p>seed "
    << s.seed << " · " << s.passed() << " expectations passed, " << s.failed()
    << " failed · trace digest <code>" << escape(s.trace_digest.substr(0, 16))
    << "</code></p></header><main>";

  // Failures first: what a QA lead opens the page for.
  if (!pass) {
    o << "<section id='failures'><h2>What failed</h2><table><tr><th>expectation</th>"
      << "<th>where</th><th>why</th></tr>";
    for (const auto& e : s.expectations) {
      if (e.passed) continue;
      o << "<tr><td class='bad'>" << escape(e.name) << "</td><td><code>" << escape(e.where)
        << "</code></td><td>" << escape(e.message) << "</td></tr>";
    }
    if (!s.error.empty()) {
      o << "<tr><td class='bad'>script error</td><td></td><td>" << escape(s.error) << "</td></tr>";
    }
    if (s.expectations.empty() && s.error.empty()) {
      o << "<tr><td class='bad'>no expectation was checked</td><td></td><td></td></tr>";
    }
    o << "</table><p>Replay: <code>" << escape(s.replay_command) << "</code></p></section>";
  }

  o << "<section><h2>Run</h2><div class='kpis'>";
  kpi(o, "swipes", svg::thousands(static_cast<long long>(s.swipes)));
  kpi(o, "refused", svg::thousands(static_cast<long long>(s.refusals)));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.0f s", s.virtual_duration_s);
  kpi(o, "virtual time", buf);
  std::snprintf(buf, sizeof buf, "%.0f /s", s.swipes_per_s_wall);
  kpi(o, "simulated swipes per wall second", buf);
  kpi(o, "ledger", s.ledger_balanced ? "balanced" : "NOT balanced");
  o << "</div><table style='margin-top:12px'><tr><th>scenario file</th><td><code>"
    << escape(s.scenario_path) << "</code></td></tr><tr><th>tags</th><td>";
  for (const auto& t : s.tags) o << "<code>" << escape(t) << "</code> ";
  o << "</td></tr><tr><th>replay</th><td><code>" << escape(s.replay_command)
    << "</code></td></tr></table></section>";

  o << "<section><h2>Seed and knobs</h2><table><tr><th>seed</th><td class='num'>" << s.seed
    << "</td></tr>";
  for (const auto& [k, v] : s.knobs.items()) {
    o << "<tr><th>" << escape(k) << "</th><td class='num'>" << escape(v.dump()) << "</td></tr>";
  }
  o << "</table></section>";

  if (!st.per_minute.empty()) {
    svg::Series swipes{"swipes", {}}, refused{"refused", {}}, money{"amount (yuan)", {}};
    for (const auto& [minute, b] : st.per_minute) {
      swipes.points.emplace_back(static_cast<double>(minute), static_cast<double>(b.swipes));
      refused.points.emplace_back(static_cast<double>(minute), static_cast<double>(b.refusals));
      money.points.emplace_back(static_cast<double>(minute),
                                static_cast<double>(b.amount_fen) / 100.0);
    }
    o << "<section><h2>Swipes and money over time</h2>"
      << svg::line_chart({"Swipes per minute", "virtual time since start (min)",
                          "swipes per minute"},
                         {swipes, refused})
      << svg::line_chart({"Money debited per minute", "virtual time since start (min)",
                          "yuan per minute"},
                         {money})
      << "</section>";
  }
  group_table(o, "Per route", "route", st.per_route);
  if (st.per_vehicle.size() <= 200) group_table(o, "Per vehicle", "vehicle", st.per_vehicle);

  if (!st.refusal_reasons.empty()) {
    o << "<section><h2>Refusals</h2><table><tr><th>reason</th><th class='num'>count</th></tr>";
    for (const auto& [reason, n] : st.refusal_reasons) {
      o << "<tr><td>" << escape(reason) << "</td><td class='num'>"
        << svg::thousands(static_cast<long long>(n)) << "</td></tr>";
    }
    o << "</table></section>";
  }

  o << "<section><h2>Uploads and clearing</h2><table>"
    << "<tr><th>batches acknowledged</th><td class='num'>" << svg::thousands(st.batches)
    << "</td></tr><tr><th>records accepted</th><td class='num'>"
    << svg::thousands(static_cast<long long>(st.records_accepted))
    << "</td></tr><tr><th>records duplicate (harmless)</th><td class='num'>"
    << svg::thousands(static_cast<long long>(st.records_duplicate))
    << "</td></tr><tr><th>records rejected</th><td class='num'>"
    << svg::thousands(static_cast<long long>(st.records_rejected)) << "</td></tr>";
  for (const auto& [k, v] : s.figures.items()) {
    o << "<tr><th>" << escape(k) << "</th><td class='num'>"
      << escape(v.is_string() ? v.get<std::string>() : v.dump()) << "</td></tr>";
  }
  o << "</table></section>";

  o << "<section><h2>Expectations</h2><table><tr><th>expectation</th><th>verdict</th>"
    << "<th>where</th><th>virtual time (s)</th></tr>";
  for (const auto& e : s.expectations) {
    o << "<tr><td>" << escape(e.name) << "</td><td class='" << (e.passed ? "ok" : "bad") << "'>"
      << (e.passed ? "pass" : "FAIL") << "</td><td><code>" << escape(e.where)
      << "</code></td><td class='num'>" << e.t_us / 1'000'000 << "</td></tr>";
  }
  o << "</table></section></main></body></html>\n";
  return o.str();
}

Status render_run(const std::string& dir) {
  auto text = read_text_file(dir + "/summary.json");
  if (!text) return text.status();
  Json j = Json::parse(*text, nullptr, false);
  if (j.is_discarded()) return Status(Errc::kMalformed, dir + "/summary.json is not JSON");
  auto summary = summary_from_json(j);
  if (!summary) return summary.status();
  auto stats = aggregate_trace(dir + "/trace.jsonl");
  if (!stats) return stats.status();
  if (Status s = write_text_file(dir + "/report.html", html_report(*summary, *stats)); !s) return s;
  return write_text_file(dir + "/junit.xml", junit_xml({*summary}, "citycard"));
}

}  // namespace citycard::reports
