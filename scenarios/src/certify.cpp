#include "citycard/scenarios/certify.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <boost/program_options.hpp>

#include "citycard/backend/ca.h"
#include "citycard/hil/bridge_terminal.h"
#include "citycard/hil/conformance.h"
#include "citycard/reports/run_summary.h"
#include "citycard/scenarios/lua_sandbox.h"
#include "citycard/scenarios/runner.h"
#include "signal_stop.h"

namespace citycard::scenarios {
namespace {

namespace fs = std::filesystem;
namespace bp = citycard::bridge;

struct Case {
  std::string name;
  std::string targets;
  int ref = LUA_NOREF;
};

struct Certifier {
  const CertifyOptions& options;
  hil::ConformanceBench& bench;
  std::vector<hil::HarnessCard> cards;
  std::vector<Case> cases;
  std::string suite_name;
  std::string suite_version = "0";
  bp::Params defaults;           // suite{params = {...}}: what every case starts from
  bool params_dirty = true;      // a case pushed other parameters
  bool blacklist_dirty = false;  // a case pushed a blacklist
  // The running case's failures.
  std::vector<std::pair<std::string, std::string>> failures;  // message, where
};

Certifier& self(lua_State* L) {
  return *static_cast<Certifier*>(lua_touserdata(L, lua_upvalueindex(1)));
}

hil::HarnessCard& card_arg(lua_State* L, int idx) {
  Certifier& c = self(L);
  if (!lua_isinteger(L, idx)) throw std::invalid_argument("a card (from card{...}) expected");
  const lua_Integer i = lua_tointeger(L, idx);
  if (i < 1 || static_cast<std::size_t>(i) > c.cards.size()) {
    throw std::invalid_argument("no such card: " + std::to_string(i));
  }
  return c.cards[static_cast<std::size_t>(i - 1)];
}

std::string where(lua_State* L) {
  luaL_where(L, 1);
  std::string w = lua_tostring(L, -1);
  lua_pop(L, 1);
  while (!w.empty() && (w.back() == ' ' || w.back() == ':')) w.pop_back();
  return w;
}

bp::Params params_from(lua_State* L, int idx);

int l_suite(lua_State* L) {
  return guarded(L, [&] {
    Certifier& c = self(L);
    c.suite_name = opt_string_field(L, 1, "name", c.suite_name);
    c.suite_version = opt_string_field(L, 1, "version", c.suite_version);
    lua_getfield(L, 1, "params");
    if (lua_istable(L, -1)) c.defaults = params_from(L, lua_gettop(L));
    lua_pop(L, 1);
    return 0;
  });
}

int l_case(lua_State* L) {
  return guarded(L, [&] {
    Certifier& c = self(L);
    // Types first, with C++ errors: a Lua error (longjmp) must not skip our destructors.
    if (lua_type(L, 1) != LUA_TSTRING) throw std::invalid_argument("case(name, [what], function)");
    const int fn = lua_type(L, 2) == LUA_TSTRING ? 3 : 2;
    if (lua_type(L, fn) != LUA_TFUNCTION) {
      throw std::invalid_argument("case: a function expected after the name");
    }
    Case k;
    k.name = lua_tostring(L, 1);
    if (fn == 3) k.targets = lua_tostring(L, 2);
    for (const Case& other : c.cases) {
      if (other.name == k.name) throw std::invalid_argument("case '" + k.name + "' twice");
    }
    lua_pushvalue(L, fn);
    k.ref = luaL_ref(L, LUA_REGISTRYINDEX);
    c.cases.push_back(std::move(k));
    return 0;
  });
}

int l_card(lua_State* L) {
  return guarded(L, [&] {
    Certifier& c = self(L);
    if (lua_isnoneornil(L, 1)) lua_newtable(L);
    backend::CardParams p;
    p.opening_balance_fen = opt_int_field(L, 1, "balance", 1000);
    const std::string type = opt_string_field(L, 1, "type", "adult");
    if (type == "adult") {
      p.card_type = protocol::CardType::kAdult;
    } else if (type == "student") {
      p.card_type = protocol::CardType::kStudent;
    } else if (type == "elder") {
      p.card_type = protocol::CardType::kElder;
    } else {
      throw std::invalid_argument("card type: adult, student or elder, not '" + type + "'");
    }
    const std::string family = opt_string_field(L, 1, "family", "jtt978");
    if (family == "cjt166") {
      p.family = protocol::Family::kCjt166;
    } else if (family != "jtt978") {
      throw std::invalid_argument("card family: jtt978 or cjt166, not '" + family + "'");
    }
    if (opt_bool_field(L, 1, "expired", false)) {
      p.valid_from = protocol::date_bcd(2015, 1, 1);
      p.valid_to = protocol::date_bcd(2020, 12, 31);
    }
    auto card = c.bench.issue_card(p);
    if (!card) throw std::runtime_error("issue card: " + card.status().to_string());
    c.cards.push_back(std::move(*card));
    lua_pushinteger(L, static_cast<lua_Integer>(c.cards.size()));
    return 1;
  });
}

int l_tap(lua_State* L) {
  return guarded(L, [&] {
    Certifier& c = self(L);
    hil::HarnessCard& card = card_arg(L, 1);
    std::optional<std::pair<std::size_t, bool>> tear;
    bool keep = false;
    if (lua_istable(L, 2)) {
      const std::int64_t n = opt_int_field(L, 2, "tear_at", -1);
      if (n >= 0)
        tear = std::make_pair(static_cast<std::size_t>(n), opt_bool_field(L, 2, "after", true));
      keep = opt_bool_field(L, 2, "keep", false);
    }
    hil::BridgeHost& host = c.bench.host();
    const std::uint64_t session = host.present(card.model, card.uid, tear);
    auto outcome = host.wait_outcome(session, c.options.step_timeout_ms);
    if (!keep) host.remove();
    if (!outcome) {
      throw std::runtime_error("the terminal reported no outcome for the card within " +
                               std::to_string(c.options.step_timeout_ms) + " ms");
    }
    const hil::BridgeSession s = host.session(session);
    lua_newtable(L);
    lua_pushboolean(L, outcome->accepted());
    lua_setfield(L, -2, "accepted");
    lua_pushstring(L, outcome->reason().c_str());
    lua_setfield(L, -2, "reason");
    lua_pushinteger(L, outcome->charged_fen());
    lua_setfield(L, -2, "charged");
    lua_pushinteger(L, static_cast<lua_Integer>(session));
    lua_setfield(L, -2, "session");
    lua_pushinteger(L, s.card_us());
    lua_setfield(L, -2, "card_us");
    bool torn = false;
    lua_newtable(L);
    for (std::size_t i = 0; i < s.apdus.size(); ++i) {
      const hil::BridgeApdu& a = s.apdus[i];
      torn = torn || a.torn;
      std::string e = to_hex(ByteView(a.capdu).first(std::min<std::size_t>(2, a.capdu.size())));
      e += ":";
      e += a.torn                ? std::string("torn")
           : a.rapdu.size() >= 2 ? to_hex(ByteView(a.rapdu).last(2))
                                 : std::string("?");
      lua_pushstring(L, e.c_str());
      lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
    }
    lua_setfield(L, -2, "apdus");
    lua_pushboolean(L, torn);
    lua_setfield(L, -2, "torn");
    return 1;
  });
}

int l_balance(lua_State* L) {
  return guarded(L, [&] {
    lua_pushinteger(L, self(L).bench.balance_fen(card_arg(L, 1)));
    return 1;
  });
}

int l_backend_balance(lua_State* L) {
  return guarded(L, [&] {
    auto b = self(L).bench.backend_balance_fen(card_arg(L, 1));
    if (!b) throw std::runtime_error(b.status().to_string());
    lua_pushinteger(L, *b);
    return 1;
  });
}

int l_blocked(lua_State* L) {
  return guarded(L, [&] {
    lua_pushboolean(L, self(L).bench.blocked(card_arg(L, 1)));
    return 1;
  });
}

// The card's records as uploaded: one entry per (batch number, record), so a record sent
// again in a retransmitted batch (same number) counts once and one sent in another batch
// counts twice.
int l_uploaded(lua_State* L) {
  return guarded(L, [&] {
    hil::HarnessCard& card = card_arg(L, 1);
    const std::string serial(card.serial.begin(), card.serial.end());
    std::set<std::pair<std::uint64_t, std::uint32_t>> seen;
    lua_newtable(L);
    lua_Integer n = 0;
    for (const auto& batch : self(L).bench.host().uploads()) {
      for (const auto& r : batch.records()) {
        if (r.card_serial() != serial) continue;
        if (!seen.insert({batch.batch_no(), r.card_counter()}).second) continue;
        lua_newtable(L);
        lua_pushinteger(L, r.amount_fen());
        lua_setfield(L, -2, "amount");
        lua_pushinteger(L, r.card_counter());
        lua_setfield(L, -2, "counter");
        lua_pushinteger(L, r.balance_before_fen());
        lua_setfield(L, -2, "balance_before");
        lua_pushinteger(L, r.fare_full_fen());
        lua_setfield(L, -2, "fare_full");
        lua_pushinteger(L, r.transfer_count());
        lua_setfield(L, -2, "transfer");
        lua_pushinteger(L, static_cast<lua_Integer>(batch.batch_no()));
        lua_setfield(L, -2, "batch");
        const std::pair<const char*, const std::string*> strings[] = {
            {"operator", &r.operator_id()},
            {"route", &r.route()},
            {"vehicle", &r.vehicle()},
            {"device", &r.device()}};
        for (const auto& [k, v] : strings) {
          lua_pushstring(L, v->c_str());
          lua_setfield(L, -2, k);
        }
        const std::pair<const char*, const std::string*> bytes[] = {
            {"terminal", &r.terminal_id()}, {"datetime", &r.datetime()}, {"tac", &r.tac()}};
        for (const auto& [k, v] : bytes) {
          lua_pushstring(
              L, to_hex(ByteView(reinterpret_cast<const std::uint8_t*>(v->data()), v->size()))
                     .c_str());
          lua_setfield(L, -2, k);
        }
        lua_rawseti(L, -2, ++n);
      }
    }
    return 1;
  });
}

int l_settle(lua_State* L) {
  return guarded(L, [&] {
    Certifier& c = self(L);
    lua_pushboolean(L, c.bench.host().wait_idle(c.options.step_timeout_ms));
    return 1;
  });
}

int l_queued(lua_State* L) {
  return guarded(L, [&] {
    Certifier& c = self(L);
    const lua_Integer n = luaL_checkinteger(L, 1);
    lua_pushboolean(
        L, c.bench.host().wait_queued(static_cast<std::uint32_t>(n), c.options.step_timeout_ms));
    return 1;
  });
}

int l_advance(lua_State* L) {
  return guarded(L, [&] {
    self(L).bench.advance_s(luaL_checkinteger(L, 1));
    return 0;
  });
}

int l_link(lua_State* L) {
  return guarded(L, [&] {
    self(L).bench.host().set_link(lua_toboolean(L, 1) != 0);
    return 0;
  });
}

int l_blacklist(lua_State* L) {
  return guarded(L, [&] {
    std::vector<protocol::Serial8> serials;
    if (lua_istable(L, 1)) {
      const lua_Integer n = luaL_len(L, 1);
      for (lua_Integer i = 1; i <= n; ++i) {
        lua_rawgeti(L, 1, i);
        serials.push_back(card_arg(L, -1).serial);
        lua_pop(L, 1);
      }
    }
    self(L).bench.host().set_blacklist(serials);
    self(L).blacklist_dirty = true;
    return 0;
  });
}

bp::Params params_from(lua_State* L, int idx) {
  bp::Params p;
  lua_pushvalue(L, idx);
  {
    p.set_flat_fare_fen(static_cast<std::uint32_t>(opt_int_field(L, -1, "fare", 200)));
    p.set_transfer_window_s(static_cast<std::uint32_t>(opt_int_field(L, -1, "transfer_window", 0)));
    p.set_transfer_discount_fen(
        static_cast<std::uint32_t>(opt_int_field(L, -1, "transfer_discount", 0)));
    lua_getfield(L, -1, "discounts");
    if (lua_istable(L, -1)) {
      for (lua_Integer i = 1; i <= 4; ++i) {
        lua_rawgeti(L, -1, i);
        p.add_card_type_discount_bp(static_cast<std::uint32_t>(lua_tointeger(L, -1)));
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 2);
  }
  return p;
}

int l_params(lua_State* L) {
  return guarded(L, [&] {
    Certifier& c = self(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    c.bench.host().set_params(params_from(L, 1));
    c.params_dirty = true;
    return 0;
  });
}

int l_lose_next_reply(lua_State* L) {
  return guarded(L, [&] {
    self(L).bench.host().lose_next_backend_reply();
    return 0;
  });
}

int l_ride_elsewhere(lua_State* L) {
  return guarded(L, [&] {
    hil::HarnessCard& card = card_arg(L, 1);
    Status s =
        self(L).bench.ride_elsewhere(card, static_cast<std::uint32_t>(luaL_checkinteger(L, 2)));
    if (!s) throw std::runtime_error(s.to_string());
    return 0;
  });
}

int l_expect(lua_State* L) {
  Certifier& c = self(L);
  if (!lua_toboolean(L, 1)) {
    c.failures.emplace_back(luaL_optstring(L, 2, "expectation failed"), where(L));
  }
  lua_pushboolean(L, lua_toboolean(L, 1));
  return 1;
}

int l_conserved(lua_State* L) {
  Status s = self(L).bench.check_conservation();
  lua_pushboolean(L, s.is_ok());
  lua_pushstring(L, s.is_ok() ? "" : s.to_string().c_str());
  return 2;
}

std::string sha256_hex(const std::string& data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return to_hex(ByteView(md, sizeof md));
}

Result<Bytes> sign_sha256(const std::string& private_pem, const std::string& data) {
  BIO* bio = BIO_new_mem_buf(private_pem.data(), static_cast<int>(private_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!key) return Result<Bytes>(Errc::kInternal, "harness private key unreadable");
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::size_t len = 0;
  Bytes sig;
  bool ok = EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()),
                           data.size()) == 1;
  if (ok) {
    sig.resize(len);
    ok = EVP_DigestSign(ctx, sig.data(), &len, reinterpret_cast<const unsigned char*>(data.data()),
                        data.size()) == 1;
    sig.resize(len);
  }
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(key);
  if (!ok) return Result<Bytes>(Errc::kInternal, "signing the certificate failed");
  return sig;
}

Status write_file(const fs::path& path, const std::string& text) {
  return reports::write_text_file(path.string(), text);
}

Status write_outputs(const CertifyOptions& options, hil::ConformanceBench& bench,
                     const reports::CertifyResult& result) {
  std::error_code ec;
  fs::create_directories(options.out_dir, ec);
  if (ec)
    return Status(Errc::kUnavailable, "cannot create " + options.out_dir + ": " + ec.message());
  const fs::path out(options.out_dir);
  const std::string cert = reports::certificate_json(result);
  std::string root_key;
  // The CA's calendar is the real one (certificates must be valid today, for anyone's openssl);
  // the harness's own calendar is the cases' virtual time.
  sim::WallClock wall;
  const backend::Calendar calendar(wall, sim::unix_time_s() - 946'684'800 + 8 * 3600);
  auto ca = backend::CertificateAuthority::open(bench.backend().store(), calendar,
                                                backend::PkiOptions{}, &root_key);
  if (!ca) return ca.status();
  auto identity = (*ca)->server_identity("certify.harness.citycard");
  if (!identity) return identity.status();
  auto sig = sign_sha256(identity->private_key_pem, cert);
  if (!sig) return sig.status();
  for (const auto& [name, text] : std::vector<std::pair<std::string, std::string>>{
           {"certificate.json", cert},
           {"certificate.sig", std::string(sig->begin(), sig->end())},
           {"harness.pem", identity->certificate.pem},
           {"chain.pem", (*ca)->city_ca_pem() + (*ca)->national_ca_pem()},
           {"root.pem", (*ca)->root_pem()},
           {"junit.xml", reports::certify_junit(result)},
           {"certify.html", reports::certify_html(result, cert, identity->certificate.subject)}}) {
    if (Status s = write_file(out / name, text); !s) return s;
  }
  return Status();
}

}  // namespace

Result<reports::CertifyResult> certify(const CertifyOptions& options) {
  const auto wall_start = std::chrono::steady_clock::now();
  std::ifstream in(options.suite_path, std::ios::binary);
  if (!in)
    return Result<reports::CertifyResult>(Errc::kNotFound, "no such suite: " + options.suite_path);
  std::stringstream text;
  text << in.rdbuf();
  hil::ConformanceOptions co;
  co.endpoint = options.endpoint;
  co.db_path = options.data_path;
  auto bench = hil::ConformanceBench::open(co);
  if (!bench) return bench.status();
  if (options.on_listening) options.on_listening((*bench)->host().endpoint());

  Certifier c{options, **bench, {}, {}, fs::path(options.suite_path).stem().string()};
  hil::HarnessClock lua_clock;
  LuaSandbox sandbox(SandboxLimits{}, fs::path(options.suite_path).parent_path().string(),
                     lua_clock, 0, sim::Rng(1));
  const std::pair<const char*, lua_CFunction> api[] = {{"suite", l_suite},
                                                       {"case", l_case},
                                                       {"card", l_card},
                                                       {"tap", l_tap},
                                                       {"balance", l_balance},
                                                       {"backend_balance", l_backend_balance},
                                                       {"blocked", l_blocked},
                                                       {"uploaded", l_uploaded},
                                                       {"settle", l_settle},
                                                       {"queued", l_queued},
                                                       {"advance", l_advance},
                                                       {"link", l_link},
                                                       {"blacklist", l_blacklist},
                                                       {"params", l_params},
                                                       {"ride_elsewhere", l_ride_elsewhere},
                                                       {"expect", l_expect},
                                                       {"lose_next_reply", l_lose_next_reply},
                                                       {"conserved", l_conserved}};
  for (const auto& [name, fn] : api) sandbox.set_global_function(name, fn, &c);
  sandbox.lock_globals();
  if (Status s = sandbox.run_file(options.suite_path); !s) return s;
  c.defaults.set_flat_fare_fen(c.defaults.flat_fare_fen() ? c.defaults.flat_fare_fen() : 200);
  (*bench)->host().set_params(c.defaults);  // before the terminal's first poll
  c.params_dirty = false;
  if (c.cases.empty())
    return Result<reports::CertifyResult>(Errc::kInvalidArgument, "the suite defines no case");

  hil::BridgeHost& host = (*bench)->host();
  {
    // Wait for the terminal's Hello.
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(options.hello_wait_ms);
    while (!host.hello() && std::chrono::steady_clock::now() < deadline) {
      host.wait_idle(200);  // wakes on any request
    }
    if (!host.hello()) {
      return Result<reports::CertifyResult>(
          Errc::kTimeout, "no terminal said Hello at " + host.endpoint() + " within " +
                              std::to_string(options.hello_wait_ms) + " ms");
    }
  }
  reports::CertifyResult result;
  result.suite = c.suite_name;
  result.suite_path = options.suite_path;
  result.suite_version = c.suite_version;
  result.suite_sha256 = sha256_hex(text.str());
  result.terminal = host.hello()->terminal();
  result.terminal_kind = host.hello()->kind();
  result.vendor = host.hello()->vendor();
  result.endpoint = host.endpoint();
  result.issued_unix_s = sim::unix_time_s();

  for (const Case& k : c.cases) {
    if (!options.only.empty() &&
        std::find(options.only.begin(), options.only.end(), k.name) == options.only.end()) {
      continue;
    }
    const auto t0 = std::chrono::steady_clock::now();
    c.failures.clear();
    host.set_link(true);
    if (c.blacklist_dirty) host.set_blacklist({});
    if (c.params_dirty) host.set_params(c.defaults);
    c.blacklist_dirty = c.params_dirty = false;
    reports::CertifyCase r;
    r.name = k.name;
    r.targets = k.targets;
    if (Status s = sandbox.call_function_ref(k.ref); !s) c.failures.emplace_back(s.message(), "");
    host.remove();
    host.set_link(true);
    if (!host.wait_idle(options.step_timeout_ms)) {
      c.failures.emplace_back("the terminal did not settle (queue empty) after the case", "");
    }
    r.passed = c.failures.empty();
    if (!r.passed) {
      r.message = c.failures.front().first;
      r.where = c.failures.front().second;
      for (std::size_t i = 1; i < c.failures.size(); ++i) r.message += "; " + c.failures[i].first;
    }
    r.wall_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    result.cases.push_back(std::move(r));
  }
  if (options.on_done) options.on_done();
  result.wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  if (Status s = (*bench)->check_conservation(); !s) {
    reports::CertifyCase books{"books_balanced",
                               "the harness's ledger balances after the suite",
                               false,
                               s.to_string(),
                               "",
                               0};
    result.cases.push_back(books);
  }
  if (!options.out_dir.empty()) {
    if (Status s = write_outputs(options, **bench, result); !s) return s;
  }
  return result;
}

namespace po = boost::program_options;

int cmd_certify(const std::vector<std::string>& args) {
  po::options_description opts("citycard certify --suite SUITE.lua --terminal ENDPOINT [options]");
  CertifyOptions o;
  int hello_wait_s = 30;
  opts.add_options()("help,h", "this help")("suite", po::value(&o.suite_path),
                                            "the conformance suite (scenarios/conformance/*.lua)")(
      "terminal", po::value(&o.endpoint),
      "the endpoint the harness listens on for the terminal "
      "under test (tcp://HOST:PORT; port 0: any, printed)")(
      "out", po::value(&o.out_dir),
      "folder for junit.xml, certify.html, certificate.json/.sig "
      "and the harness certificate chain (default runs/certify-<time>)")(
      "data", po::value(&o.data_path),
      "the harness backend's SQLite file (keeps its CA between "
      "runs); default in memory")("case", po::value(&o.only), "run only this case (repeatable)")(
      "hello-wait-s", po::value(&hello_wait_s), "wait this long for the terminal (default 30)");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(opts).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "citycard certify: " << e.what() << "\n" << opts;
    return 2;
  }
  if (vm.count("help")) {
    std::cout << opts;
    return 0;
  }
  if (o.suite_path.empty() || !vm.count("terminal")) {
    std::cerr << "citycard certify: --suite and --terminal are required\n" << opts;
    return 2;
  }
  if (o.endpoint.rfind("tcp://", 0) != 0 && o.endpoint.rfind("ipc://", 0) != 0) {
    std::cerr << "citycard certify: --terminal takes tcp://HOST:PORT or ipc://PATH, not '"
              << o.endpoint << "'\n";
    return 2;
  }
  if (o.out_dir.empty()) o.out_dir = default_run_dir("certify-");
  o.hello_wait_ms = hello_wait_s * 1000;
  o.on_listening = [](const std::string& endpoint) {
    std::printf("certify: listening on %s for the terminal under test\n", endpoint.c_str());
    std::fflush(stdout);
  };
  auto r = certify(o);
  if (!r) {
    std::cerr << "citycard certify: " << r.status().to_string() << "\n";
    return 2;
  }
  std::printf("terminal %s (%s) — suite %s %s\n", r->terminal.c_str(), r->terminal_kind.c_str(),
              r->suite.c_str(), r->suite_version.c_str());
  for (const auto& k : r->cases) {
    std::printf(
        "  %-34s %s%s%s\n", k.name.c_str(), k.passed ? "pass" : "FAIL", k.passed ? "" : "  ",
        k.passed ? "" : (k.message + (k.where.empty() ? "" : " (" + k.where + ")")).c_str());
  }
  std::printf(
      "%zu/%zu cases passed in %.2f s: %s\nreports: %s/certify.html, %s/junit.xml, "
      "%s/certificate.json (+ .sig)\n",
      r->passed_count(), r->cases.size(), r->wall_s, r->passed() ? "CERTIFIED" : "NOT CERTIFIED",
      o.out_dir.c_str(), o.out_dir.c_str(), o.out_dir.c_str());
  return r->passed() ? 0 : 1;
}

int cmd_terminal(const std::vector<std::string>& args) {
  po::options_description opts("citycard terminal --bridge ENDPOINT [options]");
  hil::BridgeTerminalOptions o;
  std::vector<std::string> defects;
  std::string all_names;
  for (auto d : hil::all_terminal_defects()) {
    all_names += (all_names.empty() ? "" : "|") + std::string(hil::terminal_defect_name(d));
  }
  opts.add_options()("help,h", "this help")(
      "bridge", po::value(&o.endpoint),
      "the harness's bridge endpoint (citycard certify --terminal)")("kind", po::value(&o.kind),
                                                                     "bus | pos (default bus)")(
      "name", po::value(&o.name), "the terminal's name in the certificate")(
      "defect", po::value(&defects), ("inject a defect (repeatable): " + all_names).c_str());
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(opts).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "citycard terminal: " << e.what() << "\n" << opts;
    return 2;
  }
  if (vm.count("help")) {
    std::cout << opts;
    return 0;
  }
  if (o.endpoint.empty()) {
    std::cerr << "citycard terminal: --bridge ENDPOINT is required\n" << opts;
    return 2;
  }
  if (o.kind != "bus" && o.kind != "pos") {
    std::cerr << "citycard terminal: --kind takes bus or pos, not '" << o.kind << "'\n";
    return 2;
  }
  for (const auto& d : defects) {
    auto defect = hil::terminal_defect_from_name(d);
    if (!defect) {
      std::cerr << "citycard terminal: unknown defect '" << d << "' (" << all_names << ")\n";
      return 2;
    }
    o.defects.insert(*defect);
  }
  SignalStop signals;
  std::printf("terminal %s (%s%s) connecting to %s\n", o.name.c_str(), o.kind.c_str(),
              defects.empty() ? "" : ", defects injected", o.endpoint.c_str());
  std::fflush(stdout);
  Status s = hil::run_bridge_terminal(o, signals.token());
  if (!s) {
    std::cerr << "citycard terminal: " << s.to_string() << "\n";
    return 1;
  }
  std::printf("terminal stopped\n");
  return 0;
}

}  // namespace citycard::scenarios
