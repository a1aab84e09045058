#include "citycard/reports/certify_report.h"

#include <sstream>

#include "citycard/reports/report.h"
#include "citycard/reports/run_summary.h"
#include "citycard/reports/svg.h"
#include "citycard/reports/trace.h"

namespace citycard::reports {

using svg::escape;

std::size_t CertifyResult::passed_count() const {
  std::size_t n = 0;
  for (const auto& c : cases) n += c.passed ? 1 : 0;
  return n;
}

std::string certificate_json(const CertifyResult& r) {
  Json j = Json::object();
  j["format"] = "citycard-terminal-certificate/1";
  j["terminal"] = {{"name", r.terminal},
                   {"kind", r.terminal_kind},
                   {"vendor", r.vendor},
                   {"endpoint", r.endpoint}};
  j["suite"] = {{"name", r.suite},
                {"path", r.suite_path},
                {"version", r.suite_version},
                {"sha256", r.suite_sha256}};
  j["issued_unix_s"] = r.issued_unix_s;
  j["verdict"] = r.passed() ? "pass" : "fail";
  j["passed"] = r.passed_count();
  j["total"] = r.cases.size();
  Json cases = Json::array();
  for (const auto& c : r.cases) {
    Json e = {{"name", c.name}, {"verdict", c.passed ? "pass" : "fail"}};
    if (!c.passed) e["message"] = c.message;
    cases.push_back(std::move(e));
  }
  j["cases"] = std::move(cases);
  return j.dump(2) + "\n";
}

std::string certify_junit(const CertifyResult& r) {
  RunSummary s;
  s.scenario = r.suite;
  s.scenario_path = r.suite_path;
  s.wall_duration_s = r.wall_s;
  s.replay_command = "citycard certify --suite " + r.suite_path + " --terminal " + r.endpoint;
  for (const auto& c : r.cases) {
    Expectation e;
    e.name = c.name;
    e.passed = c.passed;
    e.message = c.message;
    e.where = c.where;
    s.expectations.push_back(std::move(e));
  }
  return junit_xml({s}, "certify " + r.terminal);
}

std::string certify_html(const CertifyResult& r, const std::string& certificate,
                         const std::string& signer) {
  std::ostringstream o;
  o << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>certify " << escape(r.terminal)
    << "</title>\n<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
       "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.pass{color:#070}"
       ".fail{color:#b00;font-weight:bold}pre{background:#f4f4f4;padding:1em}</style></head>"
       "<body>\n";
  o << "<h1>Terminal certification: <span class=\"" << (r.passed() ? "pass\">PASS" : "fail\">FAIL")
    << "</span></h1>\n";
  o << "<p>terminal <b>" << escape(r.terminal) << "</b> (" << escape(r.terminal_kind) << ", "
    << escape(r.vendor) << ") at " << escape(r.endpoint) << "<br>suite <b>" << escape(r.suite)
    << "</b> version " << escape(r.suite_version) << " (" << escape(r.suite_path) << ", sha256 "
    << escape(r.suite_sha256.substr(0, 16)) << "…)<br>" << r.passed_count() << " of "
    << r.cases.size() << " cases passed in " << r.wall_s << " s</p>\n";
  o << "<table><tr><th>#</th><th>case</th><th>checks</th><th>verdict</th><th>why</th>"
       "<th>ms</th></tr>\n";
  for (std::size_t i = 0; i < r.cases.size(); ++i) {
    const auto& c = r.cases[i];
    o << "<tr><td>" << i + 1 << "</td><td>" << escape(c.name) << "</td><td>" << escape(c.targets)
      << "</td><td class=\"" << (c.passed ? "pass\">pass" : "fail\">FAIL") << "</td><td>"
      << escape(c.passed ? "" : c.message + (c.where.empty() ? "" : " (" + c.where + ")"))
      << "</td><td>" << static_cast<long long>(c.wall_ms) << "</td></tr>\n";
  }
  o << "</table>\n<h2>Certificate</h2>\n<p>Signed (ECDSA P-256, SHA-256) by " << escape(signer)
    << ": certificate.json, certificate.sig (DER), harness.pem; chain.pem and root.pem verify "
       "harness.pem (see hil/README.md).</p>\n<pre>"
    << escape(certificate) << "</pre>\n</body></html>\n";
  return o.str();
}

}  // namespace citycard::reports
