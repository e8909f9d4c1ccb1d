"""How an environment forked from a SnapStart snapshot confines itself: exactly as every
sandboxed runtime is confined. What it applies, in what order, and the kernel's numbers for
applying it (system calls, prctl options, structure versions) all come from Gust's sandbox
(`gust/confinement.json` in the runtime directory, generated from the sandbox's own
definition): none is typed in here. A fork is never exec'd, so it applies explicitly what
exec does for a fresh runtime (dropping capabilities).
"""

import ctypes
import os


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


class Rlimit(ctypes.Structure):
    # rlim_t is an unsigned long on Linux.
    _fields_ = [("rlim_cur", ctypes.c_ulong), ("rlim_max", ctypes.c_ulong)]


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
    confinement["_programs"] = [
        (
            ctypes.cast(
                (SockFilter * len(p))(*[SockFilter(*i) for i in p]), ctypes.POINTER(SockFilter)
            ),
            len(p),
        )
        for p in confinement["Seccomp"]["Programs"]
    ]
    return confinement


def capabilities(kernel, confinement, numbers):
    policy = confinement["Capabilities"]
    for cap in policy["DropBounding"]:
        kernel.check(kernel.prctl(numbers["PR_CAPBSET_DROP"], cap), "dropping a bounding capability")
    if policy["ClearAmbient"]:
        kernel.check(
            kernel.libc.prctl(
                ctypes.c_int(numbers["PR_CAP_AMBIENT"]),
                ctypes.c_ulong(numbers["PR_CAP_AMBIENT_CLEAR_ALL"]),
                ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0),
            ),
            "clearing the ambient capabilities",
        )
    words = numbers["_LINUX_CAPABILITY_U32S_3"]
    kept = policy["Kept"]
    header = (ctypes.c_uint32 * 2)(numbers["_LINUX_CAPABILITY_VERSION_3"], 0)
    # One {effective, permitted, inheritable} triple per 32 capabilities.
    data = (ctypes.c_uint32 * (3 * words))()
    for word in range(words):
        bits = (kept >> (32 * word)) & 0xFFFFFFFF
        data[3 * word : 3 * word + 3] = [bits, bits, bits]
    kernel.check(kernel.libc.capset(header, data), "setting the capabilities")


def no_new_privs(kernel, confinement, numbers):
    kernel.check(kernel.prctl(numbers["PR_SET_NO_NEW_PRIVS"], 1), "setting no_new_privs")


def landlock(kernel, confinement, numbers):
    libc = kernel.libc
    handled = confinement["Landlock"]["Handled"]
    rules = confinement["Landlock"]["Rules"]
    if not handled or not rules:
        return
    attr = ctypes.c_uint64(handled)
    ruleset = kernel.check(
        libc.syscall(
            ctypes.c_long(numbers["SYS_landlock_create_ruleset"]), ctypes.byref(attr),
            ctypes.c_size_t(numbers["LandlockRulesetAttrSize"]), ctypes.c_uint32(0),
        ),
        "creating the Landlock ruleset",
    )
    for path, access in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        rule = PathBeneath(access, fd)
        added = libc.syscall(
            ctypes.c_long(numbers["SYS_landlock_add_rule"]), ctypes.c_int(ruleset),
            ctypes.c_int(numbers["LANDLOCK_RULE_PATH_BENEATH"]), ctypes.byref(rule),
            ctypes.c_uint32(0),
        )
        os.close(fd)
        kernel.check(added, "adding a Landlock rule")
    kernel.check(
        libc.syscall(
            ctypes.c_long(numbers["SYS_landlock_restrict_self"]), ctypes.c_int(ruleset),
            ctypes.c_uint32(0),
        ),
        "applying Landlock",
    )
    os.close(ruleset)


def rlimits(kernel, confinement, numbers):
    for limit in confinement["Rlimits"]:
        value = Rlimit(limit["Soft"], limit["Hard"])
        kernel.check(
            kernel.libc.setrlimit(ctypes.c_int(limit["Resource"]), ctypes.byref(value)),
            "setting %s" % (limit["Name"] or "a resource limit"),
        )


def seccomp(kernel, confinement, numbers):
    for filters, length in confinement["_programs"]:
        fprog = SockFprog(length, filters)
        kernel.check(
            kernel.libc.syscall(
                ctypes.c_long(numbers["SYS_seccomp"]),
                ctypes.c_uint(numbers["SECCOMP_SET_MODE_FILTER"]),
                ctypes.c_uint(confinement["Seccomp"]["Flags"]), ctypes.byref(fprog),
            ),
            "installing the seccomp filter",
        )


STEPS = {
    "Capabilities": capabilities,
    "NoNewPrivs": no_new_privs,
    "Landlock": landlock,
    "Rlimits": rlimits,
    "Seccomp": seccomp,
}


def confine(kernel, confinement):
    """What every sandboxed runtime ends with, in the order it takes it on."""
    if (os.getuid(), os.getgid()) != (confinement["Uid"], confinement["Gid"]):
        raise OSError("confining: running as %d:%d, not the sandbox's user" % (os.getuid(), os.getgid()))
    numbers = confinement["Kernel"]
    for step in confinement["Order"]:
        STEPS[step](kernel, confinement, numbers)
