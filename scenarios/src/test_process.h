// For tests that run the citycard binary: a child process with its stdout on a pipe, read line
// by line with a deadline, so a test waits for what the child says (its endpoint, "done"), not
// for a guessed time. Header-only; test code only.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

extern char** environ;

namespace citycard::scenarios::testing {

class Child {
 public:
  // Runs argv[0] with argv (no shell, so "tcp://127.0.0.1:*" reaches it unglobbed); stdout to a
  // pipe we read, stderr inherited.
  explicit Child(const std::vector<std::string>& argv) {
    int fds[2];
    if (::pipe(fds) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    out_ = fds[0];
  }
  ~Child() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) ::close(out_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  // The next line the child writes, or nothing if it closes stdout or `timeout_ms` passes.
  std::optional<std::string> read_line(int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        output_ += line + "\n";
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::read(out_, buf, sizeof buf);
      if (n <= 0) return std::nullopt;
      buffer_.append(buf, static_cast<std::size_t>(n));
    }
  }

  // Reads lines until one contains `needle`; that line, or nothing by the deadline.
  std::optional<std::string> wait_for(const std::string& needle, int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      auto line = read_line(static_cast<int>(left.count()));
      if (!line) return std::nullopt;
      if (line->find(needle) != std::string::npos) return line;
    }
  }

  void signal(int sig) { ::kill(pid_, sig); }

  // The exit code, waiting at most `timeout_ms` (reading stdout meanwhile so the child never
  // blocks on a full pipe); nothing if it has not exited by then.
  std::optional<int> wait_exit(int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        // Drain what it wrote before exiting, up to end of file (the pipe's write end is
        // closed now; the timeout only guards against a grandchild that kept it open).
        while (read_line(2'000)) {
        }
        output_ += buffer_;  // a last line without its newline
        buffer_.clear();
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
      // Drain output while waiting; returns at once when there is none for 20 ms.
      (void)read_line(20);
    }
  }

  // Everything read so far, line by line.
  const std::string& output() const { return output_; }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  bool exited_ = false;
  std::string buffer_;
  std::string output_;
};

// "... listening on tcp://127.0.0.1:41234 ..." -> "tcp://127.0.0.1:41234"
inline std::string endpoint_in(const std::string& line) {
  const auto at = line.find("tcp://");
  if (at == std::string::npos) return "";
  auto end = line.find_first_of(" ;,)", at);
  return line.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

}  // namespace citycard::scenarios::testing
