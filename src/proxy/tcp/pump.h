// Pump: moves bytes in one direction of a proxied TCP connection, from a source socket to a
// destination socket, with backpressure: it reads only when everything read before has been
// written. It moves bytes with splice(2) through a pipe (zero-copy) or, as a fallback,
// through a user-space buffer. Pipes and buffers are borrowed from the worker's
// TransferPool while bytes are in flight and given back when the pump is drained, so an idle
// connection holds neither. Loop thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "net/socket.h"
#include "net/transport.h"

namespace sluice::proxy::tcp {

struct Pipe {
  net::Fd read_end;
  net::Fd write_end;
};

// Per-worker pool of pipes and buffers for Pumps. Keeps at most `max_idle` of each.
class TransferPool {
 public:
  static constexpr size_t kBufferSize = 64 * 1024;

  explicit TransferPool(size_t max_idle = 64) : max_idle_(max_idle) {}
  // A pipe, or one with invalid ends when the system has no descriptors to spare.
  Pipe take_pipe();
  void give_pipe(Pipe pipe);
  std::unique_ptr<char[]> take_buffer();
  void give_buffer(std::unique_ptr<char[]> buffer);
  size_t pipe_capacity() const { return pipe_capacity_; }

 private:
  size_t max_idle_;
  size_t pipe_capacity_ = 0;  // learned from the first pipe made
  std::vector<Pipe> pipes_;
  std::vector<std::unique_ptr<char[]>> buffers_;
};

class Pump {
 public:
  enum class Outcome {
    kWaiting,      // blocked on readiness of the source or the destination
    kFinished,     // the source sent FIN and every byte was written: shut the destination down
    kSourceReset,  // the source reset the connection (or failed)
    kDestReset,    // writing to the destination failed: it reset or went away
  };

  Pump(TransferPool& pool, bool use_splice) : pool_(pool), splice_(use_splice) {}
  ~Pump() { release(); }

  // Moves as much as readiness allows. `errno_out` is set with the resets. A side with a
  // transport (TLS) is read or written through it, and the pump copies through a buffer.
  Outcome run(int src, int dst, int* errno_out, net::Transport* src_transport = nullptr,
              net::Transport* dst_transport = nullptr);

  bool source_readable = true;
  bool dest_writable = true;
  bool finished() const { return finished_; }
  uint64_t bytes() const { return bytes_; }

 private:
  enum class Step { kProgress, kBlocked, kEof, kFailed };
  Step fill(int src, int* err, net::Transport* t);
  Step flush(int dst, int* err, net::Transport* t);
  void release();

  TransferPool& pool_;
  bool splice_;
  bool eof_ = false;
  bool finished_ = false;
  size_t pending_ = 0;  // bytes read and not yet written
  size_t offset_ = 0;   // buffered mode: where the pending bytes start in buffer_
  uint64_t bytes_ = 0;  // written to the destination
  Pipe pipe_;
  std::unique_ptr<char[]> buffer_;
};

}  // namespace sluice::proxy::tcp
