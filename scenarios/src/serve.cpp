#include "citycard/scenarios/serve.h"

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <boost/program_options.hpp>

#include "citycard/backend/backend.h"
#include "citycard/sim/clock.h"
#include "citycard/sim/zmq_transport.h"

namespace citycard::scenarios {

namespace {
sim::ZmqServer* g_server = nullptr;  // for the signal handler only
extern "C" void on_stop_signal(int) {
  if (g_server) g_server->stop();  // an atomic store: async-signal-safe
}
constexpr std::int64_t kUnixAtEpoch2000 = 946'684'800;
constexpr std::int64_t kCityUtcOffsetS = 8 * 3600;  // cards keep China Standard Time
}  // namespace

int cmd_backend(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  std::string listen = "tcp://127.0.0.1:5555", data = "backend-data";
  std::uint64_t key_seed = 1;
  po::options_description opts("citycard backend [options]");
  opts.add_options()("help,h", "this help")(
      "listen", po::value(&listen)->default_value(listen), "ZeroMQ endpoint to bind (tcp://...)")(
      "data", po::value(&data)->default_value(data), "folder for the SQLite store")(
      "key-seed", po::value(&key_seed)->default_value(key_seed),
      "seed of the issuer master keys (must match the one the store was made with)");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(opts).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "citycard backend: " << e.what() << "\n" << opts;
    return 2;
  }
  if (vm.count("help")) {
    std::cout << opts;
    return 0;
  }
  std::error_code ec;
  std::filesystem::create_directories(data, ec);
  if (ec) {
    std::cerr << "citycard backend: cannot create " << data << ": " << ec.message() << "\n";
    return 2;
  }
  sim::WallClock clock;
  backend::BackendOptions bo;
  bo.key_seed = key_seed;
  bo.clock_origin_epoch2000_s = sim::unix_time_s() - kUnixAtEpoch2000 + kCityUtcOffsetS;
  auto be = backend::Backend::open(data + "/backend.db", bo, clock);
  if (!be) {
    std::cerr << "citycard backend: " << be.status().to_string() << "\n";
    return 2;
  }
  zmq::context_t ctx;
  sim::ZmqServer server(ctx, (*be)->service());
  if (Status s = server.bind(listen); !s) {
    std::cerr << "citycard backend: " << s.to_string() << "\n";
    return 2;
  }
  g_server = &server;
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
  std::printf("citycard backend: listening on %s, data in %s\n", server.endpoint().c_str(),
              data.c_str());
  std::fflush(stdout);
  server.serve();
  g_server = nullptr;
  const Status conserved = (*be)->check_conservation();
  std::printf("citycard backend: stopped after %llu requests; ledger %s\n",
              static_cast<unsigned long long>(server.requests()),
              conserved.is_ok() ? "balanced" : conserved.message().c_str());
  return conserved.is_ok() ? 0 : 1;
}

}  // namespace citycard::scenarios
