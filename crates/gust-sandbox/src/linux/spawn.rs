//! Starting a runtime inside its sandbox.
//!
//! Everything here runs in the child between fork and exec, where a multi-threaded parent's
//! child may only make async-signal-safe calls: no allocation, no locks. So every path, map
//! and filter is prepared in the parent as a [`Plan`], and the child only issues system calls.
//!
//! The child (C) joins the environment's network namespace and cgroup, makes new mount, UTS,
//! IPC, cgroup and PID namespaces, and forks. The grandchild (G) is PID 1 of the new PID
//! namespace: it builds the sandbox's root filesystem, pivots into it, forks the runtime (R)
//! and reaps orphans until R exits; when G exits the kernel kills everything left in the
//! namespace, so no background process outlives its environment. R drops to an unprivileged
//! uid, enters a user namespace, limits itself (rlimits, no_new_privs, Landlock, seccomp) and
//! is the process that execs the runtime. C waits for G and exits the way R did, so Gust sees
//! the runtime's own exit status.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

/// One step of building the root filesystem (paths are absolute host paths below the new root,
/// taken before the pivot).
#[derive(Clone)]
pub enum Op {
    Mkdir(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    /// A small file written into the new root (passwd, group, hosts).
    File {
        path: CString,
        contents: Vec<u8>,
    },
    /// A character device node, readable and writable by everyone (/dev/null and the like).
    CharDevice {
        path: CString,
        device: libc::dev_t,
    },
    Bind {
        source: CString,
        target: CString,
        read_only: bool,
    },
    /// `devices`: whether device nodes in it work (only /dev's).
    Tmpfs {
        target: CString,
        options: CString,
        devices: bool,
    },
    /// Remounts a mount read-only (keeping its device nodes usable).
    RemountReadOnly(CString),
}

/// Landlock rules: a path and the rights granted beneath it.
pub struct LandlockRule {
    pub path: CString,
    pub access: u64,
}

/// What every sandbox of a launcher shares, prepared once when the launcher starts.
pub struct Template {
    /// Read end of a pipe only Gust can write to: it reports end-of-file when Gust dies.
    pub lifeline: RawFd,
    /// The (empty) directory each sandbox mounts its root on, in its own mount namespace.
    pub root: CString,
    pub root_options: CString,
    /// The root's common steps; each sandbox's own follow them.
    pub ops: Vec<Op>,
    pub proc_dir: CString,
    pub hostname: CString,
    /// Gust's command line in memory, to be blanked in the sandbox's PID 1.
    pub command_line: Option<(usize, usize)>,
    pub workdir: CString,
    pub rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
    pub landlock: Vec<LandlockRule>,
    /// Seccomp programs, installed in order.
    pub seccomp: Vec<Vec<libc::sock_filter>>,
}

/// Everything one sandbox's start needs, prepared before fork.
#[derive(Clone)]
pub struct Plan {
    pub template: Arc<Template>,
    pub netns: RawFd,
    /// The environment's mount namespace (which holds its /tmp); the sandbox's own is a copy.
    pub mount_namespace: RawFd,
    pub cgroup_procs: Vec<RawFd>,
    pub host_uid: u32,
    pub host_gid: u32,
    pub uid_map: Vec<u8>,
    pub gid_map: Vec<u8>,
    /// This environment's own root steps (its code, /tmp, shared memory).
    pub ops: Vec<Op>,
}

const SETGROUPS: &CStr = c"/proc/self/setgroups";
const UID_MAP: &CStr = c"/proc/self/uid_map";
const GID_MAP: &CStr = c"/proc/self/gid_map";
const DENY: &[u8] = b"deny";

/// A step of a sandbox's start that can fail, as the function's log and Gust's errors name it.
/// The child reports the one that failed to Gust as its index (see [`report`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    JoinNetwork,
    JoinMountNamespace,
    JoinCgroup,
    Unshare,
    StatusPipe,
    ForkInit,
    MakeMountsPrivate,
    MountRoot,
    Mkdir,
    Symlink,
    WriteFile,
    DeviceNode,
    BindMount,
    ReadOnlyRemount,
    MountTmpfs,
    MountProc,
    SetHostname,
    EnterRoot,
    PivotRoot,
    DetachOldRoot,
    EnterSlash,
    RootReadOnly,
    ForkRuntime,
    DropGroups,
    SetGid,
    SetUid,
    Dumpable,
    UserNamespace,
    WriteSetgroups,
    WriteUidMap,
    WriteGidMap,
    EnterTaskRoot,
    NoNewPrivs,
    LandlockRuleset,
    LandlockRule,
    Landlock,
    Rlimit,
    Seccomp,
}

impl Step {
    /// Every step, in declaration order (index = discriminant).
    const ALL: [Step; 38] = [
        Step::JoinNetwork,
        Step::JoinMountNamespace,
        Step::JoinCgroup,
        Step::Unshare,
        Step::StatusPipe,
        Step::ForkInit,
        Step::MakeMountsPrivate,
        Step::MountRoot,
        Step::Mkdir,
        Step::Symlink,
        Step::WriteFile,
        Step::DeviceNode,
        Step::BindMount,
        Step::ReadOnlyRemount,
        Step::MountTmpfs,
        Step::MountProc,
        Step::SetHostname,
        Step::EnterRoot,
        Step::PivotRoot,
        Step::DetachOldRoot,
        Step::EnterSlash,
        Step::RootReadOnly,
        Step::ForkRuntime,
        Step::DropGroups,
        Step::SetGid,
        Step::SetUid,
        Step::Dumpable,
        Step::UserNamespace,
        Step::WriteSetgroups,
        Step::WriteUidMap,
        Step::WriteGidMap,
        Step::EnterTaskRoot,
        Step::NoNewPrivs,
        Step::LandlockRuleset,
        Step::LandlockRule,
        Step::Landlock,
        Step::Rlimit,
        Step::Seccomp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::JoinNetwork => "joining the network namespace",
            Step::JoinMountNamespace => "joining the mount namespace",
            Step::JoinCgroup => "joining the cgroup",
            Step::Unshare => "creating namespaces",
            Step::StatusPipe => "creating the status pipe",
            Step::ForkInit => "forking the sandbox init",
            Step::MakeMountsPrivate => "making mounts private",
            Step::MountRoot => "mounting the root",
            Step::Mkdir => "creating a directory",
            Step::Symlink => "creating a symbolic link",
            Step::WriteFile => "writing a file",
            Step::DeviceNode => "creating a device node",
            Step::BindMount => "bind mount",
            Step::ReadOnlyRemount => "read-only remount",
            Step::MountTmpfs => "mounting a tmpfs",
            Step::MountProc => "mounting /proc",
            Step::SetHostname => "setting the hostname",
            Step::EnterRoot => "entering the root",
            Step::PivotRoot => "pivot_root",
            Step::DetachOldRoot => "detaching the old root",
            Step::EnterSlash => "entering /",
            Step::RootReadOnly => "making the root read-only",
            Step::ForkRuntime => "forking the runtime",
            Step::DropGroups => "dropping groups",
            Step::SetGid => "setting the gid",
            Step::SetUid => "setting the uid",
            Step::Dumpable => "prctl(PR_SET_DUMPABLE)",
            Step::UserNamespace => "creating the user namespace",
            Step::WriteSetgroups => "writing setgroups",
            Step::WriteUidMap => "writing uid_map",
            Step::WriteGidMap => "writing gid_map",
            Step::EnterTaskRoot => "entering the task root",
            Step::NoNewPrivs => "prctl(PR_SET_NO_NEW_PRIVS)",
            Step::LandlockRuleset => "creating the Landlock ruleset",
            Step::LandlockRule => "adding a Landlock rule",
            Step::Landlock => "applying Landlock",
            Step::Rlimit => "setting a resource limit",
            Step::Seccomp => "installing the seccomp filter",
        }
    }
}

/// What confines a runtime, in the order it takes them on. A fork of a SnapStart snapshot
/// process, which is never exec'd, takes the same in the same order from the confinement
/// document (see [`crate::Confinement`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restriction {
    /// No capabilities: no effective, permitted, inheritable or ambient ones.
    Capabilities,
    NoNewPrivs,
    Landlock,
    /// The template's resource limits, soft and hard.
    Rlimits,
    /// The template's seccomp programs, in order.
    Seccomp,
}

pub const RESTRICTIONS: [Restriction; 5] = [
    Restriction::Capabilities,
    Restriction::NoNewPrivs,
    Restriction::Landlock,
    Restriction::Rlimits,
    Restriction::Seccomp,
];

impl Restriction {
    pub fn name(self) -> &'static str {
        match self {
            Restriction::Capabilities => "Capabilities",
            Restriction::NoNewPrivs => "NoNewPrivs",
            Restriction::Landlock => "Landlock",
            Restriction::Rlimits => "Rlimits",
            Restriction::Seccomp => "Seccomp",
        }
    }
}

/// A failed step and its error number.
#[derive(Debug, Clone, Copy)]
struct Failed {
    step: Step,
    errno: i32,
}

type Done<T = ()> = Result<T, Failed>;

/// The calling thread's `errno` (reading it allocates nothing).
fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Reports a failed step on stderr (which feeds the function's log) and returns it.
fn fail(step: Step) -> Failed {
    let errno = errno();
    const PREFIX: &[u8] = b"gust sandbox: ";
    const SUFFIX: &[u8] = b" failed\n";
    let name = step.name().as_bytes();
    for part in [PREFIX, name, SUFFIX] {
        // SAFETY: write(2) to stderr reads `part.len()` bytes of a live static slice; it is
        // async-signal-safe, and a failed write leaves nothing to undo.
        unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
    }
    Failed { step, errno }
}

fn check(result: libc::c_long, step: Step) -> Done<libc::c_long> {
    if result < 0 {
        Err(fail(step))
    } else {
        Ok(result)
    }
}

/// Closes a descriptor this process opened and no longer needs.
fn close(fd: RawFd) {
    // SAFETY: close(2) of a descriptor this process owns and does not use afterwards.
    unsafe { libc::close(fd) };
}

/// Writes a whole buffer to a file, creating it if asked.
fn write_file(path: &CStr, contents: &[u8], create: bool, step: Step) -> Done {
    let flags = libc::O_WRONLY
        | libc::O_CLOEXEC
        | if create {
            libc::O_CREAT | libc::O_TRUNC
        } else {
            0
        };
    // SAFETY: open(2) of a NUL-terminated path that outlives the call.
    let fd = unsafe { libc::open(path.as_ptr(), flags, 0o644) };
    let fd = check(fd.into(), step)? as RawFd;
    let mut written = 0;
    while written < contents.len() {
        let rest = &contents[written..];
        // SAFETY: write(2) reads `rest.len()` bytes of a live slice.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            let failed = fail(step);
            close(fd);
            return Err(failed);
        }
        written += n as usize;
    }
    close(fd);
    Ok(())
}

fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
    step: Step,
) -> Done {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call, or nulls where the
    // call takes none.
    let mounted = unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    };
    check(mounted.into(), step)?;
    Ok(())
}

/// Closes every descriptor from 3 up except the two in `keep`.
fn close_all_except(keep: [RawFd; 2]) {
    let (low, high) = (keep[0].min(keep[1]), keep[0].max(keep[1]));
    let mut from = 3;
    for fd in [low, high] {
        if fd > from {
            // SAFETY: close_range(2) closes descriptors of this process only, none of which
            // anything here uses afterwards.
            unsafe { libc::syscall(libc::SYS_close_range, from as u32, (fd - 1) as u32, 0u32) };
        }
        from = from.max(fd + 1);
    }
    // SAFETY: close_range(2) of the descriptors above the kept ones, all this process's.
    unsafe { libc::syscall(libc::SYS_close_range, from as u32, u32::MAX, 0u32) };
}

/// The size of a child's report: the failed step's index and its error number.
const REPORT_LEN: usize = 5;

/// Tells Gust which step failed, on `report` (the write end of a pipe that exec closes).
fn send_report(report: RawFd, failed: Failed) {
    let mut message = [0u8; REPORT_LEN];
    message[0] = failed.step as u8;
    message[1..].copy_from_slice(&failed.errno.to_ne_bytes());
    // SAFETY: write(2) reads the 5 bytes of a live stack array; one write of less than
    // PIPE_BUF bytes is atomic, and losing the report only loses the step's name.
    unsafe { libc::write(report, message.as_ptr().cast(), message.len()) };
}

/// In Gust, after a start failed: the step the child reported on `report`'s read end, if any,
/// and its error. Never blocks (the descriptor is non-blocking).
pub fn read_report(report: RawFd) -> Option<(Step, io::Error)> {
    let mut message = [0u8; REPORT_LEN];
    // SAFETY: read(2) writes at most `message.len()` bytes into a live stack array.
    let n = unsafe { libc::read(report, message.as_mut_ptr().cast(), message.len()) };
    if n != REPORT_LEN as isize {
        return None;
    }
    let step = *Step::ALL.get(usize::from(message[0]))?;
    let errno = i32::from_ne_bytes([message[1], message[2], message[3], message[4]]);
    Some((step, io::Error::from_raw_os_error(errno)))
}

/// The first child (C): namespaces, then fork; C itself only waits and mirrors the result.
/// The process that fails a step (C, the sandbox's init or the runtime) reports it on
/// `report` before returning its error.
///
/// # Safety
/// Must run in a freshly forked child, between fork and exec.
pub unsafe fn child(plan: &Plan, report: RawFd) -> io::Result<()> {
    // SAFETY: the caller runs this between fork and exec.
    match unsafe { start(plan) } {
        Ok(()) => Ok(()),
        Err(failed) => {
            send_report(report, failed);
            Err(io::Error::from_raw_os_error(failed.errno))
        }
    }
}

/// C's part: see [`child`].
unsafe fn start(plan: &Plan) -> Done {
    // SAFETY: setns(2) with a namespace descriptor the plan keeps open.
    let joined = unsafe { libc::setns(plan.netns, libc::CLONE_NEWNET) };
    check(joined.into(), Step::JoinNetwork)?;
    // SAFETY: setns(2) with a namespace descriptor the plan keeps open.
    let joined = unsafe { libc::setns(plan.mount_namespace, libc::CLONE_NEWNS) };
    check(joined.into(), Step::JoinMountNamespace)?;
    for fd in &plan.cgroup_procs {
        // SAFETY: write(2) of one byte of a static string to a descriptor the plan keeps open.
        let written = unsafe { libc::write(*fd, b"0".as_ptr().cast(), 1) };
        check(written as libc::c_long, Step::JoinCgroup)?;
    }
    // SAFETY: unshare(2) gives this process (single-threaded after fork) new namespaces.
    let unshared = unsafe {
        libc::unshare(
            libc::CLONE_NEWNS
                | libc::CLONE_NEWUTS
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWPID
                | libc::CLONE_NEWCGROUP,
        )
    };
    check(unshared.into(), Step::Unshare)?;
    let mut status_pipe = [0 as RawFd; 2];
    // SAFETY: pipe2(2) writes two descriptors into the two-element array.
    let piped = unsafe { libc::pipe2(status_pipe.as_mut_ptr(), libc::O_CLOEXEC) };
    check(piped.into(), Step::StatusPipe)?;
    let [status_read, status_write] = status_pipe;
    // SAFETY: fork(2) of a single-threaded process; the child only makes async-signal-safe
    // calls until it execs or exits.
    let init = check(unsafe { libc::fork() }.into(), Step::ForkInit)? as libc::pid_t;
    if init == 0 {
        close(status_read);
        // SAFETY: prctl(2) with integer arguments. C is single-threaded, so this fires exactly
        // when C dies.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        // SAFETY: G is a fresh fork of C, between fork and exec.
        return unsafe { init_process(plan, status_write) };
    }
    close(status_write);
    close_all_except([status_read, plan.template.lifeline]);
    mirror(init, status_read, plan.template.lifeline)
}

/// C: waits for the runtime's wait status (sent by G) and exits the same way. If Gust dies
/// first (its end of the lifeline closes), C kills G and with it the whole sandbox.
fn mirror(init: libc::pid_t, status_read: RawFd, lifeline: RawFd) -> ! {
    let mut status: libc::c_int = 0;
    let mut got = 0usize;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: status_read,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: lifeline,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll(2) reads and writes the two-element array it is given.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            break;
        }
        if fds[1].revents != 0 {
            // SAFETY: kill(2) of our own child, G.
            unsafe { libc::kill(init, libc::SIGKILL) };
            break;
        }
        if fds[0].revents == 0 {
            continue;
        }
        let buffer = &mut status as *mut libc::c_int as *mut u8;
        // SAFETY: read(2) writes at most `4 - got` bytes into `status` past the `got` already
        // read, which stays within its 4 bytes.
        let n = unsafe { libc::read(status_read, buffer.add(got).cast(), 4 - got) };
        if n > 0 {
            got += n as usize;
            if got == 4 {
                break;
            }
        } else if n == 0 || errno() != libc::EINTR {
            break;
        }
    }
    let mut init_status: libc::c_int = 0;
    // SAFETY: waitpid(2) of our own child writes its status into a live integer.
    while unsafe { libc::waitpid(init, &mut init_status, 0) } < 0 && errno() == libc::EINTR {}
    if got < 4 {
        // G died without reporting: it was killed (the environment is being reset).
        status = if libc::WIFSIGNALED(init_status) {
            init_status
        } else {
            libc::SIGKILL
        };
    }
    if libc::WIFEXITED(status) {
        // SAFETY: _exit(2) ends this process without running anything of the parent's.
        unsafe { libc::_exit(libc::WEXITSTATUS(status)) };
    }
    let signal = if libc::WIFSIGNALED(status) {
        libc::WTERMSIG(status)
    } else {
        libc::SIGKILL
    };
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit(2) reads a live rlimit; dying by the runtime's signal must not dump
    // C's core.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
    // SAFETY: signal(2) restores the default action of one signal.
    unsafe { libc::signal(signal, libc::SIG_DFL) };
    let mut all = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset(3) initialises the set it is given.
    unsafe { libc::sigemptyset(all.as_mut_ptr()) };
    // SAFETY: sigprocmask(2) reads the set sigemptyset initialised; the old mask is not asked.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, all.as_ptr(), std::ptr::null_mut()) };
    // SAFETY: kill(2) of this process, with the signal the runtime died of.
    unsafe { libc::kill(libc::getpid(), signal) };
    // SAFETY: _exit(2), only reached if the signal did not end this process.
    unsafe { libc::_exit(128 + signal) }
}

/// What the sandbox's PID 1 shows as its command line instead of Gust's own, which would tell
/// the function where Gust and its data live.
const INIT_COMMAND_LINE: &[u8] = b"/init\0";

/// Where this process's command line lives in memory (`arg_start`, `arg_end` of
/// /proc/self/stat). A forked child has it at the same addresses.
pub fn command_line_region() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    // Fields are numbered from 1 and the list starts at field 3; arg_start is field 48.
    let start = fields.get(45)?.parse().ok()?;
    let end = fields.get(46)?.parse().ok()?;
    (end > start).then_some((start, end))
}

/// Overwrites G's copy of Gust's command line with [`INIT_COMMAND_LINE`] (renaming through
/// prctl(PR_SET_MM) would need CAP_SYS_RESOURCE, which containers often drop).
///
/// # Safety
/// `region` must be this process's own argument area (from [`command_line_region`] in the
/// process it was forked from), which nothing in this process reads any more.
unsafe fn rename_init(region: Option<(usize, usize)>) {
    if let Some((start, end)) = region {
        let len = end - start;
        // SAFETY: the caller vouches that `start..end` is our own, unused argument area.
        unsafe { std::ptr::write_bytes(start as *mut u8, 0, len) };
        if len >= INIT_COMMAND_LINE.len() {
            // SAFETY: the area is ours and unused (see above), the copy fits in it, and a
            // static cannot overlap it.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    INIT_COMMAND_LINE.as_ptr(),
                    start as *mut u8,
                    INIT_COMMAND_LINE.len(),
                )
            };
        }
    }
    // SAFETY: prctl(2) reads a NUL-terminated static string.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"init".as_ptr(), 0, 0, 0) };
}

/// G: PID 1 of the sandbox. Builds the filesystem, starts the runtime, reaps.
///
/// # Safety
/// Must run in G, a fresh fork of C, between fork and exec.
unsafe fn init_process(plan: &Plan, status_write: RawFd) -> Done {
    // SAFETY: the template's region was taken from Gust's own /proc/self/stat, and G is a
    // fork of Gust that never reads its arguments.
    unsafe { rename_init(plan.template.command_line) };
    // Modes are given explicitly; Gust's umask must not narrow /dev/null's 0666.
    // SAFETY: umask(2) only changes this process's file mode mask.
    unsafe { libc::umask(0) };
    build_root(plan)?;
    // SAFETY: fork(2) of a single-threaded process; the child only makes async-signal-safe
    // calls until it execs.
    let runtime = check(unsafe { libc::fork() }.into(), Step::ForkRuntime)? as libc::pid_t;
    if runtime == 0 {
        close(status_write);
        // SAFETY: R is a fresh fork of G, between fork and exec.
        return unsafe { runtime_process(plan) };
    }
    close_all_except([status_write, status_write]);
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid(2) writes a child's status into a live integer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == runtime {
            // SAFETY: write(2) reads the 4 bytes of a live integer.
            unsafe { libc::write(status_write, (&status as *const libc::c_int).cast(), 4) };
            // SAFETY: _exit(2) ends G, and with it the sandbox's PID namespace.
            unsafe { libc::_exit(0) };
        }
        if pid < 0 && errno() == libc::ECHILD {
            // SAFETY: _exit(2) ends G (it has no runtime left to wait for).
            unsafe { libc::_exit(0) };
        }
    }
}

/// G: mounts the sandbox's root and pivots into it.
fn build_root(plan: &Plan) -> Done {
    let template = &plan.template;
    mount(
        None,
        c"/",
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
        Step::MakeMountsPrivate,
    )?;
    mount(
        Some(c"tmpfs"),
        &template.root,
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(template.root_options.as_c_str()),
        Step::MountRoot,
    )?;
    for op in template.ops.iter().chain(&plan.ops) {
        match op {
            Op::Mkdir(path) => {
                // SAFETY: mkdir(2) of a NUL-terminated path owned by the plan.
                if unsafe { libc::mkdir(path.as_ptr(), 0o755) } < 0 && errno() != libc::EEXIST {
                    return Err(fail(Step::Mkdir));
                }
            }
            Op::Symlink { target, link } => {
                // SAFETY: symlink(2) of NUL-terminated paths owned by the plan.
                let made = unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) };
                check(made.into(), Step::Symlink)?;
            }
            Op::File { path, contents } => write_file(path, contents, true, Step::WriteFile)?,
            Op::CharDevice { path, device } => {
                // SAFETY: mknod(2) of a NUL-terminated path owned by the plan.
                let made = unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, *device) };
                check(made.into(), Step::DeviceNode)?;
            }
            Op::Bind {
                source,
                target,
                read_only,
            } => {
                mount(
                    Some(source.as_c_str()),
                    target,
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                    Step::BindMount,
                )?;
                if *read_only {
                    mount(
                        None,
                        target,
                        None,
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID,
                        None,
                        Step::ReadOnlyRemount,
                    )?;
                }
            }
            Op::Tmpfs {
                target,
                options,
                devices,
            } => {
                let nodev = if *devices { 0 } else { libc::MS_NODEV };
                mount(
                    Some(c"tmpfs"),
                    target,
                    Some(c"tmpfs"),
                    libc::MS_NOSUID | nodev,
                    Some(options.as_c_str()),
                    Step::MountTmpfs,
                )?;
            }
            Op::RemountReadOnly(target) => {
                mount(
                    None,
                    target,
                    None,
                    libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID,
                    None,
                    Step::ReadOnlyRemount,
                )?;
            }
        }
    }
    mount(
        Some(c"proc"),
        &template.proc_dir,
        Some(c"proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
        Step::MountProc,
    )?;
    let hostname = template.hostname.as_bytes();
    // SAFETY: sethostname(2) reads `hostname.len()` bytes of a string owned by the plan.
    let named = unsafe { libc::sethostname(hostname.as_ptr().cast(), hostname.len()) };
    check(named.into(), Step::SetHostname)?;
    // SAFETY: chdir(2) to a NUL-terminated path owned by the plan.
    let entered = unsafe { libc::chdir(template.root.as_ptr()) };
    check(entered.into(), Step::EnterRoot)?;
    // SAFETY: pivot_root(2) with NUL-terminated static paths.
    let pivoted = unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) };
    check(pivoted, Step::PivotRoot)?;
    // SAFETY: umount2(2) of a NUL-terminated static path.
    let detached = unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) };
    check(detached.into(), Step::DetachOldRoot)?;
    // SAFETY: chdir(2) to a NUL-terminated static path.
    let entered = unsafe { libc::chdir(c"/".as_ptr()) };
    check(entered.into(), Step::EnterSlash)?;
    mount(
        None,
        c"/",
        None,
        libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        None,
        Step::RootReadOnly,
    )?;
    Ok(())
}

/// The first part of `struct landlock_ruleset_attr`: the filesystem rights are all Gust
/// handles, and the kernel takes any size from this field's end on.
#[repr(C)]
pub struct RulesetAttr {
    pub handled_access_fs: u64,
}

/// The filesystem rights Landlock knows at each ABI version.
pub fn landlock_handled(abi: i64) -> u64 {
    use linux_raw_sys::landlock as ll;
    let v1 = (ll::LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;
    let v2 = v1 | ll::LANDLOCK_ACCESS_FS_REFER;
    let v3 = v2 | ll::LANDLOCK_ACCESS_FS_TRUNCATE;
    let v5 = v3 | ll::LANDLOCK_ACCESS_FS_IOCTL_DEV;
    u64::from(match abi {
        ..=0 => 0,
        1 => v1,
        2 => v2,
        // ABI 4 added network rights only.
        3 | 4 => v3,
        _ => v5,
    })
}

/// The Landlock ABI this kernel offers (0 when it has none).
pub fn landlock_abi() -> i64 {
    // SAFETY: the version query reads no memory (a null attribute of size 0).
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            linux_raw_sys::landlock::LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    abi.max(0)
}

/// The path-beneath rule type of landlock_add_rule(2).
pub const LANDLOCK_RULE_PATH_BENEATH: u32 =
    linux_raw_sys::landlock::landlock_rule_type::LANDLOCK_RULE_PATH_BENEATH as u32;

fn apply_landlock(rules: &[LandlockRule]) -> Done {
    let handled = landlock_handled(landlock_abi());
    if handled == 0 || rules.is_empty() {
        return Ok(());
    }
    let attr = RulesetAttr {
        handled_access_fs: handled,
    };
    // SAFETY: landlock_create_ruleset(2) reads the live attribute of the size given.
    let ruleset = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            std::mem::size_of::<RulesetAttr>(),
            0u32,
        )
    };
    let ruleset = check(ruleset, Step::LandlockRuleset)? as RawFd;
    for rule in rules {
        // SAFETY: open(2) of a NUL-terminated path owned by the plan.
        let fd = unsafe { libc::open(rule.path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if fd < 0 {
            continue;
        }
        let beneath = linux_raw_sys::landlock::landlock_path_beneath_attr {
            allowed_access: rule.access & handled,
            parent_fd: fd,
        };
        // SAFETY: landlock_add_rule(2) reads the live rule; both descriptors are ours.
        let added = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                ruleset,
                LANDLOCK_RULE_PATH_BENEATH,
                &beneath as *const linux_raw_sys::landlock::landlock_path_beneath_attr,
                0u32,
            )
        };
        close(fd);
        check(added, Step::LandlockRule)?;
    }
    // SAFETY: landlock_restrict_self(2) with our ruleset descriptor.
    let restricted = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32) };
    check(restricted, Step::Landlock)?;
    close(ruleset);
    Ok(())
}

fn set_rlimits(rlimits: &[(libc::__rlimit_resource_t, u64)]) -> Done {
    for (resource, value) in rlimits {
        let limit = libc::rlimit {
            rlim_cur: *value,
            rlim_max: *value,
        };
        // SAFETY: setrlimit(2) reads a live rlimit.
        let set = unsafe { libc::setrlimit(*resource, &limit) };
        check(set.into(), Step::Rlimit)?;
    }
    Ok(())
}

/// The flags the seccomp programs are installed with (the same for a fork).
pub const SECCOMP_FLAGS: u32 = 0;

fn install_seccomp(programs: &[Vec<libc::sock_filter>]) -> Done {
    for program in programs {
        let fprog = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: seccomp(2) reads the program through `fprog`, both live for the call (the
        // kernel copies the filter; it never writes through the pointer).
        let installed = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                SECCOMP_FLAGS,
                &fprog as *const libc::sock_fprog,
            )
        };
        check(installed, Step::Seccomp)?;
    }
    Ok(())
}

/// R: becomes an unprivileged user in its own user namespace, takes on the
/// [`RESTRICTIONS`], and returns to let the exec happen.
///
/// # Safety
/// Must run in R, a fresh fork of G, between fork and exec: it changes this process's
/// credentials for good.
unsafe fn runtime_process(plan: &Plan) -> Done {
    // The usual umask for the runtime (G cleared its own to create device nodes).
    // SAFETY: umask(2) only changes this process's file mode mask.
    unsafe { libc::umask(0o022) };
    // SAFETY: setgroups(2) with an empty list reads no memory.
    let dropped = unsafe { libc::setgroups(0, std::ptr::null()) };
    check(dropped.into(), Step::DropGroups)?;
    let gid = plan.host_gid;
    // SAFETY: setresgid(2) with integer arguments.
    let set = unsafe { libc::setresgid(gid, gid, gid) };
    check(set.into(), Step::SetGid)?;
    let uid = plan.host_uid;
    // SAFETY: setresuid(2) with integer arguments.
    let set = unsafe { libc::setresuid(uid, uid, uid) };
    check(set.into(), Step::SetUid)?;
    // Changing uid makes the process undumpable, which would leave /proc/self owned by root
    // and the id maps unwritable.
    // SAFETY: prctl(2) with integer arguments.
    let dumpable = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    check(dumpable.into(), Step::Dumpable)?;
    // SAFETY: unshare(2) gives this single-threaded process a new user namespace.
    let unshared = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
    check(unshared.into(), Step::UserNamespace)?;
    write_file(SETGROUPS, DENY, false, Step::WriteSetgroups)?;
    write_file(UID_MAP, &plan.uid_map, false, Step::WriteUidMap)?;
    write_file(GID_MAP, &plan.gid_map, false, Step::WriteGidMap)?;
    // SAFETY: chdir(2) to a NUL-terminated path owned by the plan.
    let entered = unsafe { libc::chdir(plan.template.workdir.as_ptr()) };
    check(entered.into(), Step::EnterTaskRoot)?;
    for restriction in RESTRICTIONS {
        match restriction {
            // R gave up its own with its uid; those its user namespace gave it, exec clears
            // (it is not that namespace's root). The bounding set stays the namespace's full
            // one, which no_new_privs makes moot.
            Restriction::Capabilities => {}
            Restriction::NoNewPrivs => {
                // SAFETY: prctl(2) with integer arguments.
                let set = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                check(set.into(), Step::NoNewPrivs)?;
            }
            Restriction::Landlock => apply_landlock(&plan.template.landlock)?,
            // Limits come after Landlock: until exec closes them this process holds Gust's
            // descriptors, possibly thousands, and under a 1,024-file limit a new descriptor
            // numbered past it would fail with EMFILE.
            Restriction::Rlimits => set_rlimits(&plan.template.rlimits)?,
            Restriction::Seccomp => install_seccomp(&plan.template.seccomp)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_as_declared() {
        for (index, step) in Step::ALL.iter().enumerate() {
            assert_eq!(*step as usize, index, "{step:?}");
        }
    }

    #[test]
    fn a_report_names_its_step() {
        let mut fds = [0; 2];
        // SAFETY: pipe2(2) writes two descriptors into the array.
        let piped = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) };
        assert_eq!(piped, 0);
        send_report(
            fds[1],
            Failed {
                step: Step::PivotRoot,
                errno: libc::EPERM,
            },
        );
        let (step, error) = read_report(fds[0]).unwrap();
        assert_eq!(step, Step::PivotRoot);
        assert_eq!(error.raw_os_error(), Some(libc::EPERM));
        assert!(read_report(fds[0]).is_none());
        close(fds[0]);
        close(fds[1]);
    }

    #[test]
    fn landlock_rights_grow_with_the_abi() {
        assert_eq!(landlock_handled(0), 0);
        assert_eq!(landlock_handled(1), (1 << 13) - 1);
        assert_eq!(landlock_handled(2), (1 << 14) - 1);
        assert_eq!(landlock_handled(4), (1 << 15) - 1);
        assert_eq!(landlock_handled(7), (1 << 16) - 1);
    }
}
