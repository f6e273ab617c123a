"""The sandbox launcher: run as `python -I -S jail.py CONFIG` by sandbox.py, once per program.

It is a separate script, not a `preexec_fn`, because the harness starts programs from a thread
pool and `preexec_fn` is unsafe in a threaded parent. It reads its whole configuration from
argv: a dict, marshal-encoded as hex (`encode_config`; the same interpreter writes and reads
it). It starts once per program, so it imports only builtin modules on the common path: json
and re would double its start-up time, ctypes is loaded only to build namespaces.

With `"isolate": true` (root only) it builds, before the program starts:
  - new mount, network, pid, ipc and uts namespaces: the program has no network (only a downed
    loopback), cannot see or signal host processes, and when the namespace's init exits the
    kernel kills every process left inside it (fork bombs, setsid() daemons included);
  - a read-only, nosuid view of every mount; the only writable place is the working directory,
    a size-limited tmpfs at /tmp/work. /tmp itself and directories other users cannot enter
    (e.g. /root, holding the interpreter) are covered by an empty tmpfs that shows only the
    interpreter's tree, so the host's temporary files are neither visible nor writable. The
    mounts are private: none of this reaches the host, and it all vanishes with the program;
  - an unprivileged uid/gid (one per worker slot), no supplementary groups, no_new_privs:
    the program cannot undo the mounts, and RLIMIT_NPROC (ignored for root) applies.
Without it, only the resource limits and the scrubbed environment apply.

Process tree (isolated): launcher (host pid ns) -> init (pid 1, root, mounts) -> program.
Exit status: the program's exit code, or 128 + signal; 125 with an `akd-sandbox:` message on
stderr when the sandbox itself could not be set up.
"""
import marshal
import os
import resource
import signal
import sys

SETUP_FAILED = 125
SETUP_MARK = "akd-sandbox:"

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38
_KEPT_FLAGS = {"nodev": MS_NODEV, "noexec": MS_NOEXEC}

_LIBC = []  # filled on first use: only the isolated path needs ctypes


def _libc():
    if not _LIBC:
        import ctypes

        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


class SetupError(Exception):
    """The sandbox could not be built; the program never ran."""


def _check(ret: int, what: str) -> None:
    if ret != 0:
        import ctypes

        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)}")


def _mount(source, target, fstype, flags: int, data: str | None = None) -> None:
    import ctypes

    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    ret = _libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))
    _check(ret, f"mount {source} -> {target} ({fstype or 'bind'})")


def _unescape_octal(field: str) -> str:
    """mountinfo writes a space in a path as \\040 (likewise tab, newline, backslash)."""
    parts = field.split("\\")
    return parts[0] + "".join(chr(int(p[:3], 8)) + p[3:] for p in parts[1:])


def _mount_points() -> list[tuple[str, int]]:
    """(mount point, flags to keep) for every mount visible to this process, parents first."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = _unescape_octal(fields[4])
            kept = 0
            for opt in fields[5].split(","):
                kept |= _KEPT_FLAGS.get(opt, 0)
            points.append((point, kept))
    return points


def _shadow(groups: list[dict]) -> None:
    """Cover each directory in `groups` with an empty tmpfs that shows only its `keep` trees
    (e.g. /tmp with nothing, /root with the interpreter). Keep trees are opened before the
    cover goes on and bound back through /proc/self/fd, so a keep may lie anywhere."""
    kept = [(keep, os.open(keep, os.O_PATH)) for g in groups for keep in g["keep"]]
    for group in groups:
        _mount("tmpfs", group["shadow"], "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for keep, fd in kept:
        os.makedirs(keep, mode=0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", keep, None, MS_BIND | MS_REC)
        os.close(fd)


def _isolate_filesystem(cfg: dict) -> bytes:
    """Runs as pid 1 of the new namespaces, still root; returns the program's source."""
    with open(cfg["program"], "rb") as src:
        code = src.read()
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except SetupError:
        pass  # the host's /proc stays visible (read-only below); nothing depends on ours
    _shadow(cfg["shadows"])
    work, uid = cfg["workdir"], cfg["uid"]
    os.makedirs(work, exist_ok=True)  # inside the /tmp cover, before it turns read-only
    for point, kept in _mount_points():
        try:
            _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | kept)
        except SetupError:
            if point == "/":
                raise
    _mount("tmpfs", work, "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={cfg['workdir_mb']}m,mode=0700,uid={uid},gid={uid}")
    return code


def _write_program(cfg: dict, code: bytes) -> str:
    target = os.path.join(cfg["workdir"], "program.py")
    with open(target, "wb") as dst:
        dst.write(code)
    os.chown(target, cfg["uid"], cfg["uid"])
    return target


def _apply_limits(cfg: dict) -> None:
    """Soft = hard = the configured value, or the current hard limit where that is lower
    (an unprivileged harness cannot raise it)."""
    for name, value in cfg["rlimits"].items():
        which = getattr(resource, name)
        hard = resource.getrlimit(which)[1]
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))


def _exec_program(cfg: dict, program: str) -> None:
    """Becomes the program; never returns."""
    os.chdir(cfg["workdir"])
    _apply_limits(cfg)
    if cfg["isolate"]:
        uid = cfg["uid"]
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # from here RLIMIT_NPROC counts this uid's processes
        _check(_libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(no_new_privs)")
    os.execve(cfg["python"], [cfg["python"], "-I", program], cfg["env"])


def _status_code(status: int) -> int:
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _run_as_init(cfg: dict) -> int:
    """pid 1 of the namespaces: build the filesystem view, start the program, reap everyone."""
    program = _write_program(cfg, _isolate_filesystem(cfg))
    child = os.fork()
    if child == 0:
        _child_exec(cfg, program)
    while True:
        pid, status = os.wait()
        if pid == child:
            return _status_code(status)  # our exit makes the kernel kill what is left


def _child_exec(cfg: dict, program: str) -> None:
    try:
        _exec_program(cfg, program)
    except BaseException as exc:  # noqa: BLE001 - report any setup failure, then vanish
        _fail(exc)


def _fail(exc: BaseException) -> None:
    os.write(2, f"{SETUP_MARK} setup failed: {exc}\n".encode())
    os._exit(SETUP_FAILED)


def encode_config(cfg: dict) -> str:
    return marshal.dumps(cfg).hex()


def main() -> None:
    cfg = marshal.loads(bytes.fromhex(sys.argv[1]))
    if not cfg["isolate"]:
        _child_exec(cfg, cfg["program"])
    try:
        flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
        _check(_libc().unshare(flags), "unshare")
        _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates to the host
    except BaseException as exc:  # noqa: BLE001
        _fail(exc)
    os._exit(_supervise_init(cfg))


def _supervise_init(cfg: dict) -> int:
    """Start the namespaces' init and wait for it. SIGTERM (the harness's timeout) kills init,
    which makes the kernel kill everything in the namespace before this wait returns; so the
    harness, which reaps us, never waits on orphans for the host's pid 1 to collect."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    init = os.fork()
    if init == 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        try:
            os._exit(_run_as_init(cfg))
        except BaseException as exc:  # noqa: BLE001
            _fail(exc)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(init, signal.SIGKILL))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    _, status = os.waitpid(init, 0)
    return _status_code(status)


if __name__ == "__main__":
    main()
