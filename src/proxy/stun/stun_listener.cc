#include "proxy/stun/stun_listener.h"

#include "base/log.h"
#include "stun/binding.h"

namespace sluice::proxy::stun {

namespace {
SourceRateLimiter make_limiter(const ListenerConfig& c) {
  return SourceRateLimiter(c.stun.rate_limit, c.stun.rate_burst, c.stun.max_sources);
}
}  // namespace

StunListener::StunListener(event::Loop& loop, std::shared_ptr<const ListenerConfig> config,
                           net::Fd socket)
    : loop_(loop),
      config_(std::move(config)),
      socket_(std::move(socket)),
      limiter_(make_limiter(*config_)) {}

StunListener::~StunListener() {
  stop_reading();
}

Status StunListener::start() {
  if (reading_ || !socket_.valid()) return Status::ok();
  if (Status s = loop_.poller().add(socket_.get(), event::kReadable, this); !s) return s;
  reading_ = true;
  on_io(event::kReadable);
  return Status::ok();
}

void StunListener::stop_reading() {
  if (!reading_) return;
  loop_.poller().remove(socket_.get());
  reading_ = false;
}

void StunListener::reconfigure(std::shared_ptr<const ListenerConfig> config) {
  bool limits_changed = config->stun.rate_limit != config_->stun.rate_limit ||
                        config->stun.rate_burst != config_->stun.rate_burst ||
                        config->stun.max_sources != config_->stun.max_sources;
  config_ = std::move(config);
  if (limits_changed) limiter_ = make_limiter(*config_);
}

void StunListener::on_io(uint32_t) {
  while (reading_) {
    Result<size_t> got = in_.receive(socket_.get());
    if (!got) {
      LOG_WARN("stun {}: {}", config_->name, got.status().message());
      return;
    }
    size_t n = *got;
    if (n == 0) break;
    for (size_t i = 0; i < n; ++i) {
      if (in_.too_large(i)) {
        ++stats_.dropped_malformed;
        continue;
      }
      net::Address source = in_.source(i);
      std::span<const uint8_t> request = in_.data(i);
      // The header checks cost less than a table lookup: what fails them is dropped before
      // it can take a rate-limit entry.
      ::sluice::stun::Answer a = ::sluice::stun::answer_binding(request, source, config_->stun);
      using ::sluice::stun::Outcome;
      switch (a.outcome) {
        case Outcome::kDropNotStun:
          ++stats_.dropped_not_stun;
          continue;
        case Outcome::kDropMalformed:
          ++stats_.dropped_malformed;
          continue;
        case Outcome::kDropBadFingerprint:
          ++stats_.dropped_bad_fingerprint;
          continue;
        case Outcome::kDropNotRequest:
          ++stats_.dropped_not_request;
          continue;
        default:
          break;
      }
      if (!limiter_.allow(udp::address_key(source, false), loop_.now())) {
        ++stats_.dropped_rate_limited;
        continue;
      }
      if (out_.full()) flush();
      if (!out_.push(source, a.response)) {
        ++stats_.dropped_send_failed;
        continue;
      }
      ++(a.outcome == Outcome::kSuccess      ? stats_.success
         : a.outcome == Outcome::kBadRequest ? stats_.bad_request
                                             : stats_.unknown_attribute);
      stats_.bytes_received += request.size();
      stats_.bytes_sent += a.response.size();
    }
    flush();
  }
}

void StunListener::flush() {
  size_t queued = out_.queued();
  if (queued == 0) return;
  uint64_t calls = 0;
  size_t sent = out_.flush(socket_.get(), &calls);
  if (sent < queued) stats_.dropped_send_failed += queued - sent;
}

}  // namespace sluice::proxy::stun
