// `citycard backend` as a process: it says where it listens, answers over real tcp, stops
// cleanly on SIGTERM with its books balanced, and starts again from the same data folder.
#include <gtest/gtest.h>

#include <filesystem>

#include "citycard/protocol/wire.h"
#include "citycard/sim/zmq_transport.h"
#include "test_process.h"

namespace citycard::scenarios {
namespace {

namespace fs = std::filesystem;
using testing::Child;
using testing::endpoint_in;

const std::string kBinary = std::string(CITYCARD_BINARY_DIR) + "/citycard";

// Ping over real tcp; true when the Pong carries our nonce.
bool ping(const std::string& endpoint, std::uint64_t nonce) {
  zmq::context_t ctx;
  sim::ZmqClient client(ctx, endpoint);
  citycard::wire::Envelope e;
  e.set_request_id(1);
  e.mutable_ping()->set_nonce(nonce);
  auto reply = client.call(protocol::wire::encode(e), 5000);
  if (!reply) return false;
  auto env = protocol::wire::decode(*reply);
  return env && env->has_pong() && env->pong().nonce() == nonce;
}

TEST(BackendCommand, PrintsItsEndpointStopsOnSigtermAndRestartsFromItsData) {
  const std::string data = std::string(CITYCARD_BINARY_DIR) + "/test-backend-command";
  fs::remove_all(data);
  for (int run = 0; run < 2; ++run) {
    Child backend({kBinary, "backend", "--listen", "tcp://127.0.0.1:*", "--data", data});
    ASSERT_TRUE(backend.started());
    auto line = backend.wait_for("listening on", 30'000);
    ASSERT_TRUE(line) << "run " << run << ": " << backend.output();
    const std::string endpoint = endpoint_in(*line);
    ASSERT_NE(endpoint.find("tcp://127.0.0.1:"), std::string::npos) << *line;
    EXPECT_EQ(endpoint.find('*'), std::string::npos) << "prints the port the OS chose: " << *line;
    EXPECT_TRUE(ping(endpoint, 1000 + static_cast<std::uint64_t>(run)));
    backend.signal(SIGTERM);
    auto code = backend.wait_exit(30'000);
    ASSERT_TRUE(code) << "did not stop on SIGTERM: " << backend.output();
    EXPECT_EQ(*code, 0) << backend.output();
    EXPECT_NE(backend.output().find("ledger balanced"), std::string::npos) << backend.output();
    EXPECT_TRUE(fs::exists(data + "/backend.db"));
  }
  fs::remove_all(data);
}

}  // namespace
}  // namespace citycard::scenarios
