# ponder-sandbox-bootstrap
"""The program that runs inside the sandbox (`ponder.sandbox.run_python` passes this file's text to
`python -I -S -c`): it sets the resource limits, installs the audit hook, forks the worker that runs
the untrusted code, and turns its end into an exit status.

Self-contained: it cannot import ponder (the interpreter runs isolated, without site-packages), so it
uses the standard library only. argv: "key=int,key=int,...". The first line is a marker that tests
look for in process command lines to prove that nothing outlives a run; keep it first.
"""
# ruff: noqa: I001, F841, SIM102, S102, S110, BLE001 -- written to run isolated and never raise; kept as audited
import os, sys

def _settings():
    out = {}
    for item in sys.argv[1].split(","):
        key, value = item.split("=")
        out[key] = int(value)
    return out

def _limit(resource, which, soft, hard):
    try:
        resource.setrlimit(which, (soft, hard))
    except (ValueError, OSError):  # not allowed to raise the hard limit: stay under it
        cur_hard = resource.getrlimit(which)[1]
        if cur_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, cur_hard), min(hard, cur_hard)
        resource.setrlimit(which, (soft, hard))

def _install_hook(network):
    import posix, stat, _posixsubprocess
    lstat, readlink, getcwd, write, exit_ = posix.lstat, posix.readlink, posix.getcwd, posix.write, posix._exit
    is_link, is_chr, is_blk = stat.S_ISLNK, stat.S_ISCHR, stat.S_ISBLK
    type_, str_, bytes_, int_, len_, range_ = type, str, bytes, int, len, range
    base_exception = BaseException
    flush_out, flush_err = sys.stdout.flush, sys.stderr.flush
    write_flags = posix.O_WRONLY | posix.O_RDWR | posix.O_APPEND | posix.O_CREAT | posix.O_TRUNC

    def fork_exec(*args, **kwargs):
        block("_posixsubprocess.fork_exec", "process creation")

    _posixsubprocess.fork_exec = fork_exec
    for module in (posix, os):
        for name in ("mknod", "pidfd_open"):
            if name in module.__dict__:
                del module.__dict__[name]

    def block(event, why):
        try:
            flush_out()
            flush_err()
        except base_exception:
            pass
        try:
            write(2, ("\nsandbox: blocked " + event + ": " + why + "\n").encode("utf-8", "replace"))
        finally:
            exit_(97)

    def realpath(path):
        if not path.startswith("/"):
            path = getcwd() + "/" + path
        todo = [p for p in path.split("/") if p and p != "."]
        todo.reverse()
        done = []
        links = 0
        while todo:
            part = todo.pop()
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = "/" + "/".join(done + [part])
            try:
                mode = lstat(candidate).st_mode
            except OSError:
                done.append(part)
                continue
            if is_link(mode):
                links += 1
                if links > 40:
                    raise OSError("too many symlinks")
                target = readlink(candidate)
                if target.startswith("/"):
                    done = []
                more = [p for p in target.split("/") if p and p != "."]
                more.reverse()
                todo.extend(more)
            else:
                done.append(part)
        return "/" + "/".join(done)

    def inside(path, roots):
        for root in roots:
            if path == root or path.startswith(root + "/"):
                return True
        return False

    def as_text(path):
        if type_(path) is str_:
            return path
        if type_(path) is bytes_:
            return path.decode("utf-8", "surrogateescape")
        return None

    def resolve(path, dir_fd=None):
        text = as_text(path)
        if text is None or "\x00" in text:
            return None
        if not text.startswith("/") and type_(dir_fd) is int_ and dir_fd >= 0:
            text = readlink("/proc/self/fd/" + str_(dir_fd)) + "/" + text
        return realpath(text)

    root = realpath(getcwd())
    read_roots = [root]
    for path in [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *sys.path,
                 "/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/etc/localtime",
                 "/usr/share/zoneinfo", "/proc/self"]:
        if path:
            read_roots.append(realpath(path))
    devices = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")
    deny = frozenset((
        "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system", "subprocess.Popen",
        "os.kill", "os.killpg", "signal.pthread_kill", "resource.setrlimit", "resource.prlimit",
        "sys.remote_exec", "os.startfile", "webbrowser.open",
    ))
    deny_prefixes = ("ctypes.", "syslog.", "_posixsubprocess.") + (() if network else ("socket.",))
    deny_modules = frozenset((
        "_posixsubprocess", "_ctypes", "ctypes", "_ctypes_test", "_xxsubinterpreters", "_xxinterpchannels",
        "_interpreters", "_interpchannels", "_interpqueues", "_testcapi", "_testinternalcapi",
        "_testmultiphase", "_testsinglephase", "_testbuffer", "_testimportmultiple", "_testclinic",
        "_xxtestfuzz", "syslog",
    ))
    # event -> ((index of a path argument, index of its dir_fd argument or None), ...)
    path_events = {
        "os.remove": ((0, 1),), "os.rmdir": ((0, 1),), "os.mkdir": ((0, 2),), "os.rename": ((0, 2), (1, 3)),
        "os.link": ((0, 2), (1, 3)), "os.symlink": ((1, 2),), "os.chmod": ((0, 2),), "os.chown": ((0, 3),),
        "os.utime": ((0, 3),), "os.truncate": ((0, None),), "os.setxattr": ((0, None),),
        "os.removexattr": ((0, None),), "os.chflags": ((0, None),), "os.lchflags": ((0, None),),
        "shutil.rmtree": ((0, 1),), "shutil.chown": ((0, None),), "shutil.move": ((0, None), (1, None)),
        "shutil.copyfile": ((1, None),), "shutil.copytree": ((1, None),),
    }

    def check_open(args):
        path, mode, flags = args[0], args[1], args[2]
        if type_(path) is int_:
            return  # wrapping an fd that is already open
        text = as_text(path)
        if text is None:
            block("open", "unsupported path type")
        writing = type_(flags) is not int_ or flags & write_flags
        if mode is None and not text.startswith("/"):
            # os.open with a relative path may be relative to an unknown dir_fd
            if writing or ".." in text.split("/"):
                block("open", "relative path with os.open: " + text)
        real = resolve(text)
        if real is None:
            block("open", "bad path")
        if real in devices:
            return
        if writing:
            if not inside(real, (root,)):
                block("open", "writing outside the sandbox directory: " + real)
        elif not inside(real, read_roots):
            block("open", "reading outside the allowed directories: " + real)
        try:
            st_mode = lstat(real).st_mode
        except OSError:
            return
        if is_chr(st_mode) or is_blk(st_mode):
            block("open", "device node: " + real)

    def hook(event, args):
        try:
            if event in deny or event.startswith(deny_prefixes):
                block(event, "not allowed in the sandbox")
            if event == "open":
                check_open(args)
            elif event == "import":
                name = args[0]
                if type_(name) is not str_ or name.rpartition(".")[2] in deny_modules:
                    block(event, "module not allowed: " + str_(name))
            elif event == "os.chdir":
                real = resolve(args[0])
                if real is None or not inside(real, (root,)):
                    block(event, "leaving the sandbox directory")
            elif event in path_events:
                for index, fd_index in path_events[event]:
                    if index >= len_(args):
                        continue
                    path = args[index]
                    if path is None:
                        continue
                    if type_(path) is int_ and event == "os.truncate":
                        continue  # ftruncate of an fd opened (for writing, so inside) earlier
                    dir_fd = args[fd_index] if fd_index is not None and fd_index < len_(args) else None
                    real = resolve(path, dir_fd)
                    if real is None or not inside(real, (root,)):
                        block(event, "outside the sandbox directory: " + str_(real or path))
        except base_exception as e:  # fail closed
            block(event, "hook error " + type_(e).__name__)

    sys.addaudithook(hook)

def _worker(settings, source):
    import resource, signal
    _limit(resource, resource.RLIMIT_CORE, 0, 0)
    _limit(resource, resource.RLIMIT_CPU, settings["cpu"], settings["cpu"] + 1)
    _limit(resource, resource.RLIMIT_FSIZE, settings["fsize"], settings["fsize"])
    _limit(resource, resource.RLIMIT_NOFILE, settings["nofile"], settings["nofile"])
    _limit(resource, resource.RLIMIT_NPROC, settings["nproc"], settings["nproc"])
    _limit(resource, resource.RLIMIT_AS, settings["mem"], settings["mem"])
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    sys.dont_write_bytecode = True
    _install_hook(bool(settings["network"]))
    try:
        namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        exec(compile(source, "<sandbox>", "exec"), namespace)
        code = 0
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code & 0xFF
        else:
            try:
                print(e.code, file=sys.stderr)
            except BaseException:
                pass
            code = 1
        if code >= 96:
            code = 1  # not to be mistaken for the sandbox's own codes
    except MemoryError:
        code = 98
    except BaseException:
        code = 1
        try:
            import traceback
            traceback.print_exc()
        except BaseException:
            pass
    if code == 98:
        try:
            os.write(2, b"\nMemoryError\n")
        except BaseException:
            pass
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(code)

def _main():
    settings = _settings()
    with open("_ponder_input.py", "rb") as f:
        source = f.read().decode("utf-8", "surrogatepass")
    os.remove("_ponder_input.py")
    pid = os.fork()
    if pid == 0:
        try:
            _worker(settings, source)
        finally:
            os._exit(1)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            os._exit(1)
    if os.WIFSIGNALED(status):
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status))


if __name__ == "__main__":
    _main()
