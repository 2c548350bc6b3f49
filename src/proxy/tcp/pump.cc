#include "proxy/tcp/pump.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "base/log.h"

namespace sluice::proxy::tcp {
namespace {
// Larger pipes mean fewer splice calls per gigabyte; the kernel caps this at
// fs.pipe-max-size (1 MiB by default) and we keep the default if it refuses.
constexpr int kPipeSize = 256 * 1024;
}  // namespace

Pipe TransferPool::take_pipe() {
  if (!pipes_.empty()) {
    Pipe p = std::move(pipes_.back());
    pipes_.pop_back();
    return p;
  }
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return {};
  Pipe p{net::Fd(fds[0]), net::Fd(fds[1])};
  if (pipe_capacity_ == 0) {
    fcntl(fds[1], F_SETPIPE_SZ, kPipeSize);
    int size = fcntl(fds[1], F_GETPIPE_SZ);
    pipe_capacity_ = size > 0 ? static_cast<size_t>(size) : 64 * 1024;
  } else {
    fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(pipe_capacity_));
  }
  return p;
}

void TransferPool::give_pipe(Pipe pipe) {
  if (pipes_.size() < max_idle_) pipes_.push_back(std::move(pipe));
}

std::unique_ptr<char[]> TransferPool::take_buffer() {
  if (!buffers_.empty()) {
    auto b = std::move(buffers_.back());
    buffers_.pop_back();
    return b;
  }
  return std::unique_ptr<char[]>(new char[kBufferSize]);
}

void TransferPool::give_buffer(std::unique_ptr<char[]> buffer) {
  if (buffers_.size() < max_idle_) buffers_.push_back(std::move(buffer));
}

void Pump::release() {
  if (pending_ != 0) return;  // bytes still in flight: a pipe holds them
  if (pipe_.read_end.valid()) pool_.give_pipe(std::move(pipe_));
  if (buffer_) pool_.give_buffer(std::move(buffer_));
}

Pump::Step Pump::fill(int src, int* err, net::Transport* t) {
  ssize_t n;
  if (splice_) {
    if (!pipe_.read_end.valid()) {
      pipe_ = pool_.take_pipe();
      if (!pipe_.read_end.valid()) {
        // No descriptor for a pipe: copy through a buffer rather than stall.
        splice_ = false;
        return fill(src, err, t);
      }
    }
    // Only called with an empty pipe, so EAGAIN can only mean the socket has nothing.
    n = splice(src, nullptr, pipe_.write_end.get(), nullptr, pool_.pipe_capacity(),
               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0 && (errno == EINVAL || errno == ENOSYS)) {
      // This pair of descriptors cannot splice: fall back to copying for good.
      LOG_DEBUG("splice unsupported here ({}), copying through a buffer", std::strerror(errno));
      pool_.give_pipe(std::move(pipe_));
      splice_ = false;
      return fill(src, err, t);
    }
  } else {
    if (!buffer_) buffer_ = pool_.take_buffer();
    n = t ? t->read(buffer_.get(), TransferPool::kBufferSize)
          : ::recv(src, buffer_.get(), TransferPool::kBufferSize, 0);
    offset_ = 0;
  }
  if (n > 0) {
    pending_ = static_cast<size_t>(n);
    return Step::kProgress;
  }
  if (n == 0) return Step::kEof;
  if (errno == EAGAIN || errno == EWOULDBLOCK) return Step::kBlocked;
  if (errno == EINTR) return Step::kProgress;
  *err = errno;
  return Step::kFailed;
}

Pump::Step Pump::flush(int dst, int* err, net::Transport* t) {
  ssize_t n;
  if (splice_) {
    n = splice(pipe_.read_end.get(), nullptr, dst, nullptr, pending_,
               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  } else {
    n = t ? t->write(buffer_.get() + offset_, pending_)
          : ::send(dst, buffer_.get() + offset_, pending_, MSG_NOSIGNAL);
  }
  if (n > 0) {
    pending_ -= static_cast<size_t>(n);
    offset_ += static_cast<size_t>(n);
    bytes_ += static_cast<uint64_t>(n);
    return Step::kProgress;
  }
  // EINPROGRESS: a TCP Fast Open connect is still completing its handshake.
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS)) {
    return Step::kBlocked;
  }
  if (n < 0 && errno == EINTR) return Step::kProgress;
  *err = n < 0 ? errno : EPIPE;
  return Step::kFailed;
}

Pump::Outcome Pump::run(int src, int dst, int* errno_out, net::Transport* src_t,
                        net::Transport* dst_t) {
  if (finished_) return Outcome::kFinished;
  // Through a transport the bytes must pass user space; nothing is in a pipe yet then.
  if ((src_t || dst_t) && splice_ && pending_ == 0) splice_ = false;
  for (;;) {
    if (pending_ > 0) {
      if (!dest_writable) break;
      Step s = flush(dst, errno_out, dst_t);
      if (s == Step::kFailed) return Outcome::kDestReset;
      if (s == Step::kBlocked) {
        dest_writable = false;
        break;
      }
      continue;
    }
    if (eof_) {
      finished_ = true;
      release();
      return Outcome::kFinished;
    }
    if (!source_readable) break;
    Step s = fill(src, errno_out, src_t);
    if (s == Step::kFailed) return Outcome::kSourceReset;
    if (s == Step::kBlocked) {
      source_readable = false;
      break;
    }
    if (s == Step::kEof) eof_ = true;
  }
  release();
  return Outcome::kWaiting;
}

}  // namespace sluice::proxy::tcp
