#include "tls/cert_watcher.h"

#include <fmt/format.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "base/log.h"

namespace sluice::tls {
namespace {

// What is watched in each directory. IN_MODIFY is left out on purpose: a file being
// written is seen when it is closed (IN_CLOSE_WRITE) or renamed into place, never half
// written. IN_CREATE and IN_DELETE catch a symlink replaced with `ln -sfn`; the *_SELF
// events a watched directory that is itself removed or moved (an old `..2024_...` data
// directory after a flip).
constexpr uint32_t kMask = IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
                           IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK;
// Like the kernel's own limit on symlinks followed in one lookup (ELOOP).
constexpr int kMaxSymlinks = 40;

std::vector<std::string> split(std::string_view path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) parts.emplace_back(path.substr(i, j - i));
    i = j + 1;
  }
  return parts;
}

std::string child(const std::string& dir, std::string_view name) {
  std::string out = dir;
  if (out.empty() || out.back() != '/') out.push_back('/');
  out.append(name);
  return out;
}

std::string parent(const std::string& dir) {
  size_t cut = dir.find_last_of('/');
  return cut == 0 || cut == std::string::npos ? "/" : dir.substr(0, cut);
}

std::string absolute(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof cwd) == nullptr) return "/" + path;
  return child(cwd, path);
}

// `dir` is a proper ancestor of `of` (both absolute, without a final '/').
bool ancestor(const std::string& dir, const std::string& of) {
  if (dir == "/") return of != "/";
  return of.size() > dir.size() && of.starts_with(dir) && of[dir.size()] == '/';
}

// Resolves `file` one component at a time, like the kernel does, and adds to `out` the
// (directory, entry) pairs a change of which could change what `file` names: the final
// entry of every path followed, every symlink, the first missing entry, and every entry
// inside the file's own directory or below it. Entries of non-symlink ancestors above the file's
// directory
// (/, /etc) are left out: replacing those is not how certificates are updated.
void entries_of(const std::string& file, std::set<std::pair<std::string, std::string>>& out) {
  std::string path = absolute(file);
  std::string lexical_dir = "/";
  {
    std::string normal;
    for (const std::string& p : split(path)) {
      if (p == ".") continue;
      normal = p == ".." ? parent(normal.empty() ? "/" : normal)
                         : child(normal.empty() ? "/" : normal, p);
    }
    lexical_dir = parent(normal.empty() ? "/" : normal);
  }
  // The components still to resolve, the next one last.
  std::vector<std::string> rest = split(path);
  std::reverse(rest.begin(), rest.end());
  std::string dir = "/";  // resolved: no symlink in it
  int followed = 0;
  while (!rest.empty()) {
    std::string name = std::move(rest.back());
    rest.pop_back();
    if (name == ".") continue;
    if (name == "..") {
      dir = parent(dir);
      continue;
    }
    std::string at = child(dir, name);
    struct stat st;
    bool exists = ::lstat(at.c_str(), &st) == 0;
    bool link = exists && S_ISLNK(st.st_mode);
    if (!exists || link || rest.empty() || !ancestor(dir, lexical_dir)) out.emplace(dir, name);
    if (!exists) return;  // its creation is what to wait for
    if (!link) {
      dir = at;
      continue;
    }
    if (++followed > kMaxSymlinks) return;
    char target[PATH_MAX];
    ssize_t n = ::readlink(at.c_str(), target, sizeof target - 1);
    if (n <= 0) return;
    std::string_view t(target, static_cast<size_t>(n));
    std::vector<std::string> more = split(t);
    for (auto it = more.rbegin(); it != more.rend(); ++it) rest.push_back(std::move(*it));
    if (t.front() == '/') {
      dir.clear();  // (not `dir = "/"`: g++ 12 then reports a false -Wrestrict)
      dir.push_back('/');
    }
  }
}

}  // namespace

Result<std::unique_ptr<CertWatcher>> CertWatcher::create(event::Loop& loop,
                                                         std::vector<std::string> files,
                                                         std::function<void()> on_change,
                                                         Duration settle) {
  std::unique_ptr<CertWatcher> w(
      new CertWatcher(loop, std::move(files), std::move(on_change), settle));
  w->fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (w->fd_ < 0) return Status::from_errno("inotify_init1", errno);
  Status s = w->rewatch();
  if (!s) return s;
  s = loop.poller().add(w->fd_, event::kReadable, w.get());
  if (!s) return s;
  return w;
}

CertWatcher::CertWatcher(event::Loop& loop, std::vector<std::string> files,
                         std::function<void()> on_change, Duration settle)
    : loop_(loop),
      files_(std::move(files)),
      on_change_(std::move(on_change)),
      settle_(settle),
      settle_timer_(loop.timers(), [this] { on_settled(); }) {}

CertWatcher::~CertWatcher() {
  if (fd_ < 0) return;
  loop_.poller().remove(fd_);  // a no-op when create() failed before adding it
  ::close(fd_);                // drops every watch with it
}

Status CertWatcher::rewatch() {
  entries_.clear();
  for (const std::string& f : files_) entries_of(f, entries_);
  std::set<std::string> wanted;
  for (const auto& [dir, name] : entries_) wanted.insert(dir);

  std::string failures;
  std::unordered_map<int, std::string> now;
  for (const std::string& dir : wanted) {
    // Adding a directory already watched returns its descriptor again.
    int wd = inotify_add_watch(fd_, dir.c_str(), kMask);
    if (wd < 0) {
      if (errno == ENOENT || errno == ENOTDIR) continue;  // not there (yet): its parent is
      failures += fmt::format("{}cannot watch {}: {}", failures.empty() ? "" : "; ", dir,
                              std::strerror(errno));
      continue;
    }
    now[wd] = dir;
  }
  for (const auto& [wd, dir] : directory_of_) {
    if (!now.count(wd)) inotify_rm_watch(fd_, wd);  // EINVAL when already gone: harmless
  }
  directory_of_ = std::move(now);
  if (!failures.empty()) return Status::error(failures);
  return Status::ok();
}

void CertWatcher::on_io(uint32_t) {
  // Room for many events; each is a struct inotify_event and its padded name.
  alignas(inotify_event) char buf[16 * 1024];
  bool relevant = false;
  for (int reads = 0; reads < 1024; ++reads) {
    ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EAGAIN: all consumed
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      if (ev->mask & IN_Q_OVERFLOW) {
        relevant = true;  // events were lost: anything may have changed
        continue;
      }
      auto it = directory_of_.find(ev->wd);
      if (it == directory_of_.end()) continue;
      if (ev->mask & IN_IGNORED) {
        directory_of_.erase(it);
        relevant = true;
        continue;
      }
      if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
        relevant = true;
        continue;
      }
      if (ev->len == 0) continue;
      if (entries_.count({it->second, std::string(ev->name)})) relevant = true;
    }
  }
  if (relevant) changed();
}

// Debounced with a trailing timer rather than once per loop iteration: one update is often
// several system calls spread over more than one iteration (a certificate and its key
// written one after the other; Kubernetes' flip of `..data`, then the removal of the old
// data directory), and reading the set between two of them would find a key that does not
// match its certificate.
void CertWatcher::changed() {
  MonoTime now = loop_.now();
  if (!settle_timer_.armed()) first_change_ = now;
  MonoTime deadline = std::min(now + settle_, first_change_ + 10 * settle_);
  settle_timer_.arm_at(deadline);
}

void CertWatcher::on_settled() {
  // Watch where the files are now before the owner reads them, so that a change made while
  // it reads is not missed.
  Status s = rewatch();
  if (!s) LOG_WARN("certificate watcher: {}", s.message());
  on_change_();
}

std::vector<std::string> CertWatcher::directories() const {
  std::vector<std::string> out;
  for (const auto& [wd, dir] : directory_of_) out.push_back(dir);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace sluice::tls
