// `citycard certify` against our own terminal through the bridge: the correct terminal passes
// every case of the bus suite, and each injected defect fails exactly the case that targets it.
// Then the whole thing as two processes, with the certificate's signature and chain checked by
// the openssl command line.
#include "citycard/scenarios/certify.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <thread>

#include "citycard/hil/bridge_terminal.h"
#include "citycard/reports/run_summary.h"
#include "test_process.h"

namespace citycard::scenarios {
namespace {

namespace fs = std::filesystem;
using testing::Child;

const std::string kBinary = std::string(CITYCARD_BINARY_DIR) + "/citycard";
const std::string kBusSuite =
    std::string(CITYCARD_SOURCE_DIR) + "/scenarios/conformance/bus_validator.lua";
const std::string kPosSuite = std::string(CITYCARD_SOURCE_DIR) + "/scenarios/conformance/pos.lua";

// Runs a suite with our terminal (with `defects`) on a thread of this process.
Result<reports::CertifyResult> run_suite(const std::string& suite,
                                         std::set<hil::TerminalDefect> defects,
                                         const std::string& kind = "bus") {
  CertifyOptions o;
  o.suite_path = suite;
  // A tap takes ~2 ms; a defective terminal that never reaches what a step waits for (two
  // queued records, say) fails the step after this failsafe.
  o.step_timeout_ms = 3000;
  std::jthread terminal;
  o.on_listening = [&](const std::string& endpoint) {
    hil::BridgeTerminalOptions t;
    t.endpoint = endpoint;
    t.kind = kind;
    t.defects = defects;
    t.poll_wait_ms = 100;
    terminal = std::jthread([t](std::stop_token stop) { (void)hil::run_bridge_terminal(t, stop); });
  };
  o.on_done = [&] {
    terminal.request_stop();
    if (terminal.joinable()) terminal.join();
  };
  return certify(o);
}

std::set<std::string> failed_cases(const reports::CertifyResult& r) {
  std::set<std::string> failed;
  for (const auto& c : r.cases) {
    if (!c.passed) failed.insert(c.name);
  }
  return failed;
}

std::string describe(const reports::CertifyResult& r) {
  std::string s;
  for (const auto& c : r.cases) {
    if (!c.passed) s += "\n  " + c.name + ": " + c.message + " (" + c.where + ")";
  }
  return s;
}

TEST(CertifySuite, TheCorrectTerminalPassesEveryBusCase) {
  auto r = run_suite(kBusSuite, {});
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_TRUE(r->passed()) << describe(*r);
  EXPECT_EQ(r->cases.size(), 13u);
  EXPECT_EQ(r->terminal, "citycard-terminal");
  EXPECT_EQ(r->suite_version, "1.0");
}

TEST(CertifySuite, EachDefectFailsTheCaseThatTargetsItAndNoOther) {
  const std::map<hil::TerminalDefect, std::string> targets = {
      {hil::TerminalDefect::kSkipBlacklist, "blacklisted_card_refused_and_blocked"},
      {hil::TerminalDefect::kWrongFare, "fare_and_discounts"},
      {hil::TerminalDefect::kNoTearRecovery, "tear_at_every_step_recovered"},
      {hil::TerminalDefect::kDoubleUpload, "record_uploaded_once_with_fields"},
      {hil::TerminalDefect::kBadMac, "mac1_right"},
      {hil::TerminalDefect::kSlow, "transaction_time_within_budget"},
      {hil::TerminalDefect::kIgnoreParams, "parameter_update_taken"},
      {hil::TerminalDefect::kNoOffline, "offline_then_upload"},
  };
  ASSERT_EQ(targets.size(), hil::kTerminalDefectCount) << "every defect has its case";
  for (const auto& [defect, target] : targets) {
    auto r = run_suite(kBusSuite, {defect});
    ASSERT_TRUE(r) << hil::terminal_defect_name(defect) << ": " << r.status().to_string();
    EXPECT_EQ(failed_cases(*r), std::set<std::string>{target})
        << "--defect " << hil::terminal_defect_name(defect) << ":" << describe(*r);
  }
}

TEST(CertifySuite, ThePosSuitePassesAndCatchesItsDefects) {
  auto r = run_suite(kPosSuite, {}, "pos");
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_TRUE(r->passed()) << describe(*r);
  r = run_suite(kPosSuite, {hil::TerminalDefect::kNoTearRecovery}, "pos");
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_EQ(failed_cases(*r), std::set<std::string>{"tear_at_every_step_recovered"})
      << describe(*r);
}

TEST(CertifySuite, ASuiteThatCannotRunIsAClearError) {
  CertifyOptions o;
  o.suite_path = "/no/such/suite.lua";
  auto r = certify(o);
  EXPECT_EQ(r.status().code(), Errc::kNotFound);
  const fs::path dir = fs::temp_directory_path() / ("certify-bad-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const struct {
    std::string text, message;
  } bad[] = {
      {"suite { name = 'x' }", "no case"},
      {"case('a', function() end) case('a', function() end)", "case 'a' twice"},
      {"case('a', 42)", "a function expected"},
      {"suite { name = 'x' } undefined_function()", "undefined_function"},
  };
  for (const auto& b : bad) {
    ASSERT_TRUE(reports::write_text_file((dir / "s.lua").string(), b.text));
    o.suite_path = (dir / "s.lua").string();
    o.hello_wait_ms = 100;
    r = certify(o);
    ASSERT_FALSE(r) << b.text;
    EXPECT_NE(r.status().message().find(b.message), std::string::npos)
        << b.text << ": " << r.status().to_string();
  }
  // A suite that is fine but no terminal comes: a timeout naming the endpoint.
  ASSERT_TRUE(reports::write_text_file((dir / "s.lua").string(), "case('a', function() end)"));
  r = certify(o);
  EXPECT_EQ(r.status().code(), Errc::kTimeout);
  EXPECT_NE(r.status().message().find("no terminal said Hello at tcp://127.0.0.1:"),
            std::string::npos);
  fs::remove_all(dir);
}

int sh(const std::string& command) {
  return std::system(("(" + command + ") >/dev/null 2>&1").c_str());
}

TEST(CertifyCommand, CertifiesATerminalProcessAndTheCertificateVerifiesWithOpenssl) {
  const fs::path out =
      fs::path(CITYCARD_BINARY_DIR) / ("test-certify-" + std::to_string(::getpid()));
  fs::remove_all(out);
  Child certify_p({kBinary, "certify", "--suite", kBusSuite, "--terminal", "tcp://127.0.0.1:0",
                   "--out", out.string()});
  ASSERT_TRUE(certify_p.started());
  auto line = certify_p.wait_for("listening on", 20'000);
  ASSERT_TRUE(line) << certify_p.output();
  const std::string endpoint = testing::endpoint_in(*line);
  ASSERT_FALSE(endpoint.empty()) << *line;
  Child terminal({kBinary, "terminal", "--bridge", endpoint, "--name", "vendor-x model-1"});
  ASSERT_TRUE(terminal.started());
  auto code = certify_p.wait_exit(60'000);
  ASSERT_TRUE(code) << certify_p.output();
  EXPECT_EQ(*code, 0) << certify_p.output();
  EXPECT_NE(certify_p.output().find("13/13 cases passed"), std::string::npos) << certify_p.output();
  terminal.signal(SIGTERM);
  auto t_code = terminal.wait_exit(20'000);
  ASSERT_TRUE(t_code);
  EXPECT_EQ(*t_code, 0) << terminal.output();

  for (const char* f : {"certificate.json", "certificate.sig", "harness.pem", "chain.pem",
                        "root.pem", "junit.xml", "certify.html"}) {
    EXPECT_TRUE(fs::exists(out / f)) << f;
  }
  auto cert = reports::read_text_file((out / "certificate.json").string());
  ASSERT_TRUE(cert);
  auto json = reports::Json::parse(*cert);
  EXPECT_EQ(json["verdict"], "pass");
  EXPECT_EQ(json["terminal"]["name"], "vendor-x model-1");
  EXPECT_EQ(json["suite"]["version"], "1.0");
  EXPECT_EQ(json["cases"].size(), 13u);
  auto junit = reports::read_text_file((out / "junit.xml").string());
  ASSERT_TRUE(junit);
  EXPECT_NE(junit->find("tests=\"13\" failures=\"0\""), std::string::npos) << *junit;

  // The chain and the signature, with the openssl command line.
  const std::string o = out.string();
  EXPECT_EQ(sh("openssl verify -CAfile " + o + "/root.pem -untrusted " + o + "/chain.pem " + o +
               "/harness.pem"),
            0);
  ASSERT_EQ(sh("openssl x509 -in " + o + "/harness.pem -pubkey -noout > " + o + "/harness.pub"), 0);
  EXPECT_EQ(sh("openssl dgst -sha256 -verify " + o + "/harness.pub -signature " + o +
               "/certificate.sig " + o + "/certificate.json"),
            0);
  // A certificate edited after signing does not verify.
  std::string forged = *cert;
  forged.replace(forged.find("\"pass\""), 6, "\"PASS\"");
  ASSERT_TRUE(reports::write_text_file(o + "/forged.json", forged));
  EXPECT_NE(sh("openssl dgst -sha256 -verify " + o + "/harness.pub -signature " + o +
               "/certificate.sig " + o + "/forged.json"),
            0);
  fs::remove_all(out);
}

TEST(CertifyCommand, BadArgumentsExitWith2) {
  for (const std::string args :
       {"certify", "certify --suite x.lua", "certify --suite x.lua --terminal nonsense", "terminal",
        "terminal --bridge tcp://127.0.0.1:1 --kind tram",
        "terminal --bridge tcp://127.0.0.1:1 --defect melts"}) {
    Child c({"/bin/sh", "-c", kBinary + " " + args + " 2>&1"});
    auto code = c.wait_exit(20'000);
    ASSERT_TRUE(code) << args;
    EXPECT_EQ(*code, 2) << args << ": " << c.output();
  }
}

}  // namespace
}  // namespace citycard::scenarios
