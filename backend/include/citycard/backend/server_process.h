// The body of the `citycard backend` command: a clearing centre serving from a data folder
// until SIGTERM or SIGINT. Shared with the crash test's server process (backend/src/
// server_test_main.cpp), so the test kills exactly what users run.
//
// DIR holds everything, and a restart continues from it:
//   DIR/backend.db                  the store: ledger, cards, swipes, the PKI (CA keys,
//                                   certificates, revocations) and the server's CURVE secret key
//   DIR/pki/root.pem, city-ca.pem, national-ca.pem, city.crl.pem, national.crl.pem,
//   DIR/pki/server.pem, server.curve  what terminals and tools need (rewritten at each start)
//   DIR/pki/offline/root-key.pem    the root CA's private key, written once, on the first start
//                                   (mode 0600): move it offline; the server never reads it
//
// Output: one line "citycard backend: listening on <endpoint>, data in DIR" on `out` once it
// serves (a supervisor or a test waits for it), refusals and warnings on `err`, and on a clean
// stop "citycard backend: stopped after N requests; ledger balanced". Exit codes: 0 stopped
// cleanly with the books balanced, 1 stopped but the books do not balance, 2 could not start.
//
// Threads: runs on the calling thread; installs SIGTERM and SIGINT handlers for its duration.
// One at a time per process.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "citycard/backend/backend.h"
#include "citycard/backend/server.h"

namespace citycard::backend {

struct ServerProcessOptions {
  std::string data_dir = "backend-data";
  std::uint64_t key_seed = 1;
  BackendOptions backend;  // key_seed and the clock origin are set from the fields here
  ServerOptions server;    // listen, curve, limits
};

// The calendar second (since 2000-01-01, China Standard Time) the wall clock reads now: the
// origin of a WallClock that starts now. Certificates issued by a process with this origin are
// valid for the server process started with it.
std::int64_t wall_clock_origin_epoch2000_s();

int run_server_process(const ServerProcessOptions& options, std::FILE* out, std::FILE* err);

}  // namespace citycard::backend
