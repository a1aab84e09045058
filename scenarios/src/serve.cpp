#include "citycard/scenarios/serve.h"

#include <cstdio>
#include <iostream>

#include <boost/program_options.hpp>

#include "citycard/backend/server_process.h"

namespace citycard::scenarios {

// The options; the work is backend::run_server_process() (server_process.h), which the
// backend's crash test runs too.
int cmd_backend(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  backend::ServerProcessOptions o;
  o.server.listen = "tcp://127.0.0.1:5555";
  // Plain by default for now: `citycard load` and its agents speak plain tcp until they take
  // CURVE keys (sim::apply_curve_client). Production runs --security curve.
  std::string security = "plain";
  po::options_description opts("citycard backend [options]");
  opts.add_options()("help,h", "this help")(
      "listen", po::value(&o.server.listen)->default_value(o.server.listen),
      "ZeroMQ endpoint to bind (tcp://...; port * lets the system pick)")(
      "data", po::value(&o.data_dir)->default_value(o.data_dir),
      "folder for the store, the PKI and the server's keys; a restart continues from it")(
      "key-seed", po::value(&o.key_seed)->default_value(o.key_seed),
      "seed of the issuer master keys (must match the one the store was made with)")(
      "security", po::value(&security)->default_value(security),
      "curve: CURVE encryption, terminals admitted by certificate (DIR/pki has what they "
      "need); plain: no encryption, no certificates (tests and simulations)")(
      "server-name", po::value(&o.server.server_name)->default_value(o.server.server_name),
      "DNS name in the server's certificate")(
      "max-pending",
      po::value(&o.server.max_pending_requests)->default_value(o.server.max_pending_requests),
      "requests that may wait for the backend; more are answered BUSY")(
      "group-commit",
      po::value(&o.server.group_commit_max_requests)
          ->default_value(o.server.group_commit_max_requests),
      "uploads committed together (one fsync)");
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
  if (security != "curve" && security != "plain") {
    std::cerr << "citycard backend: --security is curve or plain\n";
    return 2;
  }
  o.server.curve = security == "curve";
  if (o.server.max_pending_requests == 0 || o.server.group_commit_max_requests == 0) {
    std::cerr << "citycard backend: --max-pending and --group-commit must be at least 1\n";
    return 2;
  }
  return backend::run_server_process(o, stdout, stderr);
}

}  // namespace citycard::scenarios
