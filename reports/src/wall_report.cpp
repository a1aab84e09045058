#include "citycard/reports/wall_report.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "citycard/reports/report.h"
#include "citycard/reports/run_summary.h"
#include "citycard/reports/svg.h"

namespace citycard::reports {

using svg::escape;

namespace {

double num(const Json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_number() ? j[key].get<double>() : 0.0;
}

std::string fixed(double v, int digits = 2) {
  char b[48];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

std::string count(double v) {
  return svg::thousands(std::llround(v));
}

void kpi(std::ostringstream& o, const std::string& label, const std::string& value) {
  o << "<div class='kpi'>" << escape(label) << "<b>" << escape(value) << "</b></div>";
}

bool is_sweep(const Json& s) {
  return s.contains("sweep") && s["sweep"].is_array();
}

// x of a window on one time line: a sweep's steps each restart at 0, so they are laid end to
// end.
std::vector<double> window_ends(const Json& windows) {
  std::vector<double> xs;
  double offset = 0, last_end = 0;
  Json last_step;
  for (const auto& w : windows) {
    const Json step = w.value("step", Json());
    if (!xs.empty() && step != last_step) offset = last_end;
    last_step = step;
    last_end = offset + num(w, "t_end_s");
    xs.push_back(last_end);
  }
  return xs;
}

std::string csv_field(const std::string& v) {
  if (v.find_first_of(",\"\r\n") == std::string::npos) return v;
  std::string q = "\"";
  for (char c : v) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string g(double v) {
  char b[48];
  std::snprintf(b, sizeof b, "%.10g", v);
  return b;
}

}  // namespace

bool is_load_summary(const Json& s) {
  return s.is_object() && s.contains("tool") && s["tool"] == "citycard load";
}

std::vector<LoadCheck> load_checks(const Json& s) {
  std::vector<LoadCheck> out;
  const Json backend = s.value("backend", Json::object());
  if (!is_sweep(s)) {
    auto zero = [&](const char* name, const char* key, const char* what) {
      const double n = num(s, key);
      out.push_back({name, n == 0, n == 0 ? "" : count(n) + " " + what});
    };
    zero("no errors", "errors", "errors (error replies, timeouts, records refused)");
    zero("nothing refused", "refused", "requests refused at the in-flight bound");
    zero("no request left unfinished", "unfinished_requests", "requests never answered");
    zero("no record left unfinished", "unfinished_records", "records never acknowledged");
  }
  if (backend.contains("ledger_balanced")) {
    const bool ok = backend["ledger_balanced"].get<bool>();
    out.push_back(
        {"ledger balanced", ok, ok ? "" : backend.value("ledger_problem", "not balanced")});
  }
  if (s.value("stopped_early", false)) {
    out.push_back({"ran the whole schedule", false, "stopped early (Ctrl-C)"});
  }
  return out;
}

std::string load_html_report(const Json& s) {
  const auto checks = load_checks(s);
  std::size_t failed = 0;
  for (const auto& c : checks) failed += c.passed ? 0 : 1;
  const bool pass = failed == 0 && s.value("exit_code", 0) == 0;
  const std::string scenario = s.value("scenario", "load");
  const std::uint64_t seed = s.value("seed", std::uint64_t{0});
  const Json knobs = s.value("knobs", Json::object());
  const Json windows = s.value("windows", Json::array());
  const Json ops = s.value("ops", Json::object());
  std::ostringstream o;
  o << "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
    << "<meta name='viewport' content='width=device-width,initial-scale=1'>"
    << "<title>citycard load: " << escape(scenario) << " — " << (pass ? "PASS" : "FAIL")
    << "</title><style>" << report_css() << "</style></head><body>";
  o << "<header class='" << (pass ? "pass" : "fail") << "'><h1>" << (pass ? "PASS" : "FAIL")
    << " · " << escape(scenario) << " · wall-time load</h1><p>seed " << seed << " · "
    << (is_sweep(s) ? "saturation sweep of " + std::to_string(s["sweep"].size()) + " steps"
                    : "offered " + count(num(s, "offered_per_s")) + "/s, achieved " +
                          count(num(s, "achieved_per_s")) + "/s")
    << " · p99 " << fixed(num(s, "p99_ms")) << " ms</p></header><main>";

  if (!pass) {
    o << "<section id='failures'><h2>What failed</h2><table><tr><th>check</th><th>why</th></tr>";
    for (const auto& c : checks) {
      if (c.passed) continue;
      o << "<tr><td class='bad'>" << escape(c.name) << "</td><td>" << escape(c.message)
        << "</td></tr>";
    }
    if (failed == 0) {
      o << "<tr><td class='bad'>exit status " << s.value("exit_code", 0) << "</td><td></td></tr>";
    }
    o << "</table>";
    if (s.contains("error_codes") && !s["error_codes"].empty()) {
      o << "<p>Error codes: <code>" << escape(s["error_codes"].dump()) << "</code></p>";
    }
    o << "<p>Again: <code>citycard load " << escape(s.value("scenario_path", "SCENARIO"))
      << " --seed " << seed << "</code> with the knobs below.</p></section>";
  }

  o << "<section><h2>Run</h2><div class='kpis'>";
  kpi(o, "offered", count(num(s, "offered_per_s")) + " /s");
  kpi(o, "achieved", count(num(s, "achieved_per_s")) + " /s");
  kpi(o, "records ingested", count(num(s, "records_per_s")) + " /s");
  kpi(o, "p50 / p99 / p99.9",
      fixed(num(s, "p50_ms")) + " / " + fixed(num(s, "p99_ms")) + " / " + fixed(num(s, "p999_ms")) +
          " ms");
  kpi(o, "max", fixed(num(s, "max_ms")) + " ms");
  kpi(o, "requests", count(num(s, "requests")));
  o << "</div><table style='margin-top:12px'><tr><th>scenario file</th><td><code>"
    << escape(s.value("scenario_path", "")) << "</code></td></tr>"
    << "<tr><th>duration</th><td>" << fixed(num(s, "duration_s"), 1) << " s scheduled, "
    << fixed(num(s, "elapsed_s"), 1) << " s elapsed</td></tr>"
    << "<tr><th>late sends</th><td>" << count(num(s, "late_sends"))
    << "</td></tr><tr><th>errors / refused</th><td>" << count(num(s, "errors")) << " / "
    << count(num(s, "refused")) << "</td></tr><tr><th>unfinished</th><td>"
    << count(num(s, "unfinished_requests")) << " requests, " << count(num(s, "unfinished_records"))
    << " records</td></tr><tr><th>load generator</th><td>" << count(num(s, "workers"))
    << " worker thread(s), busy " << fixed(100 * num(s, "worker_busy_fraction"), 0)
    << "%</td></tr></table></section>";

  o << "<section><h2>Seed and knobs</h2><table><tr><th>seed</th><td class='num'>" << seed
    << "</td></tr>";
  for (const auto& [k, v] : knobs.items()) {
    o << "<tr><th>" << escape(k) << "</th><td class='num'>" << escape(v.dump()) << "</td></tr>";
  }
  if (s.contains("city")) {
    for (const auto& [k, v] : s["city"].items()) {
      o << "<tr><th>city." << escape(k) << "</th><td class='num'>" << escape(v.dump())
        << "</td></tr>";
    }
  }
  o << "</table></section>";

  if (!windows.empty()) {
    const auto xs = window_ends(windows);
    svg::Series offered{"offered (/s)", {}}, achieved{"achieved (/s)", {}};
    svg::Series p50{"p50", {}}, p99{"p99", {}}, p999{"p99.9", {}};
    for (std::size_t i = 0; i < windows.size(); ++i) {
      const auto& w = windows[i];
      offered.points.emplace_back(xs[i], num(w, "offered_per_s"));
      achieved.points.emplace_back(xs[i], num(w, "achieved_per_s"));
      p50.points.emplace_back(xs[i], num(w, "p50_ms"));
      p99.points.emplace_back(xs[i], num(w, "p99_ms"));
      p999.points.emplace_back(xs[i], num(w, "p999_ms"));
    }
    const std::string x_label =
        is_sweep(s) ? "wall time, the sweep's steps end to end (s)" : "wall time since start (s)";
    o << "<section id='over-time'><h2>Offered and achieved over time</h2>"
      << svg::line_chart({"Offered and achieved rate per window", x_label, "rate (per second)"},
                         {offered, achieved})
      << svg::line_chart(
             {"Latency percentiles per window (all backend requests)", x_label, "latency (ms)"},
             {p50, p99, p999})
      << "<p>One point per " << fixed(num(knobs, "window_ms"), 0)
      << " ms window, by the wall time at which things happened. Latency is from each "
         "request's planned send time.</p></section>";
  }

  if (s.contains("latency_distribution") && !s["latency_distribution"].empty()) {
    std::vector<svg::Bin> bins;
    for (const auto& b : s["latency_distribution"]) {
      bins.push_back({num(b, "from_ms"), num(b, "to_ms"), num(b, "count")});
    }
    o << "<section id='distribution'><h2>Latency distribution</h2>"
      << svg::histogram({"Latency of every backend request (" + count(num(s, "requests")) + ")",
                         "latency (ms), bins 1-2-5 per decade", "requests"},
                        bins)
      << "</section>";
  }

  if (!ops.empty()) {
    o << "<section id='operations'><h2>Per operation</h2><table><tr><th>operation</th>"
      << "<th class='num'>planned</th><th class='num'>ok</th><th class='num'>errors</th>"
      << "<th class='num'>timeouts</th><th class='num'>refused</th><th class='num'>late</th>"
      << "<th class='num'>offered /s</th><th class='num'>achieved /s</th>"
      << "<th class='num'>p50 ms</th><th class='num'>p99 ms</th><th class='num'>p99.9 ms</th>"
      << "<th class='num'>max ms</th></tr>";
    for (const auto& [name, op] : ops.items()) {
      const Json lat = op.value("latency", Json::object());
      o << "<tr><td>" << escape(name) << "</td>";
      for (const char* k : {"planned", "ok", "errors", "timeouts", "refused", "late"}) {
        const bool bad = std::string(k) != "planned" && std::string(k) != "ok" && num(op, k) > 0;
        o << "<td class='num" << (bad ? " bad" : "") << "'>" << count(num(op, k)) << "</td>";
      }
      o << "<td class='num'>" << count(num(op, "offered_per_s")) << "</td><td class='num'>"
        << count(num(op, "achieved_per_s")) << "</td>";
      for (const char* k : {"p50_ms", "p99_ms", "p999_ms", "max_ms"}) {
        o << "<td class='num'>" << fixed(num(lat, k)) << "</td>";
      }
      o << "</tr>";
    }
    o << "</table><p><code>swipe</code> latency is the time at the gate (planned tap to sale), "
         "not a backend request; <code>flush</code> is the end-of-run upload of what the buses "
         "held, outside the headline percentiles.</p></section>";
  }

  if (is_sweep(s)) {
    svg::Series achieved{"achieved (/s)", {}}, ideal{"offered (/s)", {}};
    svg::Series p50{"p50", {}}, p99{"p99", {}}, p999{"p99.9", {}};
    for (const auto& st : s["sweep"]) {
      const double x = num(st, "offered_per_s");
      achieved.points.emplace_back(x, num(st, "achieved_per_s"));
      ideal.points.emplace_back(x, x);
      p50.points.emplace_back(x, num(st, "p50_ms"));
      p99.points.emplace_back(x, num(st, "p99_ms"));
      p999.points.emplace_back(x, num(st, "p999_ms"));
    }
    o << "<section id='saturation'><h2>Saturation curve</h2>"
      << svg::line_chart(
             {"Achieved against offered", "offered rate (per second)", "rate (per second)"},
             {achieved, ideal})
      << svg::line_chart(
             {"Latency against offered rate", "offered rate (per second)", "latency (ms)"},
             {p50, p99, p999})
      << "<table><tr><th class='num'>step</th><th class='num'>rate /s</th>"
      << "<th class='num'>offered /s</th><th class='num'>achieved /s</th>"
      << "<th class='num'>p50 ms</th><th class='num'>p99 ms</th><th class='num'>p99.9 ms</th>"
      << "<th class='num'>max ms</th><th class='num'>errors</th><th class='num'>refused</th>"
      << "<th>kept up</th></tr>";
    std::size_t i = 0;
    for (const auto& st : s["sweep"]) {
      const bool sat = st.value("saturated", false);
      o << "<tr><td class='num'>" << i++ << "</td><td class='num'>" << count(num(st, "rate_per_s"))
        << "</td><td class='num'>" << count(num(st, "offered_per_s")) << "</td><td class='num'>"
        << count(num(st, "achieved_per_s")) << "</td>";
      for (const char* k : {"p50_ms", "p99_ms", "p999_ms", "max_ms"}) {
        o << "<td class='num'>" << fixed(num(st, k)) << "</td>";
      }
      o << "<td class='num'>" << count(num(st, "errors")) << "</td><td class='num'>"
        << count(num(st, "refused")) << "</td><td class='" << (sat ? "bad'>saturated" : "ok'>yes")
        << "</td></tr>";
    }
    o << "</table><p>A step is saturated when the backend achieved below 90% of what was "
         "offered, or refused or left anything unfinished.</p></section>";
  }

  o << "<section><h2>Backend and host</h2><table>";
  for (const char* part : {"backend", "host", "send_lag"}) {
    if (!s.contains(part) || !s[part].is_object()) continue;
    for (const auto& [k, v] : s[part].items()) {
      o << "<tr><th>" << part << '.' << escape(k) << "</th><td class='num'>"
        << escape(v.is_string() ? v.get<std::string>() : v.dump()) << "</td></tr>";
    }
  }
  o << "</table></section>";

  o << "<section><h2>Checks</h2><table><tr><th>check</th><th>verdict</th><th>why</th></tr>";
  for (const auto& c : checks) {
    o << "<tr><td>" << escape(c.name) << "</td><td class='" << (c.passed ? "ok'>pass" : "bad'>FAIL")
      << "</td><td>" << escape(c.message) << "</td></tr>";
  }
  o << "</table></section></main></body></html>\n";
  return o.str();
}

std::string load_junit_xml(const Json& s) {
  const auto checks = load_checks(s);
  std::size_t failures = 0;
  for (const auto& c : checks) failures += c.passed ? 0 : 1;
  const std::string scenario = s.value("scenario", "load");
  const std::uint64_t seed = s.value("seed", std::uint64_t{0});
  const std::string time = g(num(s, "elapsed_s"));
  std::ostringstream o;
  o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  o << "<testsuites name=\"citycard load\" tests=\"" << checks.size() << "\" failures=\""
    << failures << "\" errors=\"0\" time=\"" << time << "\">\n";
  o << "  <testsuite name=\"" << escape(scenario) << "\" tests=\"" << checks.size()
    << "\" failures=\"" << failures << "\" errors=\"0\" skipped=\"0\" time=\"" << time << "\">\n";
  o << "    <properties>\n      <property name=\"seed\" value=\"" << seed << "\"/>\n"
    << "      <property name=\"offered_per_s\" value=\"" << g(num(s, "offered_per_s")) << "\"/>\n"
    << "      <property name=\"achieved_per_s\" value=\"" << g(num(s, "achieved_per_s"))
    << "\"/>\n      <property name=\"p99_ms\" value=\"" << g(num(s, "p99_ms")) << "\"/>\n"
    << "    </properties>\n";
  for (const auto& c : checks) {
    o << "    <testcase classname=\"" << escape("load." + scenario) << "\" name=\""
      << escape(c.name) << "\" time=\"0\"";
    if (c.passed) {
      o << "/>\n";
      continue;
    }
    o << ">\n      <failure message=\""
      << escape(c.message + " (seed " + std::to_string(seed) + ")") << "\" type=\"load\">"
      << escape(c.message + "\nseed " + std::to_string(seed)) << "</failure>\n    </testcase>\n";
  }
  o << "  </testsuite>\n</testsuites>\n";
  return o.str();
}

std::string load_ops_csv(const Json& s) {
  std::ostringstream o;
  o << "op,planned,sent,ok,errors,timeouts,refused,late,offered_per_s,achieved_per_s,p50_ms,"
       "p90_ms,p99_ms,p999_ms,max_ms\n";
  const Json ops = s.value("ops", Json::object());
  for (const auto& [name, op] : ops.items()) {
    const Json lat = op.value("latency", Json::object());
    o << csv_field(name);
    for (const char* k : {"planned", "sent", "ok", "errors", "timeouts", "refused", "late"}) {
      o << ',' << std::llround(num(op, k));
    }
    o << ',' << g(num(op, "offered_per_s")) << ',' << g(num(op, "achieved_per_s"));
    for (const char* k : {"p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"}) {
      o << ',' << g(num(lat, k));
    }
    o << '\n';
  }
  return o.str();
}

std::string load_sweep_csv(const Json& s) {
  std::ostringstream o;
  o << "step,rate_per_s,offered_per_s,achieved_per_s,p50_ms,p99_ms,p999_ms,max_ms,errors,"
       "refused,saturated\n";
  if (!is_sweep(s)) return o.str();
  std::size_t i = 0;
  for (const auto& st : s["sweep"]) {
    o << i++;
    for (const char* k : {"rate_per_s", "offered_per_s", "achieved_per_s", "p50_ms", "p99_ms",
                          "p999_ms", "max_ms"}) {
      o << ',' << g(num(st, k));
    }
    o << ',' << std::llround(num(st, "errors")) << ',' << std::llround(num(st, "refused")) << ','
      << (st.value("saturated", false) ? "true" : "false") << '\n';
  }
  return o.str();
}

LoadDiff diff_load_runs(const std::string& name_a, const Json& a, const std::string& name_b,
                        const Json& b) {
  LoadDiff d;
  std::ostringstream o;
  auto head = [&](const char* tag, const std::string& name, const Json& s) {
    std::size_t failed = 0;
    for (const auto& c : load_checks(s)) failed += c.passed ? 0 : 1;
    o << tag << ": " << name << "  (load " << s.value("scenario", "?") << ", seed "
      << s.value("seed", std::uint64_t{0}) << ", " << (failed == 0 ? "PASS" : "FAIL") << ")\n";
  };
  head("A", name_a, a);
  head("B", name_b, b);
  o << "\nchecks:\n";
  std::map<std::string, bool> ca, cb;
  for (const auto& c : load_checks(a)) ca[c.name] = c.passed;
  for (const auto& c : load_checks(b)) cb[c.name] = c.passed;
  std::size_t changed = 0;
  for (const auto& [name, pb] : cb) {
    const auto it = ca.find(name);
    const bool pa = it == ca.end() ? true : it->second;
    if (pa == pb) continue;
    ++changed;
    (pa ? d.regressions : d.fixes) += 1;
    o << "  " << (pa ? "! " : "+ ") << name << ": " << (pa ? "pass -> FAIL" : "FAIL -> pass")
      << "\n";
  }
  if (changed == 0) o << "  (no check changed)\n";
  o << "\nfigures:                                    A               B   change\n";
  auto row = [&](const std::string& name, double x, double y) {
    char line[256], change[64];
    if (x == y) {
      std::snprintf(change, sizeof change, "=");
    } else if (x != 0) {
      std::snprintf(change, sizeof change, "%+.6g (%+.1f%%)", y - x, 100.0 * (y - x) / x);
    } else {
      std::snprintf(change, sizeof change, "%+.6g", y - x);
    }
    std::snprintf(line, sizeof line, "  %-34s %14.6g  %14.6g   %s\n", name.c_str(), x, y, change);
    o << line;
  };
  for (const char* k :
       {"offered_per_s", "achieved_per_s", "records_per_s", "p50_ms", "p90_ms", "p99_ms", "p999_ms",
        "max_ms", "errors", "refused", "late_sends", "unfinished_requests", "unfinished_records"}) {
    row(k, num(a, k), num(b, k));
  }
  const Json& oa = a.contains("ops") ? a["ops"] : Json::object();
  const Json& ob = b.contains("ops") ? b["ops"] : Json::object();
  if (oa.is_object() && ob.is_object()) {
    for (const auto& [name, op] : oa.items()) {
      if (!ob.contains(name)) continue;
      row(name + " p99_ms", num(op.value("latency", Json::object()), "p99_ms"),
          num(ob[name].value("latency", Json::object()), "p99_ms"));
    }
  }
  o << "\n" << d.regressions << " regression(s), " << d.fixes << " fix(es)\n";
  d.text = o.str();
  return d;
}

Status render_load_run(const std::string& dir, const Json& summary) {
  if (Status st = write_text_file(dir + "/report.html", load_html_report(summary)); !st) return st;
  if (Status st = write_text_file(dir + "/ops.csv", load_ops_csv(summary)); !st) return st;
  if (is_sweep(summary)) {
    if (Status st = write_text_file(dir + "/sweep.csv", load_sweep_csv(summary)); !st) return st;
  }
  return write_text_file(dir + "/junit.xml", load_junit_xml(summary));
}

}  // namespace citycard::reports
