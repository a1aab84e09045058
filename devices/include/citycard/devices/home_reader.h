// The home reader (家用读卡器): a USB reader at the cardholder's home with its own certificate.
// It reaches the clearing centre over ZeroMQ with CURVE; the backend admits it only because a
// certificate of its PKI (backend/ca.h, role reader-city or reader-national) binds the reader's
// CURVE public key, so a reader whose certificate was revoked never gets a handshake.
//
// Online recharge: the holder pays at the bank (a CHANNEL_BANK order; the backend asks the
// bank and the order is PAID once it approves), the reader receives the load authorisation
// (MAC2), loads the card on its own link and confirms with the card's TAC (RechargePoint,
// online_load.h). Pending loads (补登) are collected the same way as on the phone.
//
// The caller supplies the ZeroMQ client options (the server's CURVE key, checked against the
// certificates the reader trusts, and the reader's own key pair: backend/server.h
// curve_client_options()). Synchronous: each request waits for its answer up to
// `timeout_ms`. Single-threaded.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "citycard/devices/card_link.h"
#include "citycard/devices/online_load.h"
#include "citycard/sim/transport.h"
#include "citycard/sim/zmq_transport.h"

namespace citycard::devices {

// A sim::Channel over a synchronous ZmqClient: the reply callback runs inside request().
class ZmqSyncChannel final : public sim::Channel {
 public:
  ZmqSyncChannel(zmq::context_t& ctx, const std::string& endpoint,
                 const sim::ZmqClientOptions& options, int timeout_ms)
      : client_(ctx, endpoint, options), timeout_ms_(timeout_ms) {}
  void request(Bytes frame, ReplyFn on_reply) override {
    on_reply(client_.call(frame, timeout_ms_));
  }

 private:
  sim::ZmqClient client_;
  int timeout_ms_;
};

struct HomeReaderOptions {
  protocol::TerminalId terminal_id{};  // registered with the backend (in MAC1 and MAC2)
  std::string endpoint;                // the backend's, e.g. tcp://host:5555
  sim::ZmqClientOptions zmq;           // CURVE: server key, our key pair
  int timeout_ms = 10'000;
};

class HomeReader {
 public:
  HomeReader(HomeReaderOptions options, zmq::context_t& ctx);

  // Pays `amount_fen` at the bank for the card and loads it.
  OnlineLoad recharge(CardLink& card, const protocol::Serial8& serial, const std::string& order_id,
                      std::uint32_t amount_fen, const protocol::DateTime7& datetime);
  std::vector<OnlineLoad> complete_pending(CardLink& card, const protocol::Serial8& serial,
                                           const protocol::DateTime7& datetime);

 private:
  HomeReaderOptions options_;
  ZmqSyncChannel channel_;
  OnlineLoadClient client_;
  RechargePoint point_;
};

}  // namespace citycard::devices
