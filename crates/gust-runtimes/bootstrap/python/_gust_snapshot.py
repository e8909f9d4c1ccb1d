"""Environments forked from a loaded interpreter: SnapStart snapshots and runtime templates.

A function version that uses SnapStart gets one snapshot process: it runs the function's init
once (and the before-snapshot hooks), then waits on the Runtime API for Gust to ask for an
environment. A runtime template is the same without a function: Gust's runtime loaded, no
function yet; Gust mounts each fork's function at /var/task before it answers, and the fork
then initialises its function as a fresh start does. For each environment, either forks. The fork (C) makes namespaces of its own (user, mount, network,
PID, IPC, UTS; unprivileged, since a new user namespace grants them) and tells Gust, which puts
it in the environment's cgroup and binds its Runtime API and log listeners inside its network
namespace. C then forks the environment's PID 1 (G), which mounts the environment's own /proc,
/tmp (with what init left there) and /dev/shm, enters a cgroup namespace, and confines itself
exactly as every sandboxed runtime is confined (no capabilities, Landlock, seccomp) before it
forks the runtime (R): from a snapshot, R runs the after-restore hooks and serves the Runtime
API from the initialised state; from a template, R loads its function. CPython re-seeds `random`
in every forked child.

The messages with Gust are those of its control protocol (PROTOCOL.md), read and written with
_gust_runtime.py's codec: a `fork` asks for an environment, `forked` or `fork-failed` reports it, the
answer (`restore` with the environment's variables, or `abandon`) is handed to the fork, and the
environment's first process reports how its runtime ended with `exited`.
"""

import os
import signal
import sys
import time

import _socket

import _gust_confine
from _gust_confine import Kernel

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
LOG_SINK = ("127.0.0.1", 9002)
RUNTIME_PREFIX = "/2018-06-01/runtime"


def write_file(path, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def run(api, handler, serve, main):
    """A SnapStart snapshot: the function is initialised; its before-snapshot hooks run, then
    every environment of the version is forked from here and runs the after-restore hooks."""
    confinement, kernel = load_confinement(main)
    import snapshot_restore_py

    try:
        for func, args, kwargs in reversed(snapshot_restore_py.get_before_snapshot()):
            func(*args, **kwargs)
    except Exception:
        error = main.error_from_exception(sys.exc_info())
        main.log_error(error)
        main.flush()
        api.init_error(error)
        sys.exit(1)
    main.flush()

    def carry_on(answer):
        restored_runtime(answer, handler, serve, main)

    serve_forks(api, kernel, confinement, carry_on, main)


def run_template(api, main, loaded):
    """A runtime template: no function yet. Every environment of the runtime is forked from
    here and then initialises its function as a fresh start does. `loaded`: the modules a
    fresh start has loaded by then (the forks forget the ones only forking needed)."""
    confinement, kernel = load_confinement(main)

    def carry_on(answer):
        for name in [name for name in sys.modules if name not in loaded]:
            del sys.modules[name]
        os.environ.clear()
        os.environ.update(answer)
        time.tzset()
        os.chdir(os.environ.get("LAMBDA_TASK_ROOT") or "/var/task")
        main.main()

    serve_forks(api, kernel, confinement, carry_on, main)


def load_confinement(main):
    runtime_dir = os.environ.get("LAMBDA_RUNTIME_DIR") or "/var/runtime"
    with open(os.path.join(runtime_dir, "gust", "confinement.json"), "rb") as f:
        confinement = _gust_confine.load(main.from_json(f.read()))
    return confinement, Kernel()


def serve_forks(api, kernel, confinement, carry_on, main):
    """Forks an environment each time Gust asks, until Gust ends this process."""
    # Environments are reaped as they end; Gust learns how from each one itself.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        status, body = main.control_call(api, "GET", RUNTIME_PREFIX + "/gust/standby")
        if status != 200:
            sys.exit(0)
        _, fields = main.control_decode(body, ("fork",))
        request = dict(fields)
        try:
            request["tmp-mb"] = int(request["tmp-mb"])
        except (KeyError, ValueError):
            raise main.ControlError("Gust's fork message has no /tmp size")
        made_r, made_w = os.pipe()
        go_r, go_w = os.pipe()
        main.flush()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(made_r)
                os.close(go_w)
                api.close()
                fork(kernel, confinement, request, made_w, go_r, carry_on, main)
            except BaseException as e:
                os.write(2, ("gust fork: starting the environment failed: %s\n" % e).encode())
            os._exit(1)
        os.close(made_w)
        os.close(go_r)
        # "1" once the fork is in its namespaces; otherwise why it could not get there.
        made = read_all(made_r)
        os.close(made_r)
        if made == b"1":
            report = main.control_encode("forked", [("pid", pid)])
        else:
            reason = made.decode("utf-8", "replace").replace("\0", " ") or "the fork exited"
            report = main.control_encode("fork-failed", [("reason", reason)])
        status, answer = main.control_call(api, "POST", RUNTIME_PREFIX + "/gust/forked", report)
        # The fork reads its answer (restore or abandon) itself; without one it exits.
        try:
            if status == 200 and made == b"1":
                os.write(go_w, answer)
        except OSError:
            pass
        os.close(go_w)


def fork(kernel, confinement, request, made_w, go_r, carry_on, main):
    """C: the environment's namespaces; then its PID 1, and how it ended for Gust."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    uid, gid = os.getuid(), os.getgid()
    try:
        kernel.unshare(
            CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID,
            "creating the environment's namespaces",
        )
        write_file("/proc/self/setgroups", "deny")
        write_file("/proc/self/uid_map", "%d %d 1\n" % (uid, uid))
        write_file("/proc/self/gid_map", "%d %d 1\n" % (gid, gid))
        # Held before Gust mounts the environment's own /tmp over the snapshot's.
        request["_snapshot_tmp"] = os.open("/tmp", os.O_RDONLY | os.O_DIRECTORY)
    except BaseException as e:
        # The snapshot process reports why to Gust.
        os.write(made_w, str(e).encode("utf-8", "replace"))
        raise
    os.write(made_w, b"1")
    os.close(made_w)
    answer = read_all(go_r)
    os.close(go_r)
    if not answer:
        # The snapshot process got no answer for this fork (Gust is going away).
        os._exit(1)
    try:
        kind, fields = main.control_decode(answer, ("restore", "abandon"))
    except main.ControlError as e:
        os.write(2, ("gust fork: %s\n" % e).encode())
        os._exit(2)
    if kind == "abandon":
        # Gust could not make this fork an environment.
        os._exit(0)
    answer = main.control_environment(fields)
    sink = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    sink.connect(LOG_SINK)
    main.flush()
    os.dup2(sink.fileno(), 1)
    os.dup2(sink.fileno(), 2)
    sink.close()
    status_r, status_w = os.pipe()
    init = os.fork()
    if init == 0:
        os.close(status_r)
        try:
            become_init(kernel, confinement, request, answer, status_w, carry_on, main)
        except BaseException as e:
            os.write(2, ("gust fork: starting the environment failed: %s\n" % e).encode())
        os._exit(1)
    os.close(status_w)
    os.close(request["_snapshot_tmp"])
    reported = read_all(status_r)
    os.close(status_r)
    try:
        os.waitpid(init, 0)
    except ChildProcessError:
        pass
    # Killed, unless the environment's PID 1 said otherwise.
    try:
        status = int(reported.decode())
    except ValueError:
        status = int(signal.SIGKILL)
    try:
        report_exit(status, main)
    except OSError:
        pass
    os._exit(0)


def report_exit(status, main):
    address = os.environ["AWS_LAMBDA_RUNTIME_API"]
    host, _, port = address.rpartition(":")
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        sock.connect((host, int(port)))
        body = main.control_encode("exited", [("status", status)])
        head = "POST %s/gust/exited HTTP/1.1\r\nHost: %s\r\n%s: %s\r\n" % (
            RUNTIME_PREFIX, address, main.CONTROL_HEADER, main.CONTROL_VERSION
        )
        sock.sendall(
            head.encode()
            + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
            + body
        )
        sock.recv(4096)
    finally:
        sock.close()


def copy_tree(source_fd, target):
    """Copies what init left in the snapshot's /tmp into the environment's own."""
    for entry in os.scandir(source_fd):
        path = os.path.join(target, entry.name)
        stat = entry.stat(follow_symlinks=False)
        if entry.is_symlink():
            os.symlink(os.readlink(entry.name, dir_fd=source_fd), path)
        elif entry.is_dir(follow_symlinks=False):
            os.mkdir(path, stat.st_mode & 0o7777)
            sub = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=source_fd)
            try:
                copy_tree(sub, path)
            finally:
                os.close(sub)
        elif entry.is_file(follow_symlinks=False):
            src = os.open(entry.name, os.O_RDONLY, dir_fd=source_fd)
            dst = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.st_mode & 0o7777)
            try:
                while True:
                    chunk = os.read(src, 1 << 20)
                    if not chunk:
                        break
                    os.write(dst, chunk)
            finally:
                os.close(src)
                os.close(dst)


def become_init(kernel, confinement, request, answer, status_w, carry_on, main):
    """G: PID 1 of the environment. Its own /proc, /tmp and /dev/shm, then confinement, then the
    runtime; it reaps orphans until the runtime ends and reports how."""
    kernel.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    tmp_mb = request["tmp-mb"] or 512
    snapshot_tmp = request["_snapshot_tmp"]
    # Gust mounts the environment's own disk-backed /tmp before it answers; without one (a
    # launcher that has none), a tmpfs.
    if os.stat("/tmp").st_dev == os.fstat(snapshot_tmp).st_dev:
        kernel.mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=%dm,mode=1777" % tmp_mb)
    try:
        copy_tree(snapshot_tmp, "/tmp")
    finally:
        os.close(snapshot_tmp)
    shm_mb = min(tmp_mb, 512)
    kernel.mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=%dm,mode=1777" % shm_mb)
    kernel.unshare(CLONE_NEWCGROUP, "entering the environment's cgroup namespace")
    _gust_confine.confine(kernel, confinement)
    runtime = os.fork()
    if runtime == 0:
        os.close(status_w)
        try:
            carry_on(answer)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
            main.flush()
            os._exit(code)
        except BaseException:
            main.flush()
            os._exit(1)
        os._exit(0)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            status = int(signal.SIGKILL)
            break
        if pid == runtime:
            break
    os.write(status_w, str(status).encode())
    os._exit(0)


def restored_runtime(answer, handler, serve, main):
    """R of a snapshot's fork: the environment's own variables, the after-restore hooks, then
    events."""
    os.environ.clear()
    os.environ.update(answer)
    import snapshot_restore_py

    api = main.RuntimeApi(os.environ["AWS_LAMBDA_RUNTIME_API"])
    try:
        for func, args, kwargs in snapshot_restore_py.get_after_restore():
            func(*args, **kwargs)
    except Exception:
        error = main.error_from_exception(sys.exc_info())
        error["errorType"] = "Runtime.AfterRestoreError"
        main.log_error(error)
        main.flush()
        api.init_error(error)
        sys.exit(1)
    serve(api, handler)
