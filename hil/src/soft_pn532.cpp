#include "citycard/hil/soft_pn532.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "citycard/sim/clock.h"
#include "pn532_chip.h"

namespace citycard::hil {

namespace {

constexpr std::size_t kReadChunkBytes = 4096;
// The loop wakes at least this often even with nothing to do, as a backstop for stop().
constexpr int kIdlePollMs = 1000;
// How long a reply may wait for room in the pty before it is dropped (and counted): a
// client that stopped reading must not stall the emulator.
constexpr int kWriteStallMs = 200;

Status errno_status(Errc code, const std::string& what) {
  return Status(code, what + ": " + std::strerror(errno));
}

std::string hex_line(const char* dir, ByteView bytes) {
  return std::string(dir) + " " + to_hex(bytes);
}

}  // namespace

struct SoftPn532::Impl {
  explicit Impl(SoftPn532Options opts)
      : options(std::move(opts)),
        log(options.log_sink, clock, options.log_lines_per_s, options.log_burst_lines),
        chip(options) {}

  ~Impl() {
    for (int fd : {master, slave, wake_r, wake_w}) {
      if (fd >= 0) ::close(fd);
    }
  }

  Status open_pty();
  void run();
  void wake() const {
    const std::uint8_t b = 1;
    // A full pipe already means "wake up"; nothing is lost by ignoring EAGAIN.
    [[maybe_unused]] const ssize_t n = ::write(wake_w, &b, 1);
  }

  // Emulator thread, under mu.
  void on_bytes(ByteView bytes, std::int64_t now_us);
  void on_frame(const pn532::Frame& f, std::int64_t now_us);
  // Sends a reply now or when its latency is over; `ack_first`: the command's ACK is still due.
  void deliver(const detail::ChipReply& reply, std::int64_t now_us, bool ack_first);
  void note_reply(const Bytes& frame);
  bool write_out(const Bytes& bytes);
  void tick(std::int64_t now_us);
  void cancel_pending(bool by_ack);
  void flush_events();
  int poll_timeout_ms(std::int64_t now_us) const;
  void snapshot_decoder() { chip.counters().decoder = decoder.counters(); }

  const SoftPn532Options options;
  sim::WallClock clock;
  RateLimitedLog log;
  int master = -1;
  int slave = -1;
  int wake_r = -1;
  int wake_w = -1;
  std::string pty_path;
  std::string link_path;  // created by us; removed at stop
  std::thread thread;
  std::atomic<bool> stopping{false};
  bool stopped = false;  // guarded by stop_mu
  std::mutex stop_mu;

  mutable std::mutex mu;
  mutable std::condition_variable cv;  // notified whenever the loop has handled something
  detail::Pn532Chip chip;              // guarded by mu
  Pn532Latency latency;                // guarded by mu
  pn532::FrameDecoder decoder;         // emulator thread only
  struct Delayed {
    Bytes frame;
    std::int64_t due_us;
  };
  std::optional<Delayed> delayed;  // a reply held back by the latency knob; guarded by mu
  Bytes last_reply;                // for NACK; guarded by mu
};

Status SoftPn532::Impl::open_pty() {
  master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) return errno_status(Errc::kUnavailable, "posix_openpt");
  if (::grantpt(master) != 0) return errno_status(Errc::kUnavailable, "grantpt");
  if (::unlockpt(master) != 0) return errno_status(Errc::kUnavailable, "unlockpt");
  char name[128];
  if (::ptsname_r(master, name, sizeof(name)) != 0) {
    return errno_status(Errc::kUnavailable, "ptsname_r");
  }
  pty_path = name;
  // Our own slave fd: while it is open, reading the master never fails with EIO when no
  // client has the port open (PN532.md), and the line settings below stay in force.
  slave = ::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) return errno_status(Errc::kUnavailable, "open " + pty_path);
  termios t{};
  if (::tcgetattr(slave, &t) != 0) return errno_status(Errc::kUnavailable, "tcgetattr");
  ::cfmakeraw(&t);  // no echo, no line editing, no CR/LF mangling: a byte pipe like a UART
  if (::tcsetattr(slave, TCSANOW, &t) != 0) return errno_status(Errc::kUnavailable, "tcsetattr");
  if (::fcntl(master, F_SETFL, ::fcntl(master, F_GETFL) | O_NONBLOCK) != 0) {
    return errno_status(Errc::kUnavailable, "fcntl O_NONBLOCK");
  }
  int p[2];
  if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return errno_status(Errc::kUnavailable, "pipe2");
  wake_r = p[0];
  wake_w = p[1];

  if (!options.link_path.empty()) {
    const std::string& lp = options.link_path;
    if (lp.find(':') != std::string::npos) {
      return Status(
          Errc::kInvalidArgument,
          "pty link path '" + lp + "' contains ':', which libnfc's connstring cannot carry");
    }
    struct stat st {};
    if (::lstat(lp.c_str(), &st) == 0) {
      if (!S_ISLNK(st.st_mode)) {
        return Status(Errc::kInvalidArgument, "'" + lp + "' exists and is not a symlink");
      }
      ::unlink(lp.c_str());
    }
    if (::symlink(pty_path.c_str(), lp.c_str()) != 0) {
      return errno_status(Errc::kIo, "symlink " + lp + " -> " + pty_path);
    }
    link_path = lp;
  }
  return Status::ok();
}

int SoftPn532::Impl::poll_timeout_ms(std::int64_t now_us) const {
  std::optional<std::int64_t> next = decoder.partial_deadline_us();
  auto earliest = [&](std::optional<std::int64_t> t) {
    if (t && (!next || *t < *next)) next = t;
  };
  {
    std::lock_guard lock(mu);
    if (delayed) earliest(delayed->due_us);
    earliest(chip.pending_deadline_us());
  }
  if (!next) return kIdlePollMs;
  const std::int64_t wait_us = std::max<std::int64_t>(0, *next - now_us);
  return static_cast<int>(std::min<std::int64_t>(kIdlePollMs, (wait_us + 999) / 1000));
}

void SoftPn532::Impl::run() {
  std::array<std::uint8_t, kReadChunkBytes> buf{};
  while (!stopping.load()) {
    pollfd fds[2] = {{master, POLLIN, 0}, {wake_r, POLLIN, 0}};
    const int r = ::poll(fds, 2, poll_timeout_ms(clock.now_us()));
    if (r < 0 && errno != EINTR) {
      log.log(std::string("poll failed: ") + std::strerror(errno));
      break;
    }
    if (r > 0 && (fds[1].revents & POLLIN) != 0) {
      std::uint8_t drain[64];
      while (::read(wake_r, drain, sizeof(drain)) > 0) {
      }
    }
    std::optional<ByteView> input;
    ssize_t n = 0;
    if (r > 0 && (fds[0].revents & POLLIN) != 0) {
      n = ::read(master, buf.data(), buf.size());
      if (n > 0) input = ByteView(buf.data(), static_cast<std::size_t>(n));
    }
    if (!input && r > 0 && (fds[0].revents & (POLLERR | POLLHUP)) != 0) {
      // Cannot happen while we hold a slave fd; if it does, do not spin on it.
      pollfd w{wake_r, POLLIN, 0};
      ::poll(&w, 1, kIdlePollMs);
    }
    const std::int64_t now = clock.now_us();
    {
      std::lock_guard lock(mu);
      if (input) on_bytes(*input, now);
      tick(now);
      flush_events();
    }
    cv.notify_all();
  }
}

void SoftPn532::Impl::on_bytes(ByteView bytes, std::int64_t now_us) {
  if (chip.asleep()) {
    // HSU wake-up: the first byte (libnfc sends 55) only wakes the chip and is lost.
    chip.wake();
    decoder.reset();
    ++chip.counters().wakeups;
    bytes = bytes.subspan(1);
  }
  std::vector<pn532::Frame> frames;
  decoder.feed(bytes, now_us, frames);
  snapshot_decoder();
  for (const pn532::Frame& f : frames) on_frame(f, now_us);
}

void SoftPn532::Impl::on_frame(const pn532::Frame& f, std::int64_t now_us) {
  switch (f.kind) {
    case pn532::Frame::Kind::kAck:
      // libnfc sends an ACK to abort the command it is waiting for (nfc_abort_command).
      cancel_pending(/*by_ack=*/true);
      return;
    case pn532::Frame::Kind::kNack:
      if (!last_reply.empty()) {
        ++chip.counters().nacks_answered;
        write_out(last_reply);
      }
      return;
    case pn532::Frame::Kind::kData:
      break;
  }
  if (f.tfi != pn532::kTfiHostToChip || f.data.empty()) {
    log.log("frame with TFI " + to_hex(ByteView(&f.tfi, 1)) + " ignored");
    return;
  }
  if (options.log_frames) log.log(hex_line(">>", f.data));
  // libnfc never aborts a command that timed out: it flushes and sends the next one. So a new
  // frame ends whatever was still pending (PN532.md).
  cancel_pending(/*by_ack=*/false);
  deliver(chip.execute(f.data, now_us), now_us, /*ack_first=*/true);
}

void SoftPn532::Impl::cancel_pending(bool by_ack) {
  if (!chip.has_pending() && !delayed) return;
  chip.cancel_pending();
  delayed.reset();
  if (by_ack) {
    ++chip.counters().aborted;
  } else {
    ++chip.counters().cancelled;
  }
}

void SoftPn532::Impl::deliver(const detail::ChipReply& reply, std::int64_t now_us, bool ack_first) {
  if (reply.kind == detail::ChipReply::Kind::kPending) {
    if (ack_first) write_out(pn532::ack_frame());
    return;
  }
  Bytes frame;
  if (reply.kind == detail::ChipReply::Kind::kErrorFrame) {
    ++chip.counters().error_frames;
    log.log("syntax error: answered with the error frame");
    frame = pn532::error_frame();
  } else {
    if (options.log_frames) log.log(hex_line("<<", reply.data));
    frame = pn532::encode_frame(pn532::kTfiChipToHost, reply.data);
  }
  const std::int64_t delay_us = latency.reply_us + (reply.card_answer ? latency.exchange_us : 0);
  if (delay_us > 0) {
    if (ack_first) write_out(pn532::ack_frame());
    delayed = Delayed{std::move(frame), now_us + delay_us};
    return;
  }
  if (ack_first) {
    // The ACK and an immediate reply leave in one write: the host wakes once, not twice (it
    // reads the 6 ACK bytes, then the reply, without flushing in between).
    Bytes both = pn532::ack_frame();
    put_bytes(both, frame);
    if (write_out(both)) note_reply(frame);
    return;
  }
  if (write_out(frame)) note_reply(frame);
}

void SoftPn532::Impl::note_reply(const Bytes& frame) {
  last_reply = frame;
  ++chip.counters().replies;
}

void SoftPn532::Impl::tick(std::int64_t now_us) {
  if (decoder.expire(now_us)) {
    snapshot_decoder();
    log.log("partial frame dropped after 100 ms of silence");
  }
  if (delayed && now_us >= delayed->due_us) {
    const Bytes frame = std::move(delayed->frame);
    delayed.reset();
    if (write_out(frame)) note_reply(frame);
  }
  if (!delayed) {
    if (std::optional<detail::ChipReply> r = chip.retry_pending(now_us)) {
      deliver(*r, now_us, /*ack_first=*/false);  // its ACK went out when it arrived
    }
  }
}

bool SoftPn532::Impl::write_out(const Bytes& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(master, bytes.data() + done, bytes.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd out{master, POLLOUT, 0};
      if (::poll(&out, 1, kWriteStallMs) > 0) continue;
    }
    chip.counters().output_dropped_bytes += bytes.size() - done;
    log.log("reply dropped: the pty does not take it (client not reading?)");
    return false;
  }
  return true;
}

void SoftPn532::Impl::flush_events() {
  for (const std::string& e : chip.take_events()) log.log(e);
}

// ---- SoftPn532 ----

SoftPn532::SoftPn532(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SoftPn532::~SoftPn532() {
  stop();
}

Result<std::unique_ptr<SoftPn532>> SoftPn532::start(SoftPn532Options options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  if (Status s = impl->open_pty(); !s) {
    if (!impl->link_path.empty()) ::unlink(impl->link_path.c_str());
    return s;
  }
  std::unique_ptr<SoftPn532> pn532(new SoftPn532(std::move(impl)));
  Impl* raw = pn532->impl_.get();
  raw->log.log("software PN532 on " + raw->pty_path +
               (raw->link_path.empty() ? "" : " (link " + raw->link_path + ")"));
  raw->latency = raw->options.latency;
  raw->thread = std::thread([raw] { raw->run(); });
  return pn532;
}

void SoftPn532::stop() {
  std::lock_guard stop_lock(impl_->stop_mu);
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->stopping.store(true);
  impl_->wake();
  if (impl_->thread.joinable()) impl_->thread.join();
  // Closing the master is what a reader sees when a board is unplugged: its fd fails with EIO.
  // (The wake pipe stays open until destruction: other threads may still call wake().)
  for (int* fd : {&impl_->master, &impl_->slave}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
  if (!impl_->link_path.empty()) ::unlink(impl_->link_path.c_str());
  impl_->cv.notify_all();  // waiters see `stopping` and give up
}

const std::string& SoftPn532::pty_path() const {
  return impl_->pty_path;
}

std::string SoftPn532::connstring() const {
  return "pn532_uart:" + (impl_->link_path.empty() ? impl_->pty_path : impl_->link_path);
}

Result<CardId> SoftPn532::insert(std::shared_ptr<FieldCard> card) {
  Result<CardId> id = [&] {
    std::lock_guard lock(impl_->mu);
    return impl_->chip.insert(std::move(card));
  }();
  impl_->wake();  // a pending InAutoPoll or InListPassiveTarget may now find it
  return id;
}

std::shared_ptr<FieldCard> SoftPn532::remove(CardId id) {
  std::shared_ptr<FieldCard> card;
  {
    std::lock_guard lock(impl_->mu);
    card = impl_->chip.remove(id);
    impl_->flush_events();
  }
  impl_->cv.notify_all();
  return card;
}

void SoftPn532::remove_all() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->chip.remove_all();
    impl_->flush_events();
  }
  impl_->cv.notify_all();
}

std::vector<FieldEntry> SoftPn532::cards() const {
  std::lock_guard lock(impl_->mu);
  return impl_->chip.cards();
}

Status SoftPn532::tear_at(CardId id, std::uint64_t nth, TearWhen when) {
  std::lock_guard lock(impl_->mu);
  return impl_->chip.tear_at(id, nth, when);
}

void SoftPn532::with_field_locked(const std::function<void()>& fn) {
  std::lock_guard lock(impl_->mu);
  fn();
}

void SoftPn532::set_latency(Pn532Latency latency) {
  std::lock_guard lock(impl_->mu);
  impl_->latency = latency;
}

Result<EmulatedTarget> SoftPn532::terminal_activate(std::int64_t timeout_ms) {
  std::unique_lock lock(impl_->mu);
  if (impl_->chip.target_active()) return impl_->chip.target();
  const std::uint64_t before = impl_->chip.activations();
  impl_->chip.terminal_enter();
  impl_->wake();
  const bool activated = impl_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
    return impl_->stopping.load() || impl_->chip.activations() != before;
  });
  if (impl_->stopping.load()) return Result<EmulatedTarget>(Errc::kUnavailable, "emulator stopped");
  if (!activated) {
    impl_->chip.terminal_leave();  // the call leaves things as it found them
    return Result<EmulatedTarget>(
        Errc::kTimeout, "no card to activate within " + std::to_string(timeout_ms) +
                            " ms: libnfc has not put the PN532 in target mode (TgInitAsTarget)");
  }
  return impl_->chip.target();
}

Result<Bytes> SoftPn532::terminal_transceive(ByteView capdu, std::int64_t timeout_ms) {
  if (capdu.empty() || capdu.size() > pn532::kFrameDataMax - 2) {
    return Result<Bytes>(Errc::kInvalidArgument, "C-APDU of " + std::to_string(capdu.size()) +
                                                     " bytes does not fit TgGetData");
  }
  std::unique_lock lock(impl_->mu);
  if (!impl_->chip.target_active()) {
    return Result<Bytes>(Errc::kTorn, "no activated card in the terminal's field");
  }
  const std::uint64_t session = impl_->chip.activations();
  const std::uint64_t seq = impl_->chip.terminal_send(Bytes(capdu.begin(), capdu.end()));
  impl_->wake();
  std::optional<Bytes> answer;
  const bool done = impl_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
    if ((answer = impl_->chip.take_terminal_response(seq))) return true;
    return impl_->stopping.load() || !impl_->chip.target_active() ||
           impl_->chip.activations() != session;
  });
  if (answer) return *std::move(answer);
  impl_->chip.terminal_abandon(seq);
  if (impl_->stopping.load()) return Result<Bytes>(Errc::kUnavailable, "emulator stopped");
  if (!done) {
    return Result<Bytes>(Errc::kTimeout, "the emulated card did not answer within " +
                                             std::to_string(timeout_ms) + " ms");
  }
  return Result<Bytes>(Errc::kTorn, "the emulated card was released (libnfc left target mode)");
}

void SoftPn532::terminal_release() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->chip.terminal_leave();
  }
  impl_->wake();  // a pending TgGetData now reports the release
}

Pn532Counters SoftPn532::counters() const {
  std::lock_guard lock(impl_->mu);
  return impl_->chip.counters();
}

bool SoftPn532::wait_for(const std::function<bool(const Pn532Counters&)>& pred,
                         std::int64_t timeout_ms) const {
  std::unique_lock lock(impl_->mu);
  return impl_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
    return pred(impl_->chip.counters()) || impl_->stopping.load();
  }) && pred(impl_->chip.counters());
}

Result<protocol::Response> TerminalLink::transceive(const protocol::Command& command) {
  Result<Bytes> r = pn532_.terminal_transceive(command.encode(), timeout_ms_);
  if (!r) return r.status();
  return protocol::Response::parse(*r);
}

}  // namespace citycard::hil
