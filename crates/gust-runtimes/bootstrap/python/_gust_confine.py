"""How an environment forked from a SnapStart snapshot confines itself: exactly as every
sandboxed runtime is confined (no capabilities, Landlock, seccomp). The rules come from Gust
(`gust/confinement.json` in the runtime directory, written from the sandbox's own definition).
"""

import ctypes
import os

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAPABILITY_VERSION_3 = 0x20080522
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_RULE_PATH_BENEATH = 1


class SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


class PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class Kernel:
    """The few C library calls the restore needs."""

    def __init__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long

    def check(self, result, what):
        if result < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, "%s: %s" % (what, os.strerror(errno)))
        return result

    def unshare(self, flags, what):
        self.check(self.libc.unshare(ctypes.c_int(flags)), what)

    def mount(self, source, target, fstype, flags, data):
        self.check(
            self.libc.mount(
                source.encode(),
                target.encode(),
                fstype.encode(),
                ctypes.c_ulong(flags),
                data.encode() if data is not None else None,
            ),
            "mounting %s" % target,
        )

    def prctl(self, option, arg):
        return self.libc.prctl(
            ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )


def load(confinement):
    """Prepares the document Gust wrote: the seccomp programs are built once here rather than
    in every environment."""
    confinement["SeccompPrograms"] = [
        (
            ctypes.cast(
                (SockFilter * len(p))(*[SockFilter(*i) for i in p]), ctypes.POINTER(SockFilter)
            ),
            len(p),
        )
        for p in confinement.get("Seccomp") or []
    ]
    return confinement


def confine(kernel, confinement):
    """What every sandboxed runtime gets: no capabilities, Landlock, seccomp (no_new_privs is
    inherited)."""
    libc = kernel.libc
    for cap in range(64):
        kernel.prctl(PR_CAPBSET_DROP, cap)
    kernel.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    kernel.check(libc.capset(header, data), "dropping capabilities")
    handled = int(confinement.get("LandlockHandled") or 0)
    if handled:
        attr = ctypes.c_uint64(handled)
        ruleset = kernel.check(
            libc.syscall(
                ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), ctypes.byref(attr),
                ctypes.c_size_t(8), ctypes.c_uint32(0),
            ),
            "creating the Landlock ruleset",
        )
        for path, access in confinement.get("LandlockRules") or []:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            rule = PathBeneath(int(access) & handled, fd)
            added = libc.syscall(
                ctypes.c_long(SYS_LANDLOCK_ADD_RULE), ctypes.c_int(ruleset),
                ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_uint32(0),
            )
            os.close(fd)
            kernel.check(added, "adding a Landlock rule")
        kernel.check(
            libc.syscall(
                ctypes.c_long(SYS_LANDLOCK_RESTRICT_SELF), ctypes.c_int(ruleset), ctypes.c_uint32(0)
            ),
            "applying Landlock",
        )
        os.close(ruleset)
    for filters, length in confinement["SeccompPrograms"]:
        fprog = SockFprog(length, filters)
        kernel.check(
            libc.prctl(
                ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER),
                ctypes.byref(fprog), ctypes.c_ulong(0), ctypes.c_ulong(0),
            ),
            "installing the seccomp filter",
        )
