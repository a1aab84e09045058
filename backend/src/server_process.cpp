#include "citycard/backend/server_process.h"

#include <sys/stat.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "citycard/sim/clock.h"

namespace citycard::backend {
namespace {

constexpr std::int64_t kUnixAtEpoch2000 = 946'684'800;
constexpr std::int64_t kCityUtcOffsetS = 8 * 3600;  // cards keep China Standard Time

std::atomic<Server*> g_server{nullptr};  // for the signal handler only

extern "C" void on_stop_signal(int) {
  if (Server* s = g_server.load()) s->stop();  // an atomic store inside: async-signal-safe
}

// The root key is written once, readable by the owner only, and never read back by the server.
Status write_root_key(const std::filesystem::path& dir, const std::string& pem) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status(Errc::kIo, "cannot create " + dir.string() + ": " + ec.message());
  const std::filesystem::path path = dir / "root-key.pem";
  const mode_t old_mask = ::umask(077);
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << pem;
    out.flush();
    if (!out) {
      ::umask(old_mask);
      return Status(Errc::kIo, "cannot write " + path.string());
    }
  }
  ::umask(old_mask);
  std::filesystem::permissions(path, std::filesystem::perms::owner_read, ec);
  return Status::ok();
}

}  // namespace

std::int64_t wall_clock_origin_epoch2000_s() {
  return sim::unix_time_s() - kUnixAtEpoch2000 + kCityUtcOffsetS;
}

int run_server_process(const ServerProcessOptions& options, std::FILE* out, std::FILE* err) {
  // Refusals come from the ZAP and I/O threads; one line at a time.
  auto log_mutex = std::make_shared<std::mutex>();
  auto log = [err, log_mutex](const std::string& line) {
    std::lock_guard<std::mutex> lock(*log_mutex);
    std::fprintf(err, "%s\n", line.c_str());
    std::fflush(err);
  };
  const std::filesystem::path data(options.data_dir);
  std::error_code ec;
  std::filesystem::create_directories(data, ec);
  if (ec) {
    log("citycard backend: cannot create " + options.data_dir + ": " + ec.message());
    return 2;
  }
  sim::WallClock clock;
  BackendOptions bo = options.backend;
  bo.key_seed = options.key_seed;
  bo.store.checkpoint_in_background = true;  // no acknowledgement waits for a checkpoint
  bo.clock_origin_epoch2000_s = wall_clock_origin_epoch2000_s();
  auto be = Backend::open((data / "backend.db").string(), bo, clock);
  if (!be.is_ok()) {
    log("citycard backend: " + be.status().to_string());
    return 2;
  }
  ServerOptions so = options.server;
  if (!so.log) so.log = log;
  zmq::context_t ctx;
  std::string root_key;
  auto server = Server::open(**be, ctx, so, &root_key);
  if (!server.is_ok()) {
    log("citycard backend: " + server.status().to_string());
    return 2;
  }
  if (!root_key.empty()) {
    const std::filesystem::path offline = data / "pki" / "offline";
    if (Status s = write_root_key(offline, root_key); !s.is_ok()) {
      log("citycard backend: " + s.to_string());
      return 2;
    }
    log("citycard backend: created the PKI; the root CA's private key is in " +
        (offline / "root-key.pem").string() + ": move it offline");
  }
  if (Status s = (*server)->export_pki((data / "pki").string()); !s.is_ok()) {
    log("citycard backend: " + s.to_string());
    return 2;
  }
  g_server.store(server->get());
  auto old_term = std::signal(SIGTERM, on_stop_signal);
  auto old_int = std::signal(SIGINT, on_stop_signal);
  std::fprintf(out, "citycard backend: security: %s\n",
               so.curve ? "CURVE encryption, terminals admitted by certificate"
                        : "plain tcp (no encryption, no certificates): for tests only");
  std::fprintf(out, "citycard backend: listening on %s, data in %s\n",
               (*server)->endpoint().c_str(), options.data_dir.c_str());
  std::fflush(out);
  (*server)->serve();
  g_server.store(nullptr);
  std::signal(SIGTERM, old_term);
  std::signal(SIGINT, old_int);
  const ServerCounters c = (*server)->counters();
  const Status conserved = (*be)->check_conservation();
  std::fprintf(out,
               "citycard backend: stopped after %llu requests (%llu busy, %llu refused, %llu "
               "unroutable); ledger %s\n",
               static_cast<unsigned long long>(c.transport.requests),
               static_cast<unsigned long long>(c.transport.busy_replies),
               static_cast<unsigned long long>(c.transport.not_allowed_replies),
               static_cast<unsigned long long>(c.transport.unroutable_replies),
               conserved.is_ok() ? "balanced" : conserved.message().c_str());
  std::fflush(out);
  return conserved.is_ok() ? 0 : 1;
}

}  // namespace citycard::backend
