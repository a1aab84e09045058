#include "citycard/reports/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

#include <simdjson.h>
#include <sstream>

#include "citycard/reports/operator_report.h"
#include "citycard/reports/svg.h"
#include "citycard/reports/wall_report.h"

namespace citycard::reports {

using svg::escape;

namespace {

// One trace event's fields that the aggregation needs. simdjson's on-demand parser reads them
// straight from the bytes, so a 2-million-swipe trace renders in a second or two.
struct EventView {
  std::string_view type;
  std::int64_t t_us = 0;
  bool ok = false;
  std::int64_t amount_fen = 0;
  std::string_view route, vehicle, reason, card, operator_id;
  std::uint64_t accepted = 0, duplicates = 0, rejected = 0;
  std::int64_t count = 0;
  bool recovered = false;
};

// simdjson's DOM parser picks the fastest kernel for this CPU at run time (its On-Demand
// parser would be fixed to the portable one at compile time without -march flags).
// A known field of the wrong type makes the line malformed.
bool read_event(simdjson::dom::element doc, EventView& e) {
  simdjson::dom::object obj;
  if (doc.get(obj)) return false;
  e = EventView{};
  for (auto [key, value] : obj) {
    if (key == "ev") {
      if (value.get(e.type)) return false;
    } else if (key == "t_us") {
      if (value.get(e.t_us)) return false;
    } else if (key == "ok") {
      if (value.get(e.ok)) return false;
    } else if (key == "amount_fen") {
      if (value.get(e.amount_fen)) return false;
    } else if (key == "route") {
      if (value.get(e.route)) return false;
    } else if (key == "vehicle") {
      if (value.get(e.vehicle)) return false;
    } else if (key == "reason") {
      if (value.get(e.reason)) return false;
    } else if (key == "accepted") {
      if (value.get(e.accepted)) return false;
    } else if (key == "duplicates") {
      if (value.get(e.duplicates)) return false;
    } else if (key == "rejected") {
      if (value.get(e.rejected)) return false;
    } else if (key == "card") {
      if (value.get(e.card)) return false;
    } else if (key == "operator") {
      if (value.get(e.operator_id)) return false;
    } else if (key == "count") {
      if (value.get(e.count)) return false;
    } else if (key == "recovered") {
      if (value.get(e.recovered)) return false;
    }
  }
  return true;
}

template <class Map>
typename Map::mapped_type& group(Map& m, std::string_view key) {
  auto it = m.find(key);
  if (it == m.end()) it = m.emplace(std::string(key), typename Map::mapped_type{}).first;
  return it->second;
}

void log_tear(TraceStats& st, const EventView& e, const char* what) {
  ++st.tear_events;
  if (st.tear_log.size() < TraceStats::kTearLogMax) {
    st.tear_log.push_back({e.t_us, std::string(e.card), std::string(e.vehicle), what});
  }
}

void add_event(TraceStats& st, const EventView& e) {
  st.last_t_us = std::max(st.last_t_us, e.t_us);
  if (e.type == "swipe") {
    if (e.recovered) log_tear(st, e, "earlier torn purchase completed (GET TRANSACTION PROVE)");
    if (!e.ok && e.reason == "torn") log_tear(st, e, "card left the field mid-transaction");
    auto& b = st.per_minute[e.t_us / 60'000'000];
    if (e.ok) {
      ++b.swipes;
      b.amount_fen += e.amount_fen;
      auto& r = group(st.per_route, e.route.empty() ? "?" : e.route);
      ++r.swipes;
      r.amount_fen += e.amount_fen;
      auto& v = group(st.per_vehicle, e.vehicle.empty() ? "?" : e.vehicle);
      ++v.swipes;
      v.amount_fen += e.amount_fen;
    } else {
      ++b.refusals;
      ++group(st.refusal_reasons, e.reason.empty() ? "unknown" : e.reason);
    }
  } else if (e.type == "clearing") {
    st.cleared.push_back({std::string(e.operator_id), std::string(e.route), e.count, e.amount_fen});
  } else if (e.type == "upload_ack") {
    ++st.batches;
    st.records_accepted += e.accepted;
    st.records_duplicate += e.duplicates;
    st.records_rejected += e.rejected;
  }
}

}  // namespace

Result<TraceStats> aggregate_trace(const std::string& trace_path, std::size_t chunk_bytes) {
  std::ifstream in(trace_path, std::ios::binary);
  if (!in) return Result<TraceStats>(Errc::kNotFound, "cannot read trace " + trace_path);
  TraceStats st;
  simdjson::dom::parser parser;
  // The trace is read in chunks of whole lines, each parsed as a stream of documents.
  std::string carry;
  std::vector<char> buf(std::max<std::size_t>(chunk_bytes, 64));
  EventView e;
  for (;;) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const std::size_t got = static_cast<std::size_t>(in.gcount());
    if (got == 0 && carry.empty()) break;
    std::string chunk = std::move(carry);
    chunk.append(buf.data(), got);
    carry.clear();
    if (got > 0) {
      const std::size_t last_nl = chunk.rfind('\n');
      if (last_nl == std::string::npos) {
        carry = std::move(chunk);  // a line longer than a chunk: keep reading
        continue;
      }
      carry.assign(chunk, last_nl + 1);
      chunk.resize(last_nl + 1);
    }
    simdjson::padded_string padded(chunk);
    simdjson::dom::document_stream docs;
    if (parser.parse_many(padded, padded.size()).get(docs)) {
      return Result<TraceStats>(Errc::kMalformed, trace_path + ": not JSON lines");
    }
    std::size_t parsed = 0;
    for (auto doc : docs) {
      ++st.lines;
      ++parsed;
      simdjson::dom::element el;
      if (doc.get(el) || !read_event(el, e)) {
        return Result<TraceStats>(
            Errc::kMalformed, trace_path + ":" + std::to_string(st.lines) + ": not a JSON object");
      }
      add_event(st, e);
      // The operator reports: few events, kept whole for their own renderer.
      if (e.type.starts_with("op_") || e.type == "settlement_batch" ||
          e.type == "operator_reports_skipped") {
        st.operator_events.push_back(Json::parse(simdjson::minify(el)));
      }
    }
    // Bytes the stream could not parse as a document (a malformed last line) are an error.
    if (docs.truncated_bytes() > 0) {
      return Result<TraceStats>(Errc::kMalformed, trace_path + ":" + std::to_string(st.lines + 1) +
                                                      ": not a JSON object");
    }
    if (got == 0) break;
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
      o << ">\n      <failure message=\"" << escape(msg + " (seed " + std::to_string(r.seed) + ")")
        << "\" type=\"expectation\">"
        << escape(e.where + ": " + msg + "\nseed " + std::to_string(r.seed) +
                  "; replay: " + r.replay_command)
        << "</failure>\n    </testcase>\n";
    }
    if (!r.error.empty()) {
      o << "    <testcase classname=\"" << escape(r.scenario) << "\" name=\"script\" time=\"0\">\n"
        << "      <error message=\"" << escape(r.error + " (seed " + std::to_string(r.seed) + ")")
        << "\" type=\"script\">" << escape(r.error + "\nseed " + std::to_string(r.seed))
        << "</error>\n    </testcase>\n";
    }
    o << "  </testsuite>\n";
  }
  o << "</testsuites>\n";
  return o.str();
}

namespace {
const char* const kCss = R"(
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

}  // namespace

const char* report_css() {
  return kCss;
}

namespace {
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
      << svg::line_chart(
             {"Swipes per minute", "virtual time since start (min)", "swipes per minute"},
             {swipes, refused})
      << svg::line_chart(
             {"Money debited per minute", "virtual time since start (min)", "yuan per minute"},
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

  if (!st.cleared.empty()) {
    // Reconciliation: the backend's clearing against what the validators' swipes in the trace
    // add up to, route by route; every difference is listed.
    o << "<section id='clearing'><h2>Clearing and reconciliation</h2><table><tr><th>operator</th>"
      << "<th>route</th><th class='num'>cleared swipes</th><th class='num'>cleared (yuan)</th>"
      << "<th class='num'>validators (yuan)</th><th>difference</th></tr>";
    std::int64_t total_cleared = 0;
    for (const auto& c : st.cleared) {
      auto it = st.per_route.find(c.route);
      const std::int64_t sold = it == st.per_route.end() ? 0 : it->second.amount_fen;
      total_cleared += c.amount_fen;
      o << "<tr><td>" << escape(c.operator_id) << "</td><td>" << escape(c.route)
        << "</td><td class='num'>" << svg::thousands(c.count) << "</td><td class='num'>"
        << svg::yuan(c.amount_fen) << "</td><td class='num'>" << svg::yuan(sold)
        << "</td><td class='"
        << (sold == c.amount_fen ? "ok'>none" : "bad'>" + svg::yuan(c.amount_fen - sold))
        << "</td></tr>";
    }
    o << "<tr><th colspan='3'>total cleared</th><th class='num'>" << svg::yuan(total_cleared)
      << "</th><td></td><td></td></tr></table></section>";
  }

  if (st.tear_events > 0) {
    o << "<section id='tearing'><h2>Tearing and recovery</h2><p>" << st.tear_events << " events";
    if (st.tear_events > st.tear_log.size()) o << " (the first " << st.tear_log.size() << " shown)";
    o << "</p><table><tr><th class='num'>virtual time (s)</th><th>card</th><th>vehicle</th>"
      << "<th>what happened</th></tr>";
    for (const auto& t : st.tear_log) {
      o << "<tr><td class='num'>" << t.t_us / 1'000'000 << "</td><td><code>" << escape(t.card)
        << "</code></td><td>" << escape(t.vehicle) << "</td><td>" << escape(t.what) << "</td></tr>";
    }
    o << "</table></section>";
  }

  o << operator_html_sections(st);

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

namespace {
Result<RunSummary> load_summary(const std::string& dir) {
  auto text = read_text_file(dir + "/summary.json");
  if (!text) return text.status();
  Json j = Json::parse(*text, nullptr, false);
  if (j.is_discarded()) {
    return Result<RunSummary>(Errc::kMalformed, dir + "/summary.json is not JSON");
  }
  return summary_from_json(j);
}

std::string signed_delta(double a, double b) {
  char buf[64];
  const double d = b - a;
  if (a != 0) {
    std::snprintf(buf, sizeof buf, "%+.10g (%+.1f%%)", d, 100.0 * d / a);
  } else {
    std::snprintf(buf, sizeof buf, "%+.10g", d);
  }
  return buf;
}
}  // namespace

namespace {
Json read_summary_json(const std::string& dir) {
  auto text = read_text_file(dir + "/summary.json");
  if (!text) return Json();
  Json j = Json::parse(*text, nullptr, false);
  return j.is_discarded() ? Json() : j;
}
}  // namespace

Result<RunDiff> diff_runs(const std::string& run_a, const std::string& run_b) {
  {
    // Two load runs: their summaries hold everything (there is no trace).
    const Json ja = read_summary_json(run_a), jb = read_summary_json(run_b);
    if (is_load_summary(ja) != is_load_summary(jb)) {
      return Result<RunDiff>(Errc::kInvalidArgument,
                             "cannot compare a `citycard load` run with a scenario run");
    }
    if (is_load_summary(ja)) {
      LoadDiff ld = diff_load_runs(run_a, ja, run_b, jb);
      RunDiff d;
      d.text = std::move(ld.text);
      d.regressions = ld.regressions;
      d.fixes = ld.fixes;
      return d;
    }
  }
  auto a = load_summary(run_a);
  if (!a) return a.status();
  auto b = load_summary(run_b);
  if (!b) return b.status();
  auto ta = aggregate_trace(run_a + "/trace.jsonl");
  if (!ta) return ta.status();
  auto tb = aggregate_trace(run_b + "/trace.jsonl");
  if (!tb) return tb.status();
  RunDiff d;
  d.same_trace = !a->trace_digest.empty() && a->trace_digest == b->trace_digest;
  std::ostringstream o;
  char line[512];
  o << "A: " << run_a << "  (" << a->scenario << ", seed " << a->seed << ", "
    << (a->ok() ? "PASS" : "FAIL") << ")\n";
  o << "B: " << run_b << "  (" << b->scenario << ", seed " << b->seed << ", "
    << (b->ok() ? "PASS" : "FAIL") << ")\n";
  o << "trace: " << (d.same_trace ? "identical (same digest)" : "different") << "\n\n";

  o << "verdicts:\n";
  std::map<std::string, bool> va, vb;
  for (const auto& e : a->expectations) va[e.name] = e.passed;
  for (const auto& e : b->expectations) vb[e.name] = e.passed;
  std::size_t changed = 0;
  for (const auto& [name, pa] : va) {
    auto it = vb.find(name);
    if (it == vb.end()) {
      ++changed;
      if (pa) ++d.regressions;
      o << "  - " << name << ": " << (pa ? "pass" : "FAIL") << " -> (gone)\n";
    } else if (it->second != pa) {
      ++changed;
      (pa ? d.regressions : d.fixes) += 1;
      o << "  " << (pa ? "! " : "+ ") << name << ": " << (pa ? "pass -> FAIL" : "FAIL -> pass")
        << "\n";
    }
  }
  for (const auto& [name, pb] : vb) {
    if (!va.count(name)) {
      ++changed;
      o << "  + " << name << ": (new) -> " << (pb ? "pass" : "FAIL") << "\n";
    }
  }
  if (changed == 0) o << "  (no verdict changed)\n";

  o << "\nfigures:                                    A               B   change\n";
  auto num = [](double v) {
    char b[40];
    if (v == static_cast<double>(static_cast<long long>(v)) && std::fabs(v) < 1e15) {
      std::snprintf(b, sizeof b, "%lld", static_cast<long long>(v));
    } else {
      std::snprintf(b, sizeof b, "%.6g", v);
    }
    return std::string(b);
  };
  auto row = [&](const std::string& name, double x, double y) {
    std::snprintf(line, sizeof line, "  %-34s %14s  %14s   %s\n", name.c_str(), num(x).c_str(),
                  num(y).c_str(), x == y ? "=" : signed_delta(x, y).c_str());
    o << line;
  };
  row("swipes", static_cast<double>(a->swipes), static_cast<double>(b->swipes));
  row("refusals", static_cast<double>(a->refusals), static_cast<double>(b->refusals));
  row("virtual_duration_s", a->virtual_duration_s, b->virtual_duration_s);
  row("swipes_per_s_wall", a->swipes_per_s_wall, b->swipes_per_s_wall);
  for (const auto& [k, v] : a->figures.items()) {
    if (!v.is_number() || !b->figures.contains(k) || !b->figures[k].is_number()) continue;
    row(k, v.get<double>(), b->figures[k].get<double>());
  }
  o << "\nper route (swipes):\n";
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> routes;
  for (const auto& [r, g] : ta->per_route) routes[r].first = g.swipes;
  for (const auto& [r, g] : tb->per_route) routes[r].second = g.swipes;
  for (const auto& [r, n] : routes) {
    row(r, static_cast<double>(n.first), static_cast<double>(n.second));
  }
  o << "\n" << d.regressions << " regression(s), " << d.fixes << " fix(es)\n";
  d.text = o.str();
  return d;
}

std::string clearing_csv(const TraceStats& st) {
  std::ostringstream o;
  o << "operator,route,swipes,amount_fen,amount_yuan\n";
  auto field = [](const std::string& v) {
    // RFC 4180: quote a field holding a comma, quote or line break.
    if (v.find_first_of(",\"\r\n") == std::string::npos) return v;
    std::string q = "\"";
    for (char c : v) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  };
  for (const auto& c : st.cleared) {
    char yuan[32];
    std::snprintf(yuan, sizeof yuan, "%lld.%02lld", static_cast<long long>(c.amount_fen / 100),
                  static_cast<long long>(std::llabs(c.amount_fen % 100)));
    o << field(c.operator_id) << ',' << field(c.route) << ',' << c.count << ',' << c.amount_fen
      << ',' << yuan << "\n";
  }
  return o.str();
}

Status render_run(const std::string& dir) {
  // A wall-time load run's folder has no trace: its summary holds everything.
  if (auto text = read_text_file(dir + "/summary.json"); text) {
    Json j = Json::parse(*text, nullptr, false);
    if (!j.is_discarded() && is_load_summary(j)) return render_load_run(dir, j);
  }
  auto summary = load_summary(dir);
  if (!summary) return summary.status();
  auto stats = aggregate_trace(dir + "/trace.jsonl");
  if (!stats) return stats.status();
  if (Status s = write_text_file(dir + "/report.html", html_report(*summary, *stats)); !s) return s;
  if (!stats->cleared.empty()) {
    if (Status s = write_text_file(dir + "/clearing.csv", clearing_csv(*stats)); !s) return s;
  }
  for (const auto& [name, text] : operator_csv_files(*stats)) {
    if (Status s = write_text_file(dir + "/" + name, text); !s) return s;
  }
  return write_text_file(dir + "/junit.xml", junit_xml({*summary}, "citycard"));
}

}  // namespace citycard::reports
