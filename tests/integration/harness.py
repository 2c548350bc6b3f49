"""Shared helpers for sluice's integration tests.

Standard library only. Every test script imports this module, starts the real
sluice binary (path in the SLUICE_BIN environment variable) and real peers on
loopback, prints one line per check and ends with a summary line
"N passed, N failed"; the exit code is 0 only when every check passed.

Synchronisation is always "poll a condition every few milliseconds until a
deadline" (see wait_until); nothing relies on a fixed sleep.
"""

import array
import atexit
import ctypes
import fcntl
import faulthandler
import hashlib
import os
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import termios
import threading
import time
import traceback

# --------------------------------------------------------------------------
# checks and the test runner


class CheckFailed(Exception):
    pass


class Skip(Exception):
    pass


# The exit status of a script that could not run here (every case skipped, or no network
# namespace): tests/CMakeLists.txt gives it to ctest as SKIP_RETURN_CODE, so ctest reports
# the script as skipped, never as passed.
SKIP_EXIT = 77


_results = {"passed": 0, "failed": 0, "skipped": 0}
_current_case = [""]


def check(cond, what, detail=""):
    """Prints one line for the check; raises CheckFailed when it does not hold."""
    prefix = _current_case[0] + ": " if _current_case[0] else ""
    if cond:
        _results["passed"] += 1
        print("ok     %s%s" % (prefix, what), flush=True)
        return
    _results["failed"] += 1
    print("FAILED %s%s" % (prefix, what), flush=True)
    if detail:
        for line in str(detail).rstrip().splitlines():
            print("       | " + line, flush=True)
    raise CheckFailed(what)


def soft_check(cond, what, detail=""):
    """Like check, but a failure does not stop the case (it still fails the script)."""
    try:
        check(cond, what, detail)
    except CheckFailed:
        return False
    return True


def info(msg):
    prefix = _current_case[0] + ": " if _current_case[0] else ""
    print("info   %s%s" % (prefix, msg), flush=True)


CASE_TIMEOUT = 120  # seconds; every case is designed to finish far sooner


def _case_timed_out(name):
    """A case hung: report where every thread is, stop everything and fail the script."""
    print("FAILED %s: still running after %d s; thread stacks follow" % (name, CASE_TIMEOUT), flush=True)
    faulthandler.dump_traceback(file=sys.stdout, all_threads=True)
    sys.stdout.flush()
    cleanup_all()
    os._exit(1)


def run_cases(cases):
    """Runs each case (a function) in turn; a failing case does not stop the others.

    Processes and servers started by a case are cleaned up by the case itself
    (try/finally through the context managers below) and, as a last resort, at exit.
    """
    if not os.environ.get("SLUICE_BIN"):
        print("FAILED SLUICE_BIN is not set (path to the sluice binary)", flush=True)
        sys.exit(2)
    if not os.access(os.environ["SLUICE_BIN"], os.X_OK):
        print("FAILED SLUICE_BIN=%s is not an executable file" % os.environ["SLUICE_BIN"], flush=True)
        sys.exit(2)
    start = time.monotonic()
    skipped_cases = 0
    for case in cases:
        _current_case[0] = case.__name__
        t0 = time.monotonic()
        watchdog = threading.Timer(CASE_TIMEOUT, _case_timed_out, args=(case.__name__,))
        watchdog.daemon = True
        watchdog.start()
        try:
            case()
        except CheckFailed:
            pass
        except Skip as e:
            _results["skipped"] += 1
            skipped_cases += 1
            print("skip   %s: %s" % (case.__name__, e), flush=True)
        except Exception:
            _results["failed"] += 1
            print("FAILED %s: unexpected exception" % case.__name__, flush=True)
            for line in traceback.format_exc().rstrip().splitlines():
                print("       | " + line, flush=True)
        finally:
            watchdog.cancel()
            _current_case[0] = ""
            cleanup_all()
        print("info   %s took %.1f s" % (case.__name__, time.monotonic() - t0), flush=True)
    _current_case[0] = ""
    print("info   total %.1f s" % (time.monotonic() - start), flush=True)
    line = "%d passed, %d failed" % (_results["passed"], _results["failed"])
    if _results["skipped"]:
        line += ", %d skipped" % _results["skipped"]
    print(line, flush=True)
    if _results["failed"]:
        sys.exit(1)
    # Nothing ran: the script as a whole is skipped (a case skipped among others that ran
    # shows in the line above).
    sys.exit(SKIP_EXIT if cases and skipped_cases == len(cases) else 0)


# --------------------------------------------------------------------------
# waiting


def copy_until_eof(src, dst):
    """Sends dst what src receives until src's end or an error on either socket (a relay's
    one direction; the caller decides how each side ends)."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                return
            dst.sendall(data)
    except OSError:
        pass


def wait_until(cond, timeout, interval=0.005):
    """Polls cond() until it returns a true value or timeout seconds pass.

    Returns the last value of cond() (false on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# --------------------------------------------------------------------------
# cleanup registry: everything started is stopped at the end of its case and at exit

_cleanups = []
_cleanup_lock = threading.Lock()


def register_cleanup(fn):
    with _cleanup_lock:
        _cleanups.append(fn)
    return fn


def unregister_cleanup(fn):
    with _cleanup_lock:
        if fn in _cleanups:
            _cleanups.remove(fn)


def cleanup_all():
    with _cleanup_lock:
        fns = list(reversed(_cleanups))
        _cleanups.clear()
    for fn in fns:
        try:
            fn()
        except Exception:
            pass


atexit.register(cleanup_all)


def _on_signal(signum, frame):
    cleanup_all()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)


# --------------------------------------------------------------------------
# network namespace


def reexec_in_netns():
    """Re-runs this script inside a new network namespace (unshare -n) with lo up.

    Returns normally inside the namespace; never returns in the parent."""
    if os.environ.get("SLUICE_TEST_IN_NETNS") == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        return
    env = dict(os.environ)
    env["SLUICE_TEST_IN_NETNS"] = "1"
    argv = ["unshare", "-n", "--", sys.executable, os.path.abspath(sys.argv[0])] + sys.argv[1:]
    sys.stdout.flush()
    try:
        os.execvpe("unshare", argv, env)
    except OSError as e:
        print("FAILED cannot re-exec under unshare -n: %s" % e, flush=True)
        sys.exit(2)


def reexec_in_netns_or_skip():
    """reexec_in_netns(), but where no network namespace can be made (no privilege), prints
    that the whole script is skipped and exits SKIP_EXIT."""
    if os.environ.get("SLUICE_TEST_IN_NETNS") != "1":
        try:
            p = subprocess.run(["unshare", "-n", "--", "true"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, timeout=10)
            ok, why = p.returncode == 0, p.stderr.strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            ok, why = False, str(e)
        if not ok:
            print("skip   cannot create a network namespace (unshare -n): %s" % why, flush=True)
            print("0 passed, 0 failed, 1 skipped", flush=True)
            sys.exit(SKIP_EXIT)
    reexec_in_netns()


def sh(cmd, check_rc=True):
    """Runs a command (list), returns CompletedProcess with text output."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    if check_rc and p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s%s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p


# --------------------------------------------------------------------------
# configuration


def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def to_yaml(obj, indent=0):
    """A tiny YAML emitter for dicts, lists and plain scalars (enough for sluice configs)."""
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict):
                if not v:
                    out.append("%s%s: {}" % (pad, k))
                else:
                    out.append("%s%s:" % (pad, k))
                    out.append(to_yaml(v, indent + 2))
            elif isinstance(v, list):
                if not v:
                    out.append("%s%s: []" % (pad, k))
                else:
                    out.append("%s%s:" % (pad, k))
                    out.append(to_yaml(v, indent + 2))
            else:
                out.append("%s%s: %s" % (pad, k, _yaml_scalar(v)))
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict):
                sub = to_yaml(item, indent + 2).splitlines()
                sub[0] = pad + "- " + sub[0][indent + 2:]
                out.extend(sub)
            else:
                out.append("%s- %s" % (pad, _yaml_scalar(item)))
    else:
        out.append(pad + _yaml_scalar(obj))
    return "\n".join(out)


def tcp_config(endpoints, listener=None, cluster=None, workers=2, drain_timeout="5s", extra=None):
    """A config with one TCP listener 'tcp_in' on 127.0.0.1:0 and one cluster 'backends'.

    endpoints: list of "ip:port" strings or dicts ({address, weight}).
    listener / cluster: extra keys merged into the listener / cluster."""
    eps = []
    for e in endpoints:
        eps.append(e if isinstance(e, dict) else {"address": e})
    lst = {"name": "tcp_in", "address": "127.0.0.1:0", "protocol": "tcp", "cluster": "backends"}
    lst.update(listener or {})
    cl = {"name": "backends", "connect_timeout": "1s"}
    cl.update(cluster or {})
    cl["endpoints"] = eps
    cfg = {"workers": workers, "drain_timeout": drain_timeout, "listeners": [lst], "clusters": [cl]}
    cfg.update(extra or {})
    return to_yaml(cfg) + "\n"


# --------------------------------------------------------------------------
# the sluice process

LOG_RE = re.compile(r"^(\S+)\s+(\w+)\s+\[([^\]]*)\]\s+(.*)$")
LISTENING_RE = re.compile(r"listener\s+(\S+)\s+listening on\s+\[?([0-9a-fA-F.:]+?)\]?:(\d+)(?:\s|$)")


def sluice_bin():
    return os.environ["SLUICE_BIN"]


_PR_SET_PDEATHSIG = 1


def die_with_parent():
    """In a child between fork and exec: get SIGKILL when the test process dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def run_sluice_cmd(args, timeout=30):
    """Runs a short sluice command (check, version) and returns CompletedProcess (text)."""
    return subprocess.run([sluice_bin()] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout, preexec_fn=die_with_parent)


class Sluice:
    """A running `sluice run -c FILE`; stderr is collected line by line in a thread."""

    def __init__(self, config_text, log_level="debug", nofile=None, ready_timeout=20, env=None):
        self.tmpdir = tempfile.mkdtemp(prefix="sluice-it-")
        # registered before kill: cleanups run in reverse order, so the directory goes after the process
        register_cleanup(lambda: shutil.rmtree(self.tmpdir, ignore_errors=True))
        self.config_path = os.path.join(self.tmpdir, "sluice.yaml")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        self.config_text = config_text
        self.lines = []
        self.stdout_lines = []
        self._cv = threading.Condition()
        self.ports = {}
        self.addresses = {}
        self.returncode = None
        def preexec():
            die_with_parent()
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        args = [sluice_bin(), "run", "-c", self.config_path]
        if log_level:
            args += ["--log-level", log_level]
        env = dict(os.environ, **(env or {}))
        # keep ASan quiet about the deliberate fd limit and make reports land in stderr
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        self.args = args
        # SLUICE_EVENT_BACKEND (epoll, io_uring) runs the suite on that event backend: sluice
        # reads it itself, and wait_ready() checks that it was used.
        self.event_backend = env.get("SLUICE_EVENT_BACKEND", "")
        # SLUICE_EVENT_RECEIVE (completion, readiness) says how connections receive on
        # io_uring; checked too.
        self.event_receive = env.get("SLUICE_EVENT_RECEIVE", "")
        self.log_level = log_level
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, preexec_fn=preexec, env=env)
        self.pid = self.proc.pid
        register_cleanup(self.kill)
        self._t_err = threading.Thread(target=self._reader, args=(self.proc.stderr, self.lines), daemon=True)
        self._t_out = threading.Thread(target=self._reader, args=(self.proc.stdout, self.stdout_lines), daemon=True)
        self._t_err.start()
        self._t_out.start()
        self.wait_ready(ready_timeout)

    def _reader(self, stream, sink):
        # Reads the raw pipe and files its lines under the lock in one step, so that
        # _caught_up() can tell from the pipe alone whether every line written so far is in.
        fd = stream.fileno()
        pending = b""
        while True:
            select.select([fd], [], [])
            with self._cv:
                data = os.read(fd, 1 << 16)
                if data:
                    *complete, pending = (pending + data).split(b"\n")
                    for raw in complete:
                        self._file_line(raw, sink)
                elif pending:
                    self._file_line(pending, sink)
                self._cv.notify_all()
            if not data:
                return

    def _file_line(self, raw, sink):
        line = raw.decode("utf-8", "replace")
        sink.append(line)
        m = LISTENING_RE.search(line)
        if m and sink is self.lines:
            self.ports[m.group(1)] = int(m.group(3))
            self.addresses[m.group(1)] = m.group(2)

    def _caught_up(self):
        """With self._cv held: waits (bounded) until the stderr pipe holds nothing unread, so that
        every line sluice wrote before this call is in self.lines: a line logged before a reply
        the test has already received is found."""
        deadline = time.monotonic() + 5
        while self._t_err.is_alive() and time.monotonic() < deadline:
            try:
                n = array.array("i", [0])
                fcntl.ioctl(self.proc.stderr.fileno(), termios.FIONREAD, n)
            except (OSError, ValueError):
                return
            if n[0] == 0:
                return
            self._cv.wait(0.05)

    # -- logs
    def stderr_text(self, start=0):
        with self._cv:
            self._caught_up()
            return "\n".join(self.lines[start:])

    def line_count(self):
        with self._cv:
            self._caught_up()
            return len(self.lines)

    def find_lines(self, pred, start=0):
        """Lines (from index start) for which pred(line) holds; pred may be a substring or regex."""
        if isinstance(pred, str):
            s = pred.lower()
            f = lambda l: s in l.lower()
        elif hasattr(pred, "search"):
            f = lambda l: pred.search(l) is not None
        else:
            f = pred
        with self._cv:
            self._caught_up()
            return [l for l in self.lines[start:] if f(l)]

    def wait_log(self, pred, timeout, start=0):
        """Waits for a stderr line matching pred; returns it or None."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.find_lines(pred, start)
            if found:
                return found[0]
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.proc.poll() is not None and not self._t_err.is_alive()):
                found = self.find_lines(pred, start)
                return found[0] if found else None
            with self._cv:
                self._cv.wait(min(remaining, 0.05))

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if self.find_lines("sluice ready"):
                self._check_event_backend()
                return
            if self.proc.poll() is not None:
                self._t_err.join(2)
                if self.find_lines("event.backend: io_uring is not available: "):
                    raise Skip("io_uring is not available here: " + self.stderr_text().strip())
                raise CheckFailed_with("sluice exited with %s before 'sluice ready'" % self.proc.returncode,
                                       self.stderr_text())
            if time.monotonic() > deadline:
                raise CheckFailed_with("sluice did not log 'sluice ready' within %.0f s" % timeout,
                                       self.stderr_text())
            with self._cv:
                self._cv.wait(0.05)

    def _check_event_backend(self):
        if self.event_backend not in ("epoll", "io_uring") or self.log_level not in ("debug", "info"):
            return
        want = "event backend: " + self.event_backend
        if not self.find_lines(lambda l: l.endswith("] " + want)):
            raise CheckFailed_with("SLUICE_EVENT_BACKEND=%s but no '%s' line" % (self.event_backend, want),
                                   self.stderr_text())
        if self.event_backend != "io_uring" or self.event_receive not in ("completion", "readiness"):
            return
        want = "io_uring receive: " + self.event_receive
        if not self.find_lines(lambda l: l.endswith("] " + want)):
            raise CheckFailed_with("SLUICE_EVENT_RECEIVE=%s but no '%s' line" % (self.event_receive, want),
                                   self.stderr_text())

    def port(self, name="tcp_in"):
        if name not in self.ports:
            raise CheckFailed_with("no 'listener %s listening on <ip:port>' line in the log" % name,
                                   self.stderr_text())
        return self.ports[name]

    # -- process
    def alive(self):
        return self.proc.poll() is None

    def cpu_seconds(self):
        """utime + stime of the sluice process (all threads), in seconds."""
        with open("/proc/%d/stat" % self.pid) as f:
            data = f.read()
        fields = data[data.rindex(")") + 2:].split()
        # fields[0] is field 3 (state); utime is field 14, stime field 15
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def open_fds(self):
        try:
            return len(os.listdir("/proc/%d/fd" % self.pid))
        except OSError:
            return -1

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Waits for the process to exit; returns its exit code or None on timeout."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._t_err.join(2)
        self._t_out.join(2)
        return self.returncode

    def stop(self, timeout=15):
        """SIGTERM, wait for exit; returns the exit code (None if it had to be killed)."""
        if self.proc.poll() is not None:
            self._t_err.join(2)
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        if rc is None:
            self.kill()
        unregister_cleanup(self.kill)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def sanitizer_report(self):
        """Lines of an AddressSanitizer/UBSan report in stderr, if any."""
        return self.find_lines(re.compile(
            r"(ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: \w+Sanitizer)"))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        unregister_cleanup(self.kill)
        return False


def CheckFailed_with(what, detail):
    """Records a failed check (printing detail) and returns the exception to raise."""
    try:
        check(False, what, detail)
    except CheckFailed as e:
        return e
    return CheckFailed(what)


def check_clean_exit(sl, rc, what="sluice exits 0 on SIGTERM"):
    check(rc == 0, what, "exit code %r\n%s" % (rc, sl.stderr_text()[-6000:]))
    rep = sl.sanitizer_report()
    check(not rep, "no sanitizer report in sluice's stderr", "\n".join(sl.stderr_text().splitlines()[-80:]))


# --------------------------------------------------------------------------
# sockets


def free_port_holder():
    """A socket bound to 127.0.0.1:<ephemeral> that does not listen: connects to it are refused,
    and nobody else can take the port while the socket lives. Returns (sock, port)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    register_cleanup(s.close)
    return s, s.getsockname()[1]


def connect(port, host="127.0.0.1", timeout=5.0):
    s = socket.create_connection((host, port), timeout=timeout)
    register_cleanup(s.close)
    return s


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def recv_until_closed(sock, timeout):
    """Reads until EOF, reset or timeout. Returns (data, how) where how is 'eof', 'reset' or 'timeout'."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return bytes(data), "timeout"
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return bytes(data), "timeout"
        except ConnectionResetError:
            return bytes(data), "reset"
        if not chunk:
            return bytes(data), "eof"
        data += chunk


def wait_closed(sock, timeout):
    """Waits for the peer to close (EOF or reset); returns (how, seconds waited)."""
    t0 = time.monotonic()
    _, how = recv_until_closed(sock, timeout)
    return how, time.monotonic() - t0


def echo_roundtrip(sock, payload=b"ping", timeout=5.0):
    """Sends payload and waits for the same bytes back. Returns True on success."""
    try:
        sock.settimeout(timeout)
        sock.sendall(payload)
        got = recv_exact(sock, len(payload))
        return got == payload
    except (OSError, socket.timeout):
        return False


def is_refused(port, host="127.0.0.1", timeout=2.0):
    """True when a TCP connect to host:port is refused."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        s.close()


def listening_ports():
    """Set of local TCP ports in LISTEN state (from /proc/net/tcp and tcp6)."""
    ports = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A":
                        ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


def connections_to(port):
    """How many local TCP sockets are connected (in any state but TIME_WAIT and LISTEN) to
    `port`, from /proc/net/tcp and tcp6: e.g. sluice's pooled connections to a backend."""
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] not in ("06", "0A") and int(parts[2].rsplit(":", 1)[1], 16) == port:
                        n += 1
        except OSError:
            pass
    return n


def netstat_counter(name):
    """A TcpExt counter from /proc/net/netstat (per network namespace)."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for i in range(0, len(lines) - 1, 2):
        keys = lines[i].split()
        vals = lines[i + 1].split()
        if keys[0] == "TcpExt:":
            return int(vals[keys.index(name)])
    raise KeyError(name)


# --------------------------------------------------------------------------
# backends


class TcpServer:
    """A threaded TCP server on 127.0.0.1:<ephemeral>; handle(conn) runs in a thread per connection."""

    def __init__(self, host="127.0.0.1", port=0, backlog=512, fastopen=0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fastopen:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, fastopen)
        self.sock.bind((host, port))
        self.sock.listen(backlog)
        self.sock.settimeout(0.02)
        self.port = self.sock.getsockname()[1]
        self.address = "%s:%d" % (host, self.port)
        self.accepted = 0
        self.conns = []
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        register_cleanup(self.stop)

    def _loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            conn.settimeout(None)
            with self._lock:
                self.accepted += 1
                self.conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        try:
            self.handle(conn)
        except Exception as e:  # recorded for assertions; a reset is often expected
            with self._lock:
                self.errors.append(e)
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def handle(self, conn):
        raise NotImplementedError

    def stop(self):
        self._stop.set()
        self._thread.join(2)
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self.conns)
        for c in conns:
            # shutdown wakes a handler thread blocked in recv; close alone would not
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


class EchoServer(TcpServer):
    """Echoes every byte; on EOF from the peer, shuts down its write side and closes."""

    def handle(self, conn):
        while True:
            data = conn.recv(262144)
            if not data:
                break
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)


class HoldServer(TcpServer):
    """Accepts and holds connections open; never writes; counts the bytes that arrive."""

    def __init__(self, *a, **kw):
        self.received = 0
        super().__init__(*a, **kw)

    def handle(self, conn):
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self.received += len(data)


class BannerServer(TcpServer):
    """Server speaks first: sends a banner on accept, then echoes."""

    banner = b"220 banner from backend\r\n"

    def handle(self, conn):
        conn.sendall(self.banner)
        while True:
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)


class ResetServer(TcpServer):
    """Reads the first bytes from the client, then aborts the connection with an RST."""

    def __init__(self, *a, **kw):
        self.got_first = threading.Event()
        super().__init__(*a, **kw)

    def handle(self, conn):
        conn.recv(65536)
        self.got_first.set()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()


# data protocol for integrity tests: the client sends a 24-byte header
#   id (u64) | bytes the backend must send back (u64) | flags (u32) | rate limit in KiB/s (u32, 0 = none)
# then its payload; flag 1 = the backend waits for the client's EOF before answering.
HEADER_LEN = 24
FLAG_ANSWER_AFTER_EOF = 1
CHUNK = 256 * 1024


def make_header(conn_id, answer_len, flags=0, rate_kib=0):
    return (conn_id.to_bytes(8, "big") + answer_len.to_bytes(8, "big") +
            flags.to_bytes(4, "big") + rate_kib.to_bytes(4, "big"))


class Stream:
    """Sends or receives one direction of a connection, hashing the bytes."""

    def __init__(self):
        self.nbytes = 0
        self.hash = hashlib.sha256()
        self.error = None
        self.done = threading.Event()

    def digest(self):
        return self.hash.hexdigest()


def send_random(sock, n, stream, rate=0, shutdown=True, prefix=b""):
    """Sends n random bytes (after prefix, which is not hashed) at most `rate` bytes/s."""
    try:
        if prefix:
            sock.sendall(prefix)
        t0 = time.monotonic()
        left = n
        while left > 0:
            chunk = os.urandom(min(CHUNK if not rate else 64 * 1024, left))
            stream.hash.update(chunk)
            sock.sendall(chunk)
            stream.nbytes += len(chunk)
            left -= len(chunk)
            if rate:
                # pace: do not get ahead of the allowed rate
                ahead = stream.nbytes / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        if shutdown:
            sock.shutdown(socket.SHUT_WR)
    except Exception as e:
        stream.error = e
    finally:
        stream.done.set()


def recv_all(sock, stream, on_progress=None):
    """Receives until EOF, hashing."""
    try:
        while True:
            data = sock.recv(CHUNK)
            if not data:
                break
            stream.hash.update(data)
            stream.nbytes += len(data)
            if on_progress:
                on_progress(stream.nbytes)
    except Exception as e:
        stream.error = e
    finally:
        stream.done.set()


class DataServer(TcpServer):
    """Backend of the data protocol above; results[id] = {'recv': Stream, 'sent': Stream}."""

    def __init__(self, *a, **kw):
        self.results = {}
        super().__init__(*a, **kw)

    def handle(self, conn):
        hdr = recv_exact(conn, HEADER_LEN)
        if len(hdr) < HEADER_LEN:
            return
        conn_id = int.from_bytes(hdr[0:8], "big")
        answer = int.from_bytes(hdr[8:16], "big")
        flags = int.from_bytes(hdr[16:20], "big")
        rate = int.from_bytes(hdr[20:24], "big") * 1024
        recv_s, sent_s = Stream(), Stream()
        with self._lock:
            self.results[conn_id] = {"recv": recv_s, "sent": sent_s}
        if flags & FLAG_ANSWER_AFTER_EOF:
            recv_all(conn, recv_s)
            send_random(conn, answer, sent_s, rate)
        else:
            t = threading.Thread(target=send_random, args=(conn, answer, sent_s, rate), daemon=True)
            t.start()
            recv_all(conn, recv_s)
            t.join()
        # close only when both directions are done (the caller closes conn)


class DataClient:
    """Client side of the data protocol: sends `send_len` random bytes and receives the answer."""

    def __init__(self, port, conn_id, send_len, answer_len, flags=0, rate_kib=0, timeout=60,
                 on_progress=None, sock=None):
        self.conn_id = conn_id
        self.sent = Stream()
        self.recv = Stream()
        self.sock = sock or connect(port, timeout=timeout)
        self.sock.settimeout(timeout)
        self.error = None
        hdr = make_header(conn_id, answer_len, flags, rate_kib)
        self._ts = threading.Thread(target=send_random, args=(self.sock, send_len, self.sent, 0, True, hdr),
                                    daemon=True)
        self._tr = threading.Thread(target=recv_all, args=(self.sock, self.recv, on_progress), daemon=True)
        self._ts.start()
        self._tr.start()

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        self._ts.join(max(0, deadline - time.monotonic()))
        self._tr.join(max(0, deadline - time.monotonic()))
        return not self._ts.is_alive() and not self._tr.is_alive()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def verify_exchange(server, client, send_len, answer_len):
    """Returns None when both directions arrived intact, else a description of the mismatch."""
    r = wait_until(lambda: server.results.get(client.conn_id), 10)
    if r is None:
        return "backend never saw connection %d" % client.conn_id
    r["recv"].done.wait(30)
    r["sent"].done.wait(30)
    problems = []
    for label, a, b, n in (("client->backend", client.sent, r["recv"], send_len),
                           ("backend->client", r["sent"], client.recv, answer_len)):
        if a.error or b.error:
            problems.append("%s: error sender=%r receiver=%r" % (label, a.error, b.error))
        if a.nbytes != n:
            problems.append("%s: sender sent %d of %d bytes" % (label, a.nbytes, n))
        if b.nbytes != a.nbytes:
            problems.append("%s: receiver got %d bytes, sender sent %d" % (label, b.nbytes, a.nbytes))
        elif a.digest() != b.digest():
            problems.append("%s: sha256 differs (%s vs %s)" % (label, a.digest(), b.digest()))
    return "; ".join(problems) or None
