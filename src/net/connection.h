// Connection: a buffered, non-blocking TCP connection on one loop, for protocols that parse
// (HTTP). Reads land in input(); writes queue in an output Buffer flushed as the socket
// allows. Above `high_watermark` of queued output the owner should stop producing (it is
// told through on_write_drained() once the queue is empty again). Buffers are released
// whenever they empty, so an idle connection holds no buffer memory.
// A plain accepted connection on a loop that receives by completion (io_uring,
// Loop::receive_by_completion()) reads its first bytes on readiness and, once it stays open
// for more (a second wake-up to read), is handed its bytes by the loop
// (Poller::add_receiver) instead; its callbacks see no difference. A connection that
// carries one request (Connection: close) so never pays for arming and cancelling a
// receive, where one recv() does. One that is handed a full piece (a large upload) goes
// back to reading on readiness, in large reads, until its wake-ups bring small requests
// again. From its move to the loop's receive on it also sends by completion where the loop
// can (Poller::send): the output flushed at the end of an iteration goes to the kernel with
// the loop's next wait(), not with a send() of its own. Those bytes are then in flight:
// handed to the loop, not yet in the socket; they count in queued() and the watermark, and
// what is written meanwhile queues behind them.
// Callbacks may close the connection; they must not destroy it (owners use deferred
// deletion). Loop thread only.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/buffer.h"
#include "event/loop.h"
#include "net/address.h"
#include "net/socket.h"
#include "net/transport.h"

namespace sluice::net {

class ConnectionCallbacks {
 public:
  // An outgoing connection completed its TCP handshake.
  virtual void on_connected() {}
  // The transport's handshake (TLS) completed: the protocol may read and write now. Output
  // written before is held until then.
  virtual void on_secured() {}
  // New bytes are in input(); consume what was used.
  virtual void on_read() = 0;
  // The peer sent FIN; every byte before it was delivered through on_read().
  virtual void on_read_closed() = 0;
  // The output queue went from above the high watermark to empty.
  virtual void on_write_drained() {}
  // The connection failed (reset, error, failed connect) and is now closed. Not called for
  // close() by the owner.
  virtual void on_error(int err) = 0;

 protected:
  ~ConnectionCallbacks() = default;
};

class Connection final : public event::RecvHandler, public event::EndOfIteration {
 public:
  static constexpr size_t kDefaultHighWatermark = 1024 * 1024;

  Connection(event::Loop& loop, ConnectionCallbacks& callbacks)
      : loop_(loop), callbacks_(&callbacks) {}
  ~Connection() {
    close();
    loop_.cancel_iteration_end(this);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Takes an accepted (connected) socket. Without a transport, on a loop that receives by
  // completion, the loop receives for it from its second wake-up to read on.
  Status adopt(Fd fd);
  // Takes a socket whose connect is in progress (or done when `connected`).
  Status adopt_connecting(Fd fd, bool connected);

  void set_callbacks(ConnectionCallbacks& callbacks) { callbacks_ = &callbacks; }
  // Puts a transport (TLS) between the socket and input()/output(); before adopt*(). Reads
  // and writes go through it once its handshake, driven by socket readiness, completes.
  void set_transport(std::unique_ptr<Transport> transport) { transport_ = std::move(transport); }
  Transport* transport() const { return transport_.get(); }
  // Whether bytes may flow: no transport, or its handshake is done.
  bool secured() const { return !transport_ || transport_->established(); }
  Buffer& input() { return in_; }
  // Queues bytes; they are sent at the end of the loop iteration, together with whatever
  // else was written meanwhile (one send() for a response head and its body).
  void write(std::string_view bytes);
  Buffer& output() { return out_; }
  // `send_flags` go with each send() (plain TCP): MSG_MORE holds a last partial segment back
  // until the next push (a FIN, or the next send without it).
  void flush(int send_flags = 0);
  // Backpressure from the peer side: stop or resume reading. Receiving by completion,
  // stopping cancels the receive; bytes it took before that are kept in input() (and the
  // FIN after them) and handed over, in order, once reading resumes.
  void set_read_enabled(bool enabled);
  bool read_enabled() const { return read_enabled_; }
  // Sends FIN once the output queue is empty (in-flight bytes included).
  void shutdown_write();
  // Closes now; `reset` sends RST instead of FIN. Queued output is dropped, bytes in flight
  // too (their send is cancelled; the loop keeps them until the kernel let go of them).
  void close(bool reset = false);
  // The last answer on a connection whose peer has nothing more to say: sends what is
  // queued and, when all of it went into the kernel and nothing unread waits here or there,
  // closes (the kernel sends FIN after the data). Skips the half-close and the wait for the
  // peer's FIN (a system call, a wake-up and a read each). Bytes the peer sends after this
  // are answered with RST, so use it only where none can be expected. Plain TCP only.
  // The FIN rides in the response's last segment (it is sent with MSG_MORE, and the close
  // pushes it out with the FIN): one segment less for both ends to send, receive and ACK.
  // With bytes in flight (sending by completion) it cannot know when they will be in the
  // kernel: it does not close, and the caller half-closes (shutdown_write()) as for a
  // socket with unread bytes. Returns whether it closed.
  bool close_if_quiet();
  // Fails the connection as if the network had: reset, then on_error(err) to the owner.
  void abort(int err) { fail(err); }

  bool open() const { return fd_.valid(); }
  bool connecting() const { return connecting_; }
  bool peer_closed() const { return peer_closed_; }
  // Bytes not in the kernel yet: queued, and in flight (sending by completion).
  size_t queued() const { return out_.size() + in_flight_; }
  bool above_high_watermark() const { return queued() >= high_watermark_; }
  // Output queued past this asks the owner to stop producing. A multiplexed protocol on a
  // socket with TCP_NOTSENT_LOWAT lowers it to about the kernel's bound, so that what it
  // sends next (another stream's response) does not wait behind a large queue here instead.
  void set_high_watermark(size_t bytes) {
    high_watermark_ = static_cast<uint32_t>(std::min<size_t>(bytes, UINT32_MAX));
  }
  int fd() const { return fd_.get(); }
  // Reads pending bytes or an EOF/reset without waiting: used before reusing an idle pooled
  // connection, whose peer may have closed it while nobody was looking.
  bool check_alive();
  // Whether a read in the current loop iteration emptied the socket (a short read, or one
  // that said EAGAIN): the peer's bytes up to then were all seen, so check_alive() would
  // learn nothing new but what raced in since. Never when receiving by completion: bytes
  // may wait in the loop's batch.
  bool drained_this_iteration() const {
    return !receiving_ && drained_iteration_ == loop_.stats().iterations;
  }
  // Whether the loop receives for this connection (adopt(), then a second wake-up).
  bool receiving_by_completion() const { return receiving_; }
  // Whether it sends by completion too (from the same moment, where the loop can).
  bool sending_by_completion() const { return sending_; }

  void on_io(uint32_t events) override;
  void on_received(const char* data, size_t size) override;
  void on_receive_failed(int err) override;
  void on_receive_stopped() override;
  void on_sent(size_t size) override;
  void on_send_failed(int err) override;
  void on_iteration_end() override { flush(); }

 private:
  // Reads on readiness while the socket has bytes; returns how many it read.
  size_t do_read();
  // After bytes were handed over: the FIN, once reading is on and every byte before it went
  // up; the input buffer's release when all was consumed.
  void finish_read();
  void fail(int err);
  // Writes what is queued into the socket (or the transport) now, as far as it takes it.
  // Never while bytes are in flight: they go first.
  void send_direct(int send_flags);
  // Hands what is queued to the loop's next wait() (Poller::send), unless bytes are in
  // flight already (their last completion flushes again).
  void send_by_completion(int send_flags);
  // What is queued goes into the kernel before this returns, if nothing is in flight: for
  // callers that close right after (close_if_quiet(), an owner told of the peer's FIN).
  void flush_now(int send_flags);
  // The output queue (in flight included) became empty: the half-close and the writer held
  // back by the watermark may go on.
  void drained();
  // After a wake-up to read that read `bytes`: from the second one on, when it brought no
  // more than one receive piece, with everything read and reading on, the loop receives for
  // the connection (receive_later_).
  void after_read_wakeup(size_t bytes);
  // Advances the transport's handshake; false when the connection cannot go on yet.
  bool drive_handshake();

  // Flags and the descriptor first: they fill the padding after EndOfIteration's flag, so
  // the object (one per connection, idle or not) stays at 112 bytes.
  bool connecting_ : 1 = false;
  bool readable_ : 1 = false;
  bool read_enabled_ : 1 = true;
  bool peer_closed_ : 1 = false;  // FIN received
  bool rdhup_ : 1 = false;        // the kernel said the peer shut down its side
  bool bulk_ : 1 = false;         // the last read filled the buffer: read bigger pieces
  bool eof_delivered_ : 1 = false;
  bool shutdown_pending_ : 1 = false;
  bool was_above_high_ : 1 = false;
  bool receiving_ : 1 = false;      // by completion (adopt())
  bool fin_held_ : 1 = false;       // received by completion while reading was off
  bool receive_later_ : 1 = false;  // to receive by completion once it stays open
  bool woken_to_read_ : 1 = false;  // had a wake-up to read (while receive_later_)
  bool leaving_ : 1 = false;        // receiving by completion, stop_receiver() asked
  bool sending_ : 1 = false;        // by completion (with receiving_, where the loop can)
  Fd fd_;
  event::Loop& loop_;
  ConnectionCallbacks* callbacks_;
  std::unique_ptr<Transport> transport_;
  Buffer in_;
  Buffer out_;
  uint64_t drained_iteration_ = UINT64_MAX;  // Loop::stats().iterations of that read
  uint32_t high_watermark_ = kDefaultHighWatermark;
  // Bytes handed to Poller::send() whose on_sent() has not come yet (the loop holds them).
  // Fits the padding at the end: the object stays at 112 bytes.
  uint32_t in_flight_ = 0;
};

}  // namespace sluice::net
