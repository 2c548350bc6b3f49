#include "discovery/persisted_set.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "discovery/endpoint_json.h"
#include "discovery/file_source.h"

namespace sluice::discovery {

namespace {

std::string directory_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

PersistedSet::PersistedSet(std::string cluster, std::string path)
    : cluster_(std::move(cluster)), path_(std::move(path)) {
  thread_ = std::thread([this] { run(); });
}

PersistedSet::~PersistedSet() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void PersistedSet::save(std::vector<upstream::EndpointConfig> endpoints, int64_t revision) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_ = Pending{std::move(endpoints), revision};
  }
  cv_.notify_one();
}

std::string PersistedSet::render(const std::string& cluster,
                                 const std::vector<upstream::EndpointConfig>& endpoints,
                                 int64_t revision, int64_t written_unix) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& e : endpoints) {
    list.push_back({{"address", e.address.to_string()}, {"weight", e.weight}});
  }
  nlohmann::json doc = {{"cluster", cluster},
                        {"written_unix", written_unix},
                        {"revision", revision},
                        {"endpoints", std::move(list)}};
  return doc.dump() + "\n";
}

void PersistedSet::run() {
  log::set_thread_name("persist");
  for (;;) {
    Pending p;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || pending_.has_value(); });
      if (!pending_) return;  // stopping, nothing left to write
      p = std::move(*pending_);
      pending_.reset();
    }
    auto now = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    Status s = write(render(cluster_, p.endpoints, p.revision, now));
    if (!s.is_ok()) {
      if (s.message() != last_error_) {
        LOG_ERROR(
            "cluster {}: cannot persist the endpoint set to {}: {}; trying again with the "
            "next set",
            cluster_, path_, s.message());
        last_error_ = s.message();
      }
    } else if (!last_error_.empty()) {
      LOG_INFO("cluster {}: endpoint set persisted to {} again", cluster_, path_);
      last_error_.clear();
    }
  }
}

Status PersistedSet::write(const std::string& text) const {
  // Named for this process: during a binary upgrade two processes may persist the same set.
  std::string tmp = fmt::format("{}.{}.tmp", path_, ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::from_errno(tmp, errno);
  std::string_view rest(text);
  while (!rest.empty()) {
    ssize_t n = ::write(fd, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return Status::from_errno(tmp, err);
    }
    rest.remove_prefix(static_cast<size_t>(n));
  }
  // The data reaches the disk before the rename makes it the file: a crash between the two
  // leaves the old file whole.
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return Status::from_errno(tmp, err);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Status::from_errno(path_, err);
  }
  // And the rename itself is made durable.
  std::string dir = directory_of(path_);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return Status::from_errno(dir, errno);
  int rc = ::fsync(dfd);
  int err = errno;
  ::close(dfd);
  if (rc != 0) return Status::from_errno(dir, err);
  return Status::ok();
}

Result<PersistedSet::Loaded> PersistedSet::load() const {
  auto text = read_regular_file(path_, kMaxFileSize);
  if (!text) return text.status();
  auto list = parse_endpoint_list_json(*text);
  if (!list) return list.status();
  Loaded out;
  out.endpoints = std::move(list->endpoints);
  out.invalid = std::move(list->invalid);
  // A list of endpoints read as such (parse_endpoint_list_json took it), so the document is
  // an object or an array; the header is there only in an object.
  auto doc = nlohmann::json::parse(*text, nullptr, false);
  if (doc.is_object()) {
    if (auto c = doc.find("cluster"); c != doc.end() && c->is_string() && *c != cluster_) {
      return Status::error(fmt::format("written for cluster '{}'", c->get<std::string>()));
    }
    if (auto w = doc.find("written_unix"); w != doc.end() && w->is_number_integer()) {
      out.written_unix = w->get<int64_t>();
    }
    if (auto r = doc.find("revision"); r != doc.end() && r->is_number_integer()) {
      out.revision = r->get<int64_t>();
    }
  }
  return out;
}

}  // namespace sluice::discovery
