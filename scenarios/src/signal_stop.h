// Turns SIGINT/SIGTERM into a std::stop_token for commands that run until told to stop.
// Internal to the CLI.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <stop_token>
#include <thread>

namespace citycard::scenarios {

// Blocks SIGINT/SIGTERM (and SIGUSR1, used to end the waiter) in this thread and every
// thread started after, and turns their arrival into a stop request. Construct it before
// starting any thread.
class SignalStop {
 public:
  SignalStop() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
    waiter_ = std::thread([this] {
      int sig = 0;
      sigwait(&set_, &sig);
      if (sig != SIGUSR1) {
        signal_ = sig;
        source_.request_stop();
      }
    });
  }
  ~SignalStop() {
    pthread_kill(waiter_.native_handle(), SIGUSR1);
    waiter_.join();
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SignalStop(const SignalStop&) = delete;
  SignalStop& operator=(const SignalStop&) = delete;

  std::stop_token token() const { return source_.get_token(); }
  int signal() const { return signal_; }

 private:
  sigset_t set_{};
  sigset_t old_{};
  std::stop_source source_;
  std::thread waiter_;
  int signal_ = 0;
};

}  // namespace citycard::scenarios
