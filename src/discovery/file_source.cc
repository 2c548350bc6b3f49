#include "discovery/file_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "base/log.h"
#include "discovery/endpoint_json.h"

namespace sluice::discovery {

namespace {

// At most this many skipped entries are logged one by one per read.
constexpr size_t kLoggedInvalid = 10;

}  // namespace

Result<std::string> read_regular_file(const std::string& path, size_t limit) {
  // O_NONBLOCK: a FIFO at the path must not block the main loop waiting for a writer.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return Status::error(std::strerror(errno), errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::error("not a regular file");
  }
  std::string out;
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return Status::error(std::strerror(err), err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > limit) {
      ::close(fd);
      return Status::error(fmt::format("larger than {} bytes", limit));
    }
  }
  ::close(fd);
  return out;
}

FileSource::FileSource(event::Loop& loop, std::string cluster, std::string path,
                       Duration batch_window, OnUpdate on_update)
    : loop_(loop),
      cluster_(std::move(cluster)),
      path_(std::move(path)),
      batch_window_(batch_window),
      on_update_(std::move(on_update)),
      poll_timer_(loop.timers(), [this] {
        read();
        poll_timer_.arm_at(loop_.now() + kPollInterval);
      }) {
  set_state(upstream::SourceState::kStarting);
}

FileSource::~FileSource() {
  stop();
}

void FileSource::start() {
  auto w = tls::CertWatcher::create(
      loop_, {path_}, [this] { read(); }, batch_window_);
  if (w) {
    watcher_ = std::move(w.value());
  } else {
    LOG_WARN("cluster {}: cannot watch {} ({}); reading it every {}", cluster_, path_,
             w.status().message(), format_duration(kPollInterval));
    poll_timer_.arm_at(loop_.now() + kPollInterval);
  }
  read();
}

void FileSource::stop() {
  watcher_.reset();
  poll_timer_.cancel();
}

void FileSource::set_state(upstream::SourceState s) {
  state_ = s;
  stats_.set_state(s);
}

void FileSource::failed(const std::string& why) {
  ++stats_.failures;
  if (why != last_failure_) {
    if (state_ == upstream::SourceState::kStarting) {
      LOG_ERROR("cluster {}: {}: {}; no endpoints until it can be read", cluster_, path_, why);
    } else {
      LOG_ERROR("cluster {}: {}: {}; keeping the last {} endpoints", cluster_, path_, why,
                stats_.endpoints);
    }
    last_failure_ = why;
  }
  set_state(upstream::SourceState::kStale);
}

void FileSource::read() {
  auto text = read_regular_file(path_, kMaxFileSize);
  if (!text) return failed(text.status().message());
  auto list = parse_endpoint_list_json(*text);
  if (!list) return failed(list.status().message());
  for (size_t i = 0; i < list->invalid.size() && i < kLoggedInvalid; ++i) {
    LOG_WARN("cluster {}: {}: {}; skipped", cluster_, path_, list->invalid[i]);
  }
  if (list->invalid.size() > kLoggedInvalid) {
    LOG_WARN("cluster {}: {}: {} more entries skipped", cluster_, path_,
             list->invalid.size() - kLoggedInvalid);
  }
  stats_.invalid_entries += list->invalid.size();
  if (!last_failure_.empty()) {
    LOG_INFO("cluster {}: {} read again ({} endpoints)", cluster_, path_, list->endpoints.size());
    last_failure_.clear();
  }
  ++stats_.updates;
  stats_.endpoints = list->endpoints.size();
  set_state(upstream::SourceState::kSynced);
  on_update_(std::move(list->endpoints));
}

}  // namespace sluice::discovery
