"""Run untrusted Python code (model-written programs) in a separate, limited process.

`run_python(code, cfg)` runs `code` as the `__main__` module of a fresh interpreter and returns a
`SandboxResult`: a status, the exit code, the (capped) output and the time taken. It never runs the
code in the calling process and never raises because of what the code does; only a sandbox that
cannot start at all (no interpreter, no temporary directory) raises `OSError`.

Layers, outermost first, with what each stops and where it stops short:

1. A separate process: `python -I -S -B -X utf8` (isolated mode: no environment variables, user
   site or script directory on the path; no site-packages, so the code sees the standard library
   only, and the `exit`/`quit` helpers that `site` adds are absent), in a new session, so the whole
   process group is killed with SIGKILL on the wall-clock timeout, on too much output, and after the
   program ends (which reaps anything it left behind). It starts in a fresh temporary directory,
   removed afterwards, with a minimal environment (PATH, HOME and TMPDIR pointing at that directory,
   a UTF-8 locale) and stdin at /dev/null. Output is read incrementally and the run is stopped as
   soon as either stream passes `max_output_bytes`, so nothing unbounded is buffered.
2. Resource limits on the process that runs the code: RLIMIT_CPU (SIGXCPU, then SIGKILL a second
   later), RLIMIT_AS (allocations fail with MemoryError), RLIMIT_FSIZE (a bigger file kills the
   process with SIGXFSZ), RLIMIT_NOFILE, RLIMIT_NPROC and RLIMIT_CORE = 0. These are enforced by the
   kernel, but root may raise them again (setrlimit is refused by layer 3) and RLIMIT_NPROC does not
   bind root at all, so as root it is layer 3 (and layer 4 where present) that stops a fork bomb.
3. An audit hook (`sys.addaudithook`), installed before the code runs, that ends the process at
   once (status "blocked", exit code `EXIT_BLOCKED`) on: creating processes (`os.fork`,
   `os.forkpty`, `os.posix_spawn`, `os.spawn*`, `os.exec*`, `os.system`, `subprocess.Popen`; the
   private `_posixsubprocess.fork_exec`, which raises no audit event, is replaced by a refusing stub
   and re-loading that module is refused), sending signals (`os.kill`, `os.killpg`,
   `signal.pthread_kill`), raising resource limits, any `socket.*` event unless `network` is set
   (creation, connect, bind, ... and name lookups), any `ctypes.*` event and importing ctypes,
   sub-interpreters or CPython's test modules, syslog; opening a file for writing anywhere but the
   temporary directory (and /dev/null), opening for reading anywhere but the temporary directory,
   the Python installation's own directories and a few harmless files (/dev/null, /dev/urandom,
   timezone data); opening a device node other than those; removing, renaming, linking, chmod-ing,
   chown-ing, touching or truncating paths outside the temporary directory, and changing directory
   out of it. Paths are resolved with a private `realpath` (symlinks followed, `dir_fd` honoured)
   made of functions captured when the hook was installed, so monkeypatching `os` from the sandbox
   does not blind it. The process is ended rather than an exception raised, so `try/except` in the
   code cannot swallow a refusal. Limits: an audit hook is NOT a security boundary against a
   determined attacker. Code that reaches native code some way the hook does not know about, or that
   races a symlink swap against the check from a second thread, or that digs through interpreter
   internals (frames, `gc`), can get past it. It reliably stops the things a language model writes
   by accident or by simple reward-hacking; layers 1, 2 and 4 are the harder walls.
4. Linux namespaces when `unshare` (util-linux) works here (checked once per process by running
   it; `use_namespaces=False` skips it): `unshare --net --pid --fork --kill-child`. The network
   namespace has only a loopback device that is down, so there is no network at all, not even to
   services on the host's 127.0.0.1 (omitted when `network=True`). The PID namespace makes the
   program's supervisor PID 1 there: host processes are invisible and cannot be signalled, and when
   the supervisor ends the kernel kills every process left in the namespace, so nothing can outlive
   the run even by leaving the process group. As root it runs `unshare` plainly; otherwise it tries
   again in a new user namespace (`--user --map-root-user`, where unprivileged user namespaces are
   enabled); where both fail the sandbox falls back to layers 1-3 alone. It does not isolate the filesystem (no
   mount namespace): filesystem protection is layer 3's job.

Inside, a small supervisor forks the worker that sets the limits, installs the hook and runs the
code, and reports the worker's fate as its own exit code (128 + signal for a signal), since PID 1
cannot re-raise a signal on itself. Exit statuses 96 and above given to `sys.exit` are reported as 1
so that they cannot pose as these protocol codes (`os._exit` can still pick any exit code).

Status, decided in this order: "timeout" (wall clock or CPU limit), "output_limit" (stdout or stderr
over `max_output_bytes`, or a file over `max_file_bytes`), "ok" (exit code 0), "blocked", "memory"
(MemoryError), "killed" (any other signal) and "error" (any other non-zero exit). A program that
calls `sys.exit(0)` or `os._exit(0)` early is "ok": callers that must know the code ran to its end
(verifiers) should print a marker the code cannot know at the end and look for it, as the HumanEval
task does.
"""

from __future__ import annotations

import functools
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

STATUSES = ("ok", "error", "timeout", "memory", "killed", "output_limit", "blocked")
EXIT_BLOCKED = 97
"""Exit code of a program ended by the audit hook."""
EXIT_MEMORY = 98
"""Exit code of a program that raised MemoryError."""
_INPUT = "_ponder_input.py"
_UNSHARE_ARGS = ("--pid", "--fork", "--kill-child")
_CHUNK = 65536
_GRACE_SECONDS = 1.0
"""After the program ends, how long to wait for its output pipes to close."""


@dataclass(frozen=True)
class SandboxConfig:
    """Limits of one sandboxed run."""

    cpu_seconds: float = 5.0
    """CPU time of the program (RLIMIT_CPU, rounded up to whole seconds)."""
    wall_seconds: float = 10.0
    """Wall-clock time of the whole run, interpreter start included; then the process group is killed."""
    memory_mb: int = 1024
    """Address space of the program in MiB (RLIMIT_AS); at least 64."""
    max_processes: int = 16
    """RLIMIT_NPROC (counts every process and thread of the user id; ignored for root). Process
    creation is refused by the audit hook in any case."""
    max_output_bytes: int = 1 << 20
    """Cap on each of stdout and stderr; the run is stopped when either passes it."""
    max_file_bytes: int = 16 << 20
    """Largest file the program may write (RLIMIT_FSIZE); 0 forbids writing any data to files."""
    max_open_files: int = 64
    """RLIMIT_NOFILE; at least 16."""
    network: bool = False
    """Allow sockets (and keep the host's network namespace). Off by default."""
    use_namespaces: bool = True
    """Also run under `unshare` (network and PID namespaces) when it works on this machine."""

    def __post_init__(self) -> None:
        for name in ("cpu_seconds", "wall_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise ValueError(f"SandboxConfig.{name} must be a positive number of seconds, got {value!r}")
        minimum = {"memory_mb": 64, "max_processes": 1, "max_output_bytes": 1, "max_file_bytes": 0,
                   "max_open_files": 16}
        for name, low in minimum.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"SandboxConfig.{name} must be an integer >= {low}, got {value!r}")
        for name in ("network", "use_namespaces"):
            value = getattr(self, name)
            if value is not True and value is not False:
                raise ValueError(f"SandboxConfig.{name} must be true or false, got {value!r}")


@dataclass(frozen=True)
class SandboxResult:
    """What happened to one sandboxed program."""

    status: str
    """One of `STATUSES`."""
    returncode: int | None
    """The program's exit code, or minus the signal that ended it; None if it never reported one."""
    stdout: str
    """Standard output, decoded as UTF-8 (bad bytes replaced), cut at `max_output_bytes`."""
    stderr: str
    """Standard error, likewise."""
    seconds: float
    """Wall-clock time of the run."""
    namespaced: bool = False
    """Whether the run was inside network and PID namespaces (layer 4)."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


_BOOTSTRAP = (Path(__file__).with_name("sandbox_child.py")).read_text(encoding="utf-8")
"""The program that runs inside the sandbox (`ponder/sandbox_child.py`), passed to `python -c`."""
BOOTSTRAP_MARKER = _BOOTSTRAP.split("\n", 1)[0]
"""First line of the bootstrap program: appears in the command line of every sandbox process."""


@functools.cache
def _unshare_prefix() -> tuple[str, ...] | None:
    """The `unshare` options that work here, tried once: as root plainly, else in a new user namespace."""
    exe = shutil.which("unshare")
    if exe is None or not sys.platform.startswith("linux") or not sys.executable:
        return None
    for options in (_UNSHARE_ARGS, ("--user", "--map-root-user", *_UNSHARE_ARGS)):
        try:
            proc = subprocess.run([exe, "--net", *options, "--", sys.executable, "-I", "-S", "-c", "pass"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  timeout=30, env={"PATH": "/usr/bin:/bin"}, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if proc.returncode == 0:
            return (exe, *options)
    return None


def namespaces_available() -> bool:
    """Whether `unshare` can give the sandbox network and PID namespaces here (checked once)."""
    return _unshare_prefix() is not None


def _command(cfg: SandboxConfig, settings: str) -> tuple[list[str], bool]:
    if not sys.executable:
        raise OSError("sandbox: sys.executable is empty, cannot start a Python interpreter")
    argv = [sys.executable, "-I", "-S", "-B", "-X", "utf8", "-c", _BOOTSTRAP, settings]
    prefix = _unshare_prefix() if cfg.use_namespaces else None
    if prefix is None:
        return argv, False
    exe, *options = prefix
    return [exe, *(() if cfg.network else ("--net",)), *options, "--", *argv], True


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _live_members(pgid: int) -> bool:
    """Whether a process of group `pgid` is still alive (zombies, dead but not yet reaped, do not count)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return False
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
        if len(fields) > 2 and fields[0] not in (b"Z", b"X") and int(fields[2]) == pgid:
            return True
    return False


def _wait_until_dead(pgid: int, timeout: float = 2.0) -> None:
    """After a SIGKILL to group `pgid`, wait (briefly) until its members have finished dying."""
    end = time.monotonic() + timeout
    while _live_members(pgid) and time.monotonic() < end:
        time.sleep(0.005)


def _remove_tree(path: str) -> None:
    def retry(func, p, _exc):
        try:
            os.chmod(os.path.dirname(p) or p, 0o700)
            os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry)
    else:
        shutil.rmtree(path, onerror=retry)


def run_python(code: str, cfg: SandboxConfig | None = None) -> SandboxResult:
    """Run `code` as a Python program in the sandbox and report what happened (see the module doc)."""
    if not isinstance(code, str):
        raise TypeError(f"run_python: code must be a str, got {type(code).__name__}")
    cfg = cfg or SandboxConfig()
    settings = ",".join(f"{k}={v}" for k, v in {
        "cpu": max(1, math.ceil(cfg.cpu_seconds)), "mem": cfg.memory_mb << 20, "fsize": cfg.max_file_bytes,
        "nofile": cfg.max_open_files, "nproc": cfg.max_processes, "network": int(cfg.network),
    }.items())
    argv, namespaced = _command(cfg, settings)
    start = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="ponder-sandbox-")
    try:
        with open(os.path.join(workdir, _INPUT), "wb") as f:
            f.write(code.encode("utf-8", "surrogatepass"))
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
        try:
            timed_out = over = True  # until _collect says otherwise
            out, err, timed_out, over = _collect(proc, cfg, start + cfg.wall_seconds)
        finally:
            _kill_group(proc.pid)  # the leader is not reaped yet, so its group id cannot be reused
            for stream in (proc.stdout, proc.stderr):
                stream.close()
            proc.wait()
            if timed_out or over:
                _wait_until_dead(proc.pid)
    finally:
        _remove_tree(workdir)
    seconds = time.monotonic() - start
    rc = proc.returncode
    returncode = 128 - rc if rc is not None and 128 < rc <= 128 + 64 else rc
    return SandboxResult(status=_status(returncode, timed_out, over), returncode=returncode,
                         stdout=out.decode("utf-8", "replace"), stderr=err.decode("utf-8", "replace"),
                         seconds=seconds, namespaced=namespaced)


def _status(returncode: int | None, timed_out: bool, over: bool) -> str:
    if timed_out or returncode == -signal.SIGXCPU:
        return "timeout"
    if over or returncode == -signal.SIGXFSZ:
        return "output_limit"
    if returncode == 0:
        return "ok"
    if returncode == EXIT_BLOCKED:
        return "blocked"
    if returncode == EXIT_MEMORY:
        return "memory"
    if returncode is not None and returncode < 0:
        return "killed"
    return "error"


def _collect(proc: subprocess.Popen, cfg: SandboxConfig, deadline: float) -> tuple[bytes, bytes, bool, bool]:
    """Read both output streams with a cap until the program ends and its pipes close, the wall clock
    runs out, or an output cap is passed. Kills the process group as soon as the leader has exited
    (it is left unreaped, so the group id stays valid) or on a timeout or overflow."""
    bufs = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    sel = selectors.DefaultSelector()
    for stream in bufs:
        os.set_blocking(stream.fileno(), False)
        sel.register(stream, selectors.EVENT_READ)
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        sel.register(pidfd, selectors.EVENT_READ)
    exited = reaped_group = False
    timed_out = over = False
    try:
        while True:
            if exited and not any(key.fileobj in bufs for key in sel.get_map().values()):
                break
            now = time.monotonic()
            if now >= deadline:
                timed_out = not exited
                break
            wait = deadline - now if pidfd is not None or exited else min(deadline - now, 0.01)
            for key, _ in sel.select(timeout=wait):
                if key.fileobj is pidfd:
                    sel.unregister(pidfd)
                    exited = True
                    continue
                chunk = os.read(key.fd, _CHUNK)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf = bufs[key.fileobj]
                room = cfg.max_output_bytes - len(buf)
                buf += chunk[: max(room, 0)]
                over = over or len(chunk) > room
            if over:
                break
            if not exited and pidfd is None:
                exited = _leader_exited(proc.pid)
            if exited and not reaped_group:
                # the leader is gone but left unreaped: kill whatever it left behind (which may hold
                # the pipes open), then give the pipes a short grace period to drain and close
                _kill_group(proc.pid)
                reaped_group = True
                deadline = min(deadline, time.monotonic() + _GRACE_SECONDS)
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)
    return bytes(bufs[proc.stdout]), bytes(bufs[proc.stderr]), timed_out, over


def _leader_exited(pid: int) -> bool:
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


__all__ = [
    "BOOTSTRAP_MARKER",
    "EXIT_BLOCKED",
    "EXIT_MEMORY",
    "STATUSES",
    "SandboxConfig",
    "SandboxResult",
    "namespaces_available",
    "run_python",
]
