// The crash test's server process: run_server_process(), what `citycard backend` runs, without
// the rest of the CLI (so the backend's tests need not build every library to get it).
//
//   backend_test_server --listen tcp://127.0.0.1:* --data DIR [--key-seed N] [--plain]
//                       [--max-pending N] [--group N] [--synchronous normal]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "citycard/backend/server_process.h"

int main(int argc, char** argv) {
  citycard::backend::ServerProcessOptions o;
  o.server.listen = "tcp://127.0.0.1:*";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--plain") {
      o.server.curve = false;
    } else if (arg == "--listen" && has_value) {
      o.server.listen = argv[++i];
    } else if (arg == "--data" && has_value) {
      o.data_dir = argv[++i];
    } else if (arg == "--key-seed" && has_value) {
      o.key_seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--max-pending" && has_value) {
      o.server.max_pending_requests = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--group" && has_value) {
      o.server.group_commit_max_requests = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--synchronous" && has_value) {
      o.backend.store.synchronous_full = std::string(argv[++i]) != "normal";
    } else {
      std::fprintf(stderr, "backend_test_server: unknown or incomplete option %s\n", arg.c_str());
      return 2;
    }
  }
  return citycard::backend::run_server_process(o, stdout, stderr);
}
