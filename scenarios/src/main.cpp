// citycard: the command line. Each subcommand is a function here; the work is in the
// libraries.
#include <sys/stat.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "citycard/reports/report.h"
#include "citycard/scenarios/certify.h"
#include "citycard/scenarios/cli_nfc.h"
#include "citycard/scenarios/load.h"
#include "citycard/scenarios/runner.h"
#include "citycard/scenarios/serve.h"
#include "citycard/sim/clock.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using namespace citycard;

namespace {

constexpr const char* kUsage = R"(usage: citycard <command> [options]

commands:
  run SCENARIO.lua|FOLDER   run a scenario (or every scenario in a folder) in virtual time
                            with the embedded backend; prints a summary, writes reports
  report RUN_DIR            render a run's reports again from its trace
  report --diff A B         what changed from run A to run B (exit 1 on a regression)
  backend                   serve the clearing centre on a ZeroMQ endpoint
  load SCENARIO.lua         replay a scenario's rush hour in wall time against a backend over
                            ZeroMQ tcp, open-loop, with latency percentiles
  agent                     take a share of a coordinated `load` from another process/machine
  nfc list                  list the libnfc readers this machine can see and their cards
  nfc read                  read a card: purse balance, counters, records; M1 sectors
  nfc emulate --card P      serve a simulated card through a PN532 (until SIGINT/SIGTERM)
  nfc pn532 --pty PATH      run the software PN532 on a pty for other tools
  certify --suite S --terminal ENDPOINT
                            certify a terminal under test over the bridge: JUnit, HTML and
                            a certificate signed by the harness CA
  terminal --bridge ENDPOINT
                            our terminal as a terminal under test (--defect X to break it)

`citycard <command> --help` shows a command's options.
)";

int cmd_run(const std::vector<std::string>& args) {
  po::options_description opts("citycard run SCENARIO.lua|FOLDER [options]");
  std::string seed_text, out, tags;
  std::uint64_t instructions_max = 0;
  std::int64_t wall_s_max = 0;
  opts.add_options()("help,h", "this help")(
      "seed", po::value(&seed_text), "the run's seed (an integer); default: the scenario's, else 1")(
      "out", po::value(&out), "run folder for reports (default runs/<UTC timestamp>)")(
      "tags", po::value(&tags), "for a folder: only scenarios with one of these tags (a,b)")(
      "instructions-max", po::value(&instructions_max), "Lua instruction budget")(
      "wall-s-max", po::value(&wall_s_max), "wall-time limit per scenario, seconds")(
      "defect", po::value<std::vector<std::string>>(), "inject a defect (repeatable): "
      "ack_on_failure, corrupt_tac, backend_amnesia, no_transfers");
  po::options_description hidden;
  std::string path;
  hidden.add_options()("scenario", po::value(&path));
  po::options_description all;
  all.add(opts).add(hidden);
  po::positional_options_description pos;
  pos.add("scenario", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(all).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "citycard run: " << e.what() << "\n" << opts;
    return scenarios::kExitUsageOrScript;
  }
  if (vm.count("help") || path.empty()) {
    std::cout << opts;
    return path.empty() && !vm.count("help") ? scenarios::kExitUsageOrScript : 0;
  }
  if (!fs::exists(path)) {
    std::cerr << "citycard run: no such scenario file or folder: " << path << "\n";
    return scenarios::kExitUsageOrScript;
  }
  scenarios::RunOptions ro;
  ro.scenario_path = path;
  ro.out_dir = out.empty() ? scenarios::default_run_dir() : out;
  ro.lib_root = scenarios::lib_root_for(path);
  if (!seed_text.empty()) {
    try {
      std::size_t used = 0;
      ro.seed = std::stoull(seed_text, &used);
      if (used != seed_text.size()) throw std::invalid_argument(seed_text);
    } catch (const std::exception&) {
      std::cerr << "citycard run: --seed takes a non-negative integer, not '" << seed_text << "'\n";
      return scenarios::kExitUsageOrScript;
    }
  }
  for (std::size_t start = 0; start < tags.size();) {
    std::size_t comma = tags.find(',', start);
    if (comma == std::string::npos) comma = tags.size();
    if (comma > start) ro.tags.push_back(tags.substr(start, comma - start));
    start = comma + 1;
  }
  if (vm.count("defect")) ro.defects = vm["defect"].as<std::vector<std::string>>();
  if (instructions_max) ro.limits.instructions_max = instructions_max;
  if (wall_s_max) ro.limits.wall_ms_max = wall_s_max * 1000;

  if (fs::is_directory(path)) {
    std::vector<scenarios::RunOutcome> outcomes;
    const int rc = scenarios::run_folder(ro, outcomes);
    std::size_t ran = 0, passed = 0;
    for (const auto& o : outcomes) {
      if (o.skipped) continue;
      ++ran;
      passed += o.exit_code == 0 ? 1 : 0;
      std::printf("%-28s %s  (%zu/%zu expectations, seed %llu, digest %.16s)\n",
                  o.summary.scenario.c_str(), o.exit_code == 0 ? "PASS" : "FAIL",
                  o.summary.passed(), o.summary.expectations.size(),
                  static_cast<unsigned long long>(o.summary.seed), o.summary.trace_digest.c_str());
    }
    std::printf("%zu scenarios: %zu passed, %zu failed\nreports: %s/junit.xml\n", ran, passed,
                ran - passed, ro.out_dir.c_str());
    return rc;
  }
  scenarios::RunOutcome o = scenarios::run_scenario(ro);
  std::cout << reports::human_summary(o.summary);
  std::cout << "reports: " << ro.out_dir << "/report.html, " << ro.out_dir << "/junit.xml\n";
  return o.exit_code;
}

int cmd_report(const std::vector<std::string>& args) {
  if (args.size() == 3 && args[0] == "--diff") {
    auto d = reports::diff_runs(args[1], args[2]);
    if (!d) {
      std::cerr << "citycard report --diff: " << d.status().to_string() << "\n";
      return 2;
    }
    std::cout << d->text;
    return d->regressions > 0 ? 1 : 0;  // a regression fails a CI step that compares builds
  }
  if (args.size() != 1 || args[0] == "--help" || args[0] == "-h") {
    std::cerr << "usage: citycard report RUN_DIR\n       citycard report --diff RUN_A RUN_B\n";
    return 2;
  }
  if (Status s = reports::render_run(args[0]); !s) {
    std::cerr << "citycard report: " << s.to_string() << "\n";
    return 2;
  }
  std::cout << "wrote " << args[0] << "/report.html and " << args[0] << "/junit.xml\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (cmd == "run") return cmd_run(args);
  if (cmd == "report") return cmd_report(args);
  if (cmd == "backend") return scenarios::cmd_backend(args);
  if (cmd == "load") return scenarios::cmd_load(args);
  if (cmd == "agent") return scenarios::cmd_agent(args);
  if (cmd == "nfc") return scenarios::cmd_nfc(args);
  if (cmd == "certify") return scenarios::cmd_certify(args);
  if (cmd == "terminal") return scenarios::cmd_terminal(args);
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::cout << kUsage;
    return 0;
  }
  std::cerr << "citycard: unknown command '" << cmd << "'\n" << kUsage;
  return 2;
}
