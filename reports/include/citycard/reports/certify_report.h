// What `citycard certify` writes: the certificate (JSON, to be signed by the harness), JUnit
// XML (through junit_xml) and an HTML page with the case table and the certificate.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "citycard/protocol/status.h"

namespace citycard::reports {

struct CertifyCase {
  std::string name;
  std::string targets;  // what the case checks, one line
  bool passed = false;
  std::string message;  // the first failed expectation or the script error
  std::string where;    // suite.lua:line of that failure
  double wall_ms = 0;
};

struct CertifyResult {
  std::string suite;  // the suite's name
  std::string suite_path;
  std::string suite_version;
  std::string suite_sha256;  // of the suite file as run
  std::string terminal;      // from the terminal's Hello
  std::string terminal_kind;
  std::string vendor;
  std::string endpoint;
  std::int64_t issued_unix_s = 0;
  double wall_s = 0;
  std::vector<CertifyCase> cases;

  std::size_t passed_count() const;
  bool passed() const { return !cases.empty() && passed_count() == cases.size(); }
};

// The certificate body: terminal, suite (name, version, sha256), the verdict, every case's
// verdict. Deterministic text (sorted keys, 2-space indent): what the harness signs.
std::string certificate_json(const CertifyResult& r);
std::string certify_junit(const CertifyResult& r);
// `signer` is the harness certificate's subject, for the page.
std::string certify_html(const CertifyResult& r, const std::string& certificate_json,
                         const std::string& signer);

}  // namespace citycard::reports
