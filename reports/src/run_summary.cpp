#include "citycard/reports/run_summary.h"

#include <cstdio>
#include <fstream>
#include <sstream>

namespace citycard::reports {

std::size_t RunSummary::passed() const {
  std::size_t n = 0;
  for (const auto& e : expectations) n += e.passed ? 1 : 0;
  return n;
}
std::size_t RunSummary::failed() const { return expectations.size() - passed(); }
bool RunSummary::ok() const { return error.empty() && failed() == 0 && !expectations.empty(); }

Json to_json(const RunSummary& s) {
  Json exps = Json::array();
  for (const auto& e : s.expectations) {
    exps.push_back({{"name", e.name},
                    {"passed", e.passed},
                    {"message", e.message},
                    {"where", e.where},
                    {"t_us", e.t_us}});
  }
  return Json{{"scenario", s.scenario},
              {"scenario_path", s.scenario_path},
              {"description", s.description},
              {"tags", s.tags},
              {"seed", s.seed},
              {"knobs", s.knobs},
              {"swipes", s.swipes},
              {"refusals", s.refusals},
              {"swipes_per_s_wall", s.swipes_per_s_wall},
              {"virtual_duration_s", s.virtual_duration_s},
              {"wall_duration_s", s.wall_duration_s},
              {"expectations",
               {{"passed", s.passed()}, {"failed", s.failed()}, {"list", exps}}},
              {"ledger", {{"balanced", s.ledger_balanced}}},
              {"trace_digest", s.trace_digest},
              {"replay_command", s.replay_command},
              {"error", s.error},
              {"verdict", s.ok() ? "pass" : "fail"},
              {"figures", s.figures}};
}

Result<RunSummary> summary_from_json(const Json& j) {
  try {
    RunSummary s;
    s.scenario = j.at("scenario").get<std::string>();
    s.scenario_path = j.value("scenario_path", "");
    s.description = j.value("description", "");
    s.tags = j.value("tags", std::vector<std::string>{});
    s.seed = j.at("seed").get<std::uint64_t>();
    s.knobs = j.value("knobs", Json::object());
    s.swipes = j.value("swipes", std::uint64_t{0});
    s.refusals = j.value("refusals", std::uint64_t{0});
    s.swipes_per_s_wall = j.value("swipes_per_s_wall", 0.0);
    s.virtual_duration_s = j.value("virtual_duration_s", 0.0);
    s.wall_duration_s = j.value("wall_duration_s", 0.0);
    for (const auto& e : j.at("expectations").at("list")) {
      s.expectations.push_back({e.at("name").get<std::string>(), e.at("passed").get<bool>(),
                                e.value("message", ""), e.value("where", ""),
                                e.value("t_us", std::int64_t{0})});
    }
    s.ledger_balanced = j.at("ledger").at("balanced").get<bool>();
    s.trace_digest = j.value("trace_digest", "");
    s.replay_command = j.value("replay_command", "");
    s.error = j.value("error", "");
    s.figures = j.value("figures", Json::object());
    return s;
  } catch (const Json::exception& e) {
    return Result<RunSummary>(Errc::kMalformed, std::string("summary.json: ") + e.what());
  }
}

Status write_text_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return Status(Errc::kIo, "cannot write " + path);
  f.write(text.data(), static_cast<std::streamsize>(text.size()));
  f.close();
  return f ? Status::ok() : Status(Errc::kIo, "write failed: " + path);
}

Result<std::string> read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Result<std::string>(Errc::kNotFound, "cannot read " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string human_summary(const RunSummary& s) {
  std::ostringstream o;
  char buf[256];
  o << "scenario:    " << s.scenario << " (" << s.scenario_path << ")\n";
  o << "seed:        " << s.seed << "\n";
  std::snprintf(buf, sizeof buf, "swipes:      %llu (%llu refused) in %.0f s virtual, %.2f s wall\n",
                static_cast<unsigned long long>(s.swipes),
                static_cast<unsigned long long>(s.refusals), s.virtual_duration_s,
                s.wall_duration_s);
  o << buf;
  std::snprintf(buf, sizeof buf,
                "speed:       %.0f swipes per second of wall time; virtual time ran %.0fx wall\n",
                s.swipes_per_s_wall,
                s.wall_duration_s > 0 ? s.virtual_duration_s / s.wall_duration_s : 0.0);
  o << buf;
  if (!s.knobs.empty()) {
    o << "knobs:      ";
    for (auto it = s.knobs.begin(); it != s.knobs.end(); ++it)
      o << " " << it.key() << "=" << it->dump();
    o << "\n";
  }
  o << "ledger:      " << (s.ledger_balanced ? "balanced" : "NOT BALANCED") << "\n";
  o << "expectations: " << s.passed() << " passed, " << s.failed() << " failed\n";
  for (const auto& e : s.expectations) {
    if (e.passed) continue;
    o << "  FAILED " << e.name;
    if (!e.where.empty()) o << " (" << e.where << ")";
    if (!e.message.empty()) o << ": " << e.message;
    o << "\n";
  }
  if (!s.error.empty()) o << "error:       " << s.error << "\n";
  if (!s.ok() && !s.replay_command.empty()) o << "replay:      " << s.replay_command << "\n";
  o << "verdict:     " << (s.ok() ? "PASS" : "FAIL") << "\n";
  o << "trace digest: " << s.trace_digest << "\n";
  return o.str();
}

}  // namespace citycard::reports
