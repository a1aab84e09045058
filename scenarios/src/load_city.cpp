#include "load_city.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "citycard/protocol/wire.h"

namespace citycard::scenarios {

namespace {

template <std::size_t N>
std::string bytes_of(const std::array<std::uint8_t, N>& a) {
  return protocol::wire::field(a);
}

citycard::load::Card card_message(const protocol::CardImage& img) {
  citycard::load::Card c;
  c.set_family(static_cast<std::uint32_t>(img.family));
  c.set_serial(bytes_of(img.serial));
  c.set_card_number(img.card_number);
  c.set_card_type(static_cast<std::uint32_t>(img.card_type));
  c.set_key_version(img.key_version);
  c.set_algorithm(static_cast<std::uint32_t>(img.algorithm));
  c.set_dpk(bytes_of(img.dpk));
  c.set_dlk(bytes_of(img.dlk));
  c.set_dtk(bytes_of(img.dtk));
  c.set_balance_fen(img.balance_fen);
  c.set_overdraft_limit_fen(img.overdraft_limit_fen);
  c.set_valid_from(bytes_of(img.valid_from));
  c.set_valid_to(bytes_of(img.valid_to));
  c.set_issuer_data(bytes_of(img.issuer_data));
  return c;
}

}  // namespace

Result<citycard::load::City> issue_city(backend::Backend& backend, const CityConfig& config,
                                        std::uint64_t seed) {
  using R = Result<citycard::load::City>;
  if (Status s = config.validate(); !s) return R(s);
  citycard::load::City city;
  // One commit for the whole city, not one per card.
  auto tx = backend.store().begin();
  if (!tx) return R(tx.status());
  sim::Rng balances = sim::Rng(seed).fork("load-balances");
  for (std::int64_t i = 0; i < config.cards; ++i) {
    backend::CardParams p;
    p.opening_balance_fen = balances.uniform_range(config.balance_fen_min, config.balance_fen_max);
    auto image = backend.issue_card(p);
    if (!image) return R(image.status());
    *city.add_cards() = card_message(*image);
  }
  for (std::int64_t r = 0; r < config.routes; ++r) {
    const std::string route = "R" + std::to_string(r + 1);
    for (std::int64_t b = 0; b < config.buses_per_route; ++b) {
      backend::TerminalParams tp;
      tp.operator_id = config.operator_id;
      tp.route = route;
      tp.vehicle = route + "-B" + std::to_string(b + 1);
      tp.device_id = "val-" + tp.vehicle;
      auto psam = backend.register_terminal(tp);
      if (!psam) return R(psam.status());
      auto* t = city.add_terminals();
      t->set_terminal_id(bytes_of(psam->terminal_id));
      t->set_key_version(psam->key_version);
      t->set_purchase_master(bytes_of(psam->purchase_master));
      t->set_batch_key(bytes_of(psam->batch_key));
      t->set_next_sequence(psam->next_sequence);
      t->set_operator_id(tp.operator_id);
      t->set_route(tp.route);
      t->set_vehicle(tp.vehicle);
      t->set_device_id(tp.device_id);
      t->set_fare_fen(static_cast<std::uint32_t>(config.fare_fen));
    }
  }
  if (Status s = tx->commit(); !s) return R(s);
  return city;
}

Status write_city_file(const std::string& path, const citycard::load::City& city) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out || !city.SerializeToOstream(&out)) {
      return Status(Errc::kIo, "cannot write " + tmp);
    }
  }
  // Renamed into place: a reader never sees half a city.
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status(Errc::kIo, "cannot rename " + tmp + ": " + ec.message());
  return Status::ok();
}

Result<citycard::load::City> read_city_file(const std::string& path) {
  using R = Result<citycard::load::City>;
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return R(Errc::kNotFound, "cannot read city file " + path + ": " + ec.message());
  if (size > kCityFileBytesMax) return R(Errc::kTooLarge, path + " is over 1 GiB");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buf;
  buf << in.rdbuf();
  citycard::load::City city;
  if (!in || !city.ParseFromString(buf.str())) {
    return R(Errc::kMalformed, path + " is not a city file from `citycard load --provision`");
  }
  if (city.cards_size() == 0 || city.terminals_size() == 0) {
    return R(Errc::kMalformed, path + " holds no cards or no buses");
  }
  return city;
}

}  // namespace citycard::scenarios
