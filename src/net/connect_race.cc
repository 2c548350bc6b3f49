#include "net/connect_race.h"

#include <sys/socket.h>

#include <cerrno>

#include <fmt/format.h>

#include "base/log.h"
#include "net/connect.h"

namespace sluice::net {

std::vector<Address> interleave_families(const std::vector<Address>& addresses) {
  std::vector<const Address*> v6, v4;
  for (const auto& a : addresses) (a.family() == AF_INET6 ? v6 : v4).push_back(&a);
  std::vector<Address> out;
  out.reserve(addresses.size());
  for (size_t i = 0; i < v6.size() || i < v4.size(); ++i) {
    if (i < v6.size()) out.push_back(*v6[i]);
    if (i < v4.size()) out.push_back(*v4[i]);
  }
  return out;
}

ConnectRace::ConnectRace(event::Loop& loop, std::vector<Address> addresses,
                         const SocketOptions& options, const std::optional<Address>& source,
                         Duration attempt_delay, ConnectRaceCallbacks& callbacks)
    : loop_(loop),
      addresses_(std::move(addresses)),
      options_(options),
      source_(source),
      attempt_delay_(attempt_delay),
      callbacks_(callbacks),
      timer_(loop.timers(), [this] {
        if (finished_) return;
        if (next_ < addresses_.size()) {
          LOG_DEBUG("connect to {} not done within {}; trying {} as well",
                    addresses_[next_ - 1].to_string(), format_duration(attempt_delay_),
                    addresses_[next_].to_string());
          start_next();
        }
        if (!finished_ && next_ >= addresses_.size() && pending() == 0) finish_lost();
      }) {
  // A deferred SYN would report "connected" before any packet left.
  options_.fastopen_connect = false;
  if (addresses_.size() > kMaxAttempts) addresses_.resize(kMaxAttempts);
}

ConnectRace::~ConnectRace() {
  cancel();
}

std::string ConnectRace::tried() const {
  std::string s;
  for (size_t i = 0; i < next_ && i < addresses_.size(); ++i) {
    s += (s.empty() ? "" : ", ") + addresses_[i].to_string();
  }
  return s;
}

void ConnectRace::start() {
  start_next();
  // Every address failed at once: say so from the timer, never from inside start().
  if (next_ >= addresses_.size() && pending() == 0) timer_.arm_at(loop_.now());
}

void ConnectRace::cancel() {
  finished_ = true;
  timer_.cancel();
  for (auto& a : attempts_) close_attempt(*a);
}

size_t ConnectRace::pending() const {
  size_t n = 0;
  for (const auto& a : attempts_) n += a->fd.valid();
  return n;
}

void ConnectRace::start_next() {
  // Start attempts until one is in flight; an address that fails at once (no route, a
  // source address of the other family) is passed over.
  while (next_ < addresses_.size()) {
    size_t i = next_++;
    const Address& target = addresses_[i];
    auto pc = start_connect(target, options_, source_, false);
    if (!pc) {
      last_err_ = pc.status().sys_errno();
      failures_ += fmt::format("{}{}: {}", failures_.empty() ? "" : "; ", target.to_string(),
                               pc.status().message());
      continue;
    }
    auto a = std::make_unique<Attempt>(*this, i);
    a->fd = std::move(pc->fd);
    // Connected at once or not, the writable event says so (check_connect looks).
    if (Status s = loop_.poller().add(a->fd.get(), event::kWritable, a.get()); !s) {
      last_err_ = s.sys_errno();
      failures_ +=
          fmt::format("{}{}: {}", failures_.empty() ? "" : "; ", target.to_string(), s.message());
      continue;
    }
    attempts_.push_back(std::move(a));
    if (next_ < addresses_.size()) timer_.arm_at(loop_.now() + attempt_delay_);
    return;
  }
}

void ConnectRace::on_attempt_io(Attempt& a, uint32_t) {
  if (finished_ || !a.fd.valid()) return;  // a loser's event from this iteration
  int err = 0;
  switch (check_connect(a.fd.get(), &err)) {
    case ConnectState::kInProgress:
      return;
    case ConnectState::kFailed:
      return attempt_failed(a, err);
    case ConnectState::kConnected:
      break;
  }
  finished_ = true;
  timer_.cancel();
  loop_.poller().remove(a.fd.get());
  Fd fd = std::move(a.fd);
  for (auto& other : attempts_) close_attempt(*other);
  if (a.index > 0) {
    LOG_DEBUG("connected to {} (attempt {} of {})", addresses_[a.index].to_string(), a.index + 1,
              addresses_.size());
  }
  callbacks_.on_race_won(std::move(fd), addresses_[a.index]);  // may destroy this
}

void ConnectRace::attempt_failed(Attempt& a, int err) {
  close_attempt(a);
  last_err_ = err;
  failures_ += fmt::format("{}{}: {}", failures_.empty() ? "" : "; ",
                           addresses_[a.index].to_string(), error_text(err));
  // RFC 8305 section 5: a failed attempt lets the next one start without waiting.
  if (next_ < addresses_.size()) {
    timer_.cancel();
    start_next();
  }
  if (next_ >= addresses_.size() && pending() == 0) finish_lost();
}

void ConnectRace::close_attempt(Attempt& a) {
  if (!a.fd.valid()) return;
  loop_.poller().remove(a.fd.get());
  a.fd.reset();
}

void ConnectRace::finish_lost() {
  finished_ = true;
  timer_.cancel();
  callbacks_.on_race_lost(last_err_ != 0 ? last_err_ : ECONNREFUSED,
                          failures_);  // may destroy this
}

}  // namespace sluice::net
