// The command lines of `citycard load` and `citycard agent`.
#include <csignal>
#include <filesystem>
#include <iostream>

#include <boost/program_options.hpp>

#include "citycard/scenarios/load.h"
#include "citycard/scenarios/runner.h"
#include "citycard/sim/clock.h"

namespace citycard::scenarios {

std::atomic<bool>& load_stop_flag();  // load.cpp

namespace {

namespace po = boost::program_options;
namespace fs = std::filesystem;

// The first signal ends the schedule early and lets the buses upload what they hold; the
// handler then gives the signal back its default action, so a second one ends the process.
extern "C" void on_load_stop_signal(int sig) {
  load_stop_flag().store(true);  // lock-free atomic store: async-signal-safe
  std::signal(sig, SIG_DFL);     // signal() is async-signal-safe too
}

void install_stop_signals() {
  static_assert(std::atomic<bool>::is_always_lock_free);
  std::signal(SIGINT, on_load_stop_signal);
  std::signal(SIGTERM, on_load_stop_signal);
}

// Reads a duration option into `into`; false (with a message) when malformed.
bool duration_option(const po::variables_map& vm, const char* name,
                     std::optional<std::int64_t>& into) {
  if (!vm.count(name)) return true;
  auto d = parse_duration_us(vm[name].as<std::string>());
  if (!d) {
    std::cerr << "citycard load: --" << name << ": " << d.status().message() << "\n";
    return false;
  }
  into = *d;
  return true;
}

bool parse_rates(const std::string& text, std::vector<double>& rates) {
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    try {
      std::size_t used = 0;
      const std::string item = text.substr(start, comma - start);
      const double r = std::stod(item, &used);
      if (used != item.size() || !(r > 0)) return false;
      rates.push_back(r);
    } catch (const std::exception&) {
      return false;
    }
    start = comma + 1;
  }
  return true;
}

}  // namespace

int cmd_load(const std::vector<std::string>& args) {
  po::options_description opts("citycard load SCENARIO.lua [options]");
  std::string backend, city, provision, data, listen = "tcp://127.0.0.1:*", out, mix, arrivals;
  std::string coordinator_listen = "tcp://127.0.0.1:*";
  std::uint64_t key_seed = 1;
  std::int64_t agents = 0;
  // clang-format off
  opts.add_options()
    ("help,h", "this help")
    ("backend", po::value(&backend), "an external backend's endpoint (default: serve an "
                                     "embedded backend in this process)")
    ("city", po::value(&city), "with --backend: the city file --provision wrote")
    ("provision", po::value(&provision), "issue the scenario's city into the store in this "
                                         "folder (the backend must not be running on it), write "
                                         "DIR/load-city.pb, and exit")
    ("key-seed", po::value(&key_seed)->default_value(key_seed),
                 "with --provision: the backend's --key-seed")
    ("data", po::value(&data), "embedded backend: store folder (default OUT/backend-data, fresh)")
    ("listen", po::value(&listen)->default_value(listen), "embedded backend: endpoint to bind")
    ("no-fsync", "embedded backend: synchronous=NORMAL instead of FULL (acks not on disk)")
    ("group-commit", po::value<std::size_t>(), "embedded backend: uploads committed together, "
     "one fsync (64; 1: a commit per batch)")
    ("rate", po::value<double>(), "peak arrivals per second, whole run (default: the "
                                  "scenario's describe{load={rate_per_s}}, else its phases "
                                  "compressed into --duration)")
    ("duration", po::value<std::string>(), "wall time the scenario is compressed into (20s)")
    ("flat", "constant --rate for the whole duration instead of the scenario's curve")
    ("arrivals", po::value(&arrivals), "poisson (default) or constant")
    ("mix", po::value(&mix), "operations and weights, e.g. swipe=0.9,balance_query=0.08,ping=0.02")
    ("seed", po::value<std::uint64_t>(), "the seed that drives arrivals (default 1)")
    ("threads", po::value<std::int64_t>(), "load-generating worker threads (default 1)")
    ("batch-size", po::value<std::int64_t>(), "records per upload batch (default 100)")
    ("upload-interval", po::value<std::string>(), "a record waits at most this for its upload (1s)")
    ("aligned-uploads", "every bus uploads in phase, in waves (default: each bus on its own "
                        "timer from a random phase)")
    ("timeout", po::value<std::string>(), "per request (5s)")
    ("window", po::value<std::string>(), "reporting window (1s)")
    ("late", po::value<std::string>(), "a send later than this after its plan counts late (1ms)")
    ("in-flight-max", po::value<std::int64_t>(), "outstanding requests per worker (10000)")
    ("cards", po::value<std::int64_t>(), "override the scenario's card count")
    ("buses", po::value<std::int64_t>(), "override the scenario's bus count")
    ("out", po::value(&out), "folder for summary.json and windows.jsonl "
                             "(default runs/load-<UTC time>)")
    ("sweep", po::value<std::string>()->implicit_value(""),
              "saturation curve: flat steps at these rates (a,b,c), or doubling from --rate "
              "(default 1000/s), stopping at the first step the backend does not keep up with")
    ("sweep-all", "with --sweep: run every step, even past saturation")
    ("agents", po::value(&agents), "coordinate this many `citycard agent`s; no local load")
    ("coordinator-listen", po::value(&coordinator_listen)->default_value(coordinator_listen),
                           "with --agents: endpoint the agents connect to")
    ("agents-wait", po::value<std::string>(), "with --agents: how long to wait for them (60s)")
    ("quiet,q", "no progress or report on stdout");
  // clang-format on
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
    std::cerr << "citycard load: " << e.what() << "\n" << opts;
    return kLoadExitUsage;
  }
  if (vm.count("help") || path.empty()) {
    std::cout << opts;
    return vm.count("help") ? kLoadExitOk : kLoadExitUsage;
  }

  LoadOverrides ov;
  if (vm.count("seed")) ov.seed = vm["seed"].as<std::uint64_t>();
  if (vm.count("rate")) ov.rate_per_s = vm["rate"].as<double>();
  if (vm.count("flat")) ov.flat = true;
  if (!arrivals.empty()) {
    ov.arrivals = sim::arrival_process_from_name(arrivals);
    if (!ov.arrivals) {
      std::cerr << "citycard load: --arrivals is poisson or constant\n";
      return kLoadExitUsage;
    }
  }
  if (!mix.empty()) {
    auto m = parse_mix(mix);
    if (!m) {
      std::cerr << "citycard load: --mix: " << m.status().message() << "\n";
      return kLoadExitUsage;
    }
    ov.mix = std::move(m).value();
  }
  if (vm.count("threads")) ov.threads = vm["threads"].as<std::int64_t>();
  if (vm.count("batch-size")) ov.batch_size = vm["batch-size"].as<std::int64_t>();
  if (vm.count("in-flight-max")) ov.in_flight_max = vm["in-flight-max"].as<std::int64_t>();
  if (vm.count("cards")) ov.cards = vm["cards"].as<std::int64_t>();
  if (vm.count("buses")) ov.buses = vm["buses"].as<std::int64_t>();
  if (vm.count("aligned-uploads")) ov.aligned_uploads = true;
  if (!duration_option(vm, "duration", ov.duration_us) ||
      !duration_option(vm, "upload-interval", ov.upload_interval_us) ||
      !duration_option(vm, "timeout", ov.timeout_us) ||
      !duration_option(vm, "window", ov.window_us) || !duration_option(vm, "late", ov.late_us)) {
    return kLoadExitUsage;
  }

  LoadRunOptions ro;
  if (vm.count("sweep")) {
    ro.sweep = true;
    if (!parse_rates(vm["sweep"].as<std::string>(), ro.sweep_rates)) {
      std::cerr << "citycard load: --sweep takes rates like 1000,2000,5000\n";
      return kLoadExitUsage;
    }
  }
  ro.sweep_until_saturated = !vm.count("sweep-all");

  auto plan = read_load_plan(path, lib_root_for(path), ov);
  if (!plan) {
    std::cerr << "citycard load: " << plan.status().message() << "\n";
    return kLoadExitUsage;
  }
  // A sweep's steps are flat at their own rates; the scenario gives the city and the mix.
  if (ro.sweep) plan->knobs.flat = true;
  if (!provision.empty()) {
    auto file = provision_city(*plan, provision, key_seed);
    if (!file) {
      std::cerr << "citycard load: provisioning: " << file.status().to_string() << "\n";
      return kLoadExitUsage;
    }
    std::cout << "provisioned " << plan->city.cards << " cards and "
              << plan->city.routes * plan->city.buses_per_route << " buses into " << provision
              << "/backend.db (key seed " << key_seed << ")\ncity file: " << *file
              << "\nnext: citycard backend --data " << provision << " --key-seed " << key_seed
              << " --listen tcp://0.0.0.0:5555\n      citycard load " << path
              << " --backend tcp://HOST:5555 --city " << *file << "\n";
    return kLoadExitOk;
  }
  ro.out_dir = out.empty() ? default_run_dir("load-") : out;
  ro.backend = backend;
  ro.city_file = city;
  ro.data_dir = data;
  ro.backend_listen = listen;
  ro.durable = !vm.count("no-fsync");
  if (vm.count("group-commit")) {
    ro.group_commit = vm["group-commit"].as<std::size_t>();
    if (ro.group_commit == 0 || ro.group_commit > 100'000) {
      std::cerr << "citycard load: --group-commit must be 1..100000\n";
      return kLoadExitUsage;
    }
  }
  ro.agents = agents;
  ro.coordinator_listen = coordinator_listen;
  ro.quiet = vm.count("quiet") > 0;
  if (vm.count("agents-wait")) {
    auto d = parse_duration_us(vm["agents-wait"].as<std::string>());
    if (!d) {
      std::cerr << "citycard load: --agents-wait: " << d.status().message() << "\n";
      return kLoadExitUsage;
    }
    ro.agents_wait_us = *d;
  }
  if (agents < 0 || agents > 256) {
    std::cerr << "citycard load: --agents must be 0..256\n";
    return kLoadExitUsage;
  }
  if (agents > 0 && ro.sweep) {
    std::cerr << "citycard load: --sweep runs in one process; it does not combine with --agents\n";
    return kLoadExitUsage;
  }
  install_stop_signals();
  return run_load(*plan, ro);
}

int cmd_agent(const std::vector<std::string>& args) {
  po::options_description opts("citycard agent --coordinator tcp://HOST:PORT [options]");
  AgentOptions ao;
  std::string wait = "60s";
  // clang-format off
  opts.add_options()
    ("help,h", "this help")
    ("coordinator", po::value(&ao.coordinator), "the coordinator's endpoint "
                                                "(citycard load ... --agents N prints it)")
    ("threads", po::value(&ao.threads)->default_value(ao.threads), "load-generating threads")
    ("name", po::value(&ao.name), "how the coordinator names this agent (default agent-<pid>)")
    ("wait", po::value(&wait)->default_value(wait), "how long to wait for the assignment and "
                                                    "the start")
    ("quiet,q", "print nothing but errors");
  // clang-format on
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(opts).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "citycard agent: " << e.what() << "\n" << opts;
    return kLoadExitUsage;
  }
  if (vm.count("help") || ao.coordinator.empty()) {
    std::cout << opts;
    return vm.count("help") ? kLoadExitOk : kLoadExitUsage;
  }
  auto w = parse_duration_us(wait);
  if (!w) {
    std::cerr << "citycard agent: --wait: " << w.status().message() << "\n";
    return kLoadExitUsage;
  }
  ao.wait_us = *w;
  ao.quiet = vm.count("quiet") > 0;
  install_stop_signals();
  return run_agent(ao);
}

}  // namespace citycard::scenarios
