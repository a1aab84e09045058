#include "citycard/backend/sign_on.h"

#include <string>

#include "citycard/backend/money_service.h"

namespace citycard::backend {

namespace pw = protocol::wire;
namespace wire = citycard::wire;
using wire::Envelope;

Envelope SignOnService::sign_on(const Envelope& request) const {
  const std::uint64_t id = request.request_id();
  const wire::SignOnRequest& m = request.sign_on();
  protocol::TerminalId terminal_id{};
  if (!pw::to_terminal(m.terminal_id(), terminal_id)) {
    return error_reply(id, wire::MALFORMED, "terminal id must be 6 bytes");
  }
  if (m.device_id().size() > 64 || m.operator_id().size() > 64) {
    return error_reply(id, wire::MALFORMED, "device and operator ids are at most 64 bytes");
  }
  auto t = issuance_.terminal(terminal_id);
  if (!t.is_ok()) {
    if (t.status().code() == Errc::kNotFound) {
      return error_reply(id, wire::UNKNOWN_TERMINAL,
                         "terminal " + to_hex(terminal_id) + " is not registered");
    }
    return error_reply(id, wire::INTERNAL, t.status().message());
  }
  if (t->device_id != m.device_id()) {
    return error_reply(id, wire::TERMINAL_MISMATCH,
                       "terminal " + to_hex(terminal_id) + " is registered to device '" +
                           t->device_id + "', not '" + m.device_id() + "'");
  }
  if (t->operator_id != m.operator_id()) {
    return error_reply(id, wire::TERMINAL_MISMATCH,
                       "terminal " + to_hex(terminal_id) + " is registered to operator '" +
                           t->operator_id + "', not '" + m.operator_id() + "'");
  }
  auto blacklist_version = risk_.blacklist_version();
  if (!blacklist_version.is_ok()) {
    return error_reply(id, wire::INTERNAL, blacklist_version.status().message());
  }
  auto params_version = fares_.version();
  if (!params_version.is_ok()) {
    return error_reply(id, wire::INTERNAL, params_version.status().message());
  }
  Envelope e;
  e.set_request_id(id);
  auto* reply = e.mutable_sign_on_reply();
  reply->set_server_time_us(calendar_.now_us());
  reply->set_server_epoch2000_s(calendar_.now_epoch2000_s());
  reply->set_blacklist_version(*blacklist_version);
  reply->set_params_version(*params_version);
  reply->set_route(t->route);
  reply->set_vehicle(t->vehicle);
  return e;
}

}  // namespace citycard::backend
