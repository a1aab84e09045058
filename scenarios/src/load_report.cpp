#include "load_report.h"

#include <unistd.h>

#include <filesystem>

#include "citycard/reports/run_summary.h"

namespace citycard::scenarios {

namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// 12345.6 -> "12,346"
std::string grouped(double v) {
  long long n = std::llround(v);
  const bool neg = n < 0;
  std::string digits = std::to_string(neg ? -n : n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return neg ? "-" + out : out;
}

double num(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : 0.0;
}

}  // namespace

RunReport::RunReport(const LoadPlan& plan, std::string out_dir, bool quiet)
    : plan_(plan),
      op_names_(plan.op_names()),
      out_dir_(std::move(out_dir)),
      quiet_(quiet),
      tty_(::isatty(::fileno(stdout)) == 1) {}

RunReport::~RunReport() {
  end_progress_line();
}

Status RunReport::open() {
  std::error_code ec;
  std::filesystem::create_directories(out_dir_, ec);
  if (ec) return Status(Errc::kIo, "cannot create " + out_dir_ + ": " + ec.message());
  windows_file_.open(out_dir_ + "/windows.jsonl", std::ios::trunc);
  if (!windows_file_) return Status(Errc::kIo, "cannot write " + out_dir_ + "/windows.jsonl");
  return Status::ok();
}

void RunReport::end_progress_line() {
  if (progress_open_) {
    std::fputc('\n', stdout);
    std::fflush(stdout);
    progress_open_ = false;
  }
}

void RunReport::say(const std::string& line) {
  if (quiet_) return;
  end_progress_line();
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

void RunReport::window(const WindowStats& w, std::optional<std::size_t> step) {
  nlohmann::json j = window_json(w, op_names_, plan_.knobs.window_us);
  if (step) j["step"] = *step;
  windows_file_ << j.dump() << '\n';
  windows_file_.flush();
  windows_.push_back(j);
  if (quiet_) return;
  const std::string line =
      "[" + fmt("%6.1f", num(j, "t_end_s")) + " s] offered " + grouped(num(j, "offered_per_s")) +
      "/s  achieved " + grouped(num(j, "achieved_per_s")) + "/s  p99 " +
      fmt("%.2f", num(j, "p99_ms")) + " ms  errors " + grouped(num(j, "errors")) + "  refused " +
      grouped(num(j, "refused")) + "  late " + grouped(num(j, "late_sends"));
  if (tty_) {
    // Rewrite the line in place: \r to its start, ESC[K to clear what was longer.
    std::fputs(("\r\033[K" + line).c_str(), stdout);
    progress_open_ = true;
  } else {
    std::fputs((line + "\n").c_str(), stdout);
  }
  std::fflush(stdout);
}

void RunReport::report(const nlohmann::json& s) {
  if (quiet_) return;
  end_progress_line();
  std::string out;
  out += "offered   " + grouped(num(s, "offered_per_s")) + "/s   achieved " +
         grouped(num(s, "achieved_per_s")) + "/s   records ingested " +
         grouped(num(s, "records_per_s")) + "/s   over " + fmt("%.1f", num(s, "elapsed_s")) +
         " s\n";
  out += "latency from the planned send time, all requests (" + grouped(num(s, "requests")) +
         "): p50 " + fmt("%.2f", num(s, "p50_ms")) + " ms  p90 " + fmt("%.2f", num(s, "p90_ms")) +
         " ms  p99 " + fmt("%.2f", num(s, "p99_ms")) + " ms  p99.9 " +
         fmt("%.2f", num(s, "p999_ms")) + " ms  max " + fmt("%.2f", num(s, "max_ms")) + " ms\n";
  if (s.contains("ops")) {
    for (const auto& [name, op] : s["ops"].items()) {
      const auto& lat = op["latency"];
      char line[320];
      std::snprintf(line, sizeof line,
                    "  %-14s planned %10s  ok %10s  err %6s  timeout %6s  refused %6s  late %8s"
                    "  p50 %8.2f  p99 %8.2f  p99.9 %8.2f  max %8.2f ms",
                    name.c_str(), grouped(num(op, "planned")).c_str(),
                    grouped(num(op, "ok")).c_str(), grouped(num(op, "errors")).c_str(),
                    grouped(num(op, "timeouts")).c_str(), grouped(num(op, "refused")).c_str(),
                    grouped(num(op, "late")).c_str(), num(lat, "p50_ms"), num(lat, "p99_ms"),
                    num(lat, "p999_ms"), num(lat, "max_ms"));
      out += line;
      if (op.contains("records_ok")) {
        out += "  records ok " + grouped(num(op, "records_ok")) + " bad " +
               grouped(num(op, "records_bad"));
      }
      out += "\n";
    }
  }
  const auto& lag = s.value("send_lag", nlohmann::json::object());
  out += "late sends " + grouped(num(s, "late_sends")) + " (send lag p99 " +
         fmt("%.2f", num(lag, "p99_ms")) + " ms, max " + fmt("%.2f", num(lag, "max_ms")) +
         " ms)  errors " + grouped(num(s, "errors")) + "  refused " + grouped(num(s, "refused")) +
         "  unfinished " + grouped(num(s, "unfinished_requests")) + " requests, " +
         grouped(num(s, "unfinished_records")) + " records\n";
  if (s.contains("error_codes") && !s["error_codes"].empty()) {
    out += "error codes: " + s["error_codes"].dump() + "\n";
  }
  if (s.contains("tap_refusals") && !s["tap_refusals"].empty()) {
    out += "taps refused: " + s["tap_refusals"].dump() + "\n";
  }
  out += "load generator busy " + fmt("%.0f", 100 * num(s, "worker_busy_fraction")) + "% of its " +
         grouped(num(s, "workers")) + " worker thread(s)\n";
  if (s.contains("backend") && s["backend"].contains("records_accepted")) {
    const auto& b = s["backend"];
    out += "backend: " + grouped(num(b, "records_accepted")) + " records accepted in " +
           grouped(num(b, "batches_accepted")) + " batches; ledger " +
           (b.value("ledger_balanced", false) ? std::string("balanced")
                                              : "NOT balanced: " + b.value("ledger_problem", "")) +
           "\n";
  }
  if (s.contains("host")) {
    const auto& h = s["host"];
    out += "host: " + grouped(num(h, "cpus")) + " cpus, load average " +
           fmt("%.2f", num(h, "load_average_1m_before")) + " before, " +
           fmt("%.2f", num(h, "load_average_1m_after")) +
           " after (generator and backend share these cpus)\n";
  }
  std::fputs(out.c_str(), stdout);
  std::fflush(stdout);
}

Status RunReport::write_summary(const nlohmann::json& summary) {
  return reports::write_text_file(out_dir_ + "/summary.json", summary.dump(2) + "\n");
}

}  // namespace citycard::scenarios
