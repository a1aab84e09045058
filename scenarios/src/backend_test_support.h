// Shared by the tests that put terminals in front of a real embedded backend: a fresh SQLite
// file per backend, the backend opened with fixed keys and an admin, and a request handler
// that hands wire frames to its Service (what a simulated network link delivers to).
#pragma once

#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>

#include "citycard/backend/backend.h"
#include "citycard/sim/clock.h"
#include "citycard/sim/transport.h"

namespace citycard::testsupport {

// A fresh folder under the test scratch directory, and the path of backend.db in it.
inline std::string fresh_backend_db(const std::string& prefix) {
  static std::atomic<int> n{0};
  const auto dir = std::filesystem::path(::testing::TempDir()) /
                   (prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return (dir / "backend.db").string();
}

// Opens a backend on a fresh file with `key_seed` fixing its keys (commits without fsync:
// durability is the crash test's business) and an administrator root / password-1.
inline Result<std::unique_ptr<backend::Backend>> open_test_backend(const std::string& prefix,
                                                                   std::uint64_t key_seed,
                                                                   const sim::Clock& clock) {
  backend::BackendOptions o;
  o.key_seed = key_seed;
  o.store.synchronous_full = false;
  auto opened = backend::Backend::open(fresh_backend_db(prefix), o, clock);
  if (!opened) return opened.status();
  std::unique_ptr<backend::Backend> b = std::move(opened).value();
  if (Status s = b->users().bootstrap_admin("root", "password-1"); !s) return s;
  return b;
}

// The backend's Service as a network endpoint.
class ServiceHandler final : public sim::RequestHandler {
 public:
  explicit ServiceHandler(backend::Backend& b) : backend_(b) {}
  Bytes handle(ByteView request) override { return backend_.service().handle(request); }

 private:
  backend::Backend& backend_;
};

}  // namespace citycard::testsupport
