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

use std::ffi::CString;
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

const SETGROUPS: &[u8] = b"/proc/self/setgroups\0";
const UID_MAP: &[u8] = b"/proc/self/uid_map\0";
const GID_MAP: &[u8] = b"/proc/self/gid_map\0";
const DENY: &[u8] = b"deny";

/// Reports a failed step on stderr (which feeds the function's log) and returns its error.
fn fail(step: &'static [u8]) -> io::Error {
    let error = io::Error::last_os_error();
    const PREFIX: &[u8] = b"gust sandbox: ";
    const SUFFIX: &[u8] = b" failed\n";
    // SAFETY: write(2) of static buffers to stderr; async-signal-safe.
    unsafe {
        libc::write(2, PREFIX.as_ptr().cast(), PREFIX.len());
        libc::write(2, step.as_ptr().cast(), step.len());
        libc::write(2, SUFFIX.as_ptr().cast(), SUFFIX.len());
    }
    error
}

fn check(result: libc::c_long, step: &'static [u8]) -> io::Result<libc::c_long> {
    if result < 0 {
        Err(fail(step))
    } else {
        Ok(result)
    }
}

fn cstr(bytes: &[u8]) -> *const libc::c_char {
    bytes.as_ptr().cast()
}

/// Writes a whole buffer to a file, creating it if asked.
fn write_file(
    path: *const libc::c_char,
    contents: &[u8],
    create: bool,
    step: &'static [u8],
) -> io::Result<()> {
    let flags = libc::O_WRONLY
        | libc::O_CLOEXEC
        | if create {
            libc::O_CREAT | libc::O_TRUNC
        } else {
            0
        };
    // SAFETY: `path` is a NUL-terminated string owned by the plan or a static.
    let fd = check(
        unsafe { libc::open(path, flags, 0o644) } as libc::c_long,
        step,
    )? as RawFd;
    let mut written = 0;
    while written < contents.len() {
        // SAFETY: the slice bounds are checked by the loop.
        let n = unsafe {
            libc::write(
                fd,
                contents[written..].as_ptr().cast(),
                contents.len() - written,
            )
        };
        if n < 0 {
            let e = fail(step);
            // SAFETY: closing a descriptor we opened.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        written += n as usize;
    }
    // SAFETY: closing a descriptor we opened.
    unsafe { libc::close(fd) };
    Ok(())
}

fn mount(
    source: *const libc::c_char,
    target: *const libc::c_char,
    fstype: *const libc::c_char,
    flags: libc::c_ulong,
    data: *const libc::c_char,
    step: &'static [u8],
) -> io::Result<()> {
    // SAFETY: all pointers are NUL-terminated strings owned by the plan, statics, or null.
    let mounted = unsafe { libc::mount(source, target, fstype, flags, data.cast()) };
    check(mounted as libc::c_long, step)?;
    Ok(())
}

/// Closes every descriptor from 3 up except the two in `keep`.
fn close_all_except(keep: [RawFd; 2]) {
    let (low, high) = (keep[0].min(keep[1]), keep[0].max(keep[1]));
    let mut from = 3;
    for fd in [low, high] {
        if fd > from {
            // SAFETY: close_range(2) closes descriptors of this process only.
            unsafe { libc::syscall(libc::SYS_close_range, from as u32, (fd - 1) as u32, 0u32) };
        }
        from = from.max(fd + 1);
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, from as u32, u32::MAX, 0u32) };
}

/// The first child (C): namespaces, then fork; C itself only waits and mirrors the result.
///
/// # Safety
/// Must run in a freshly forked child, between fork and exec.
pub unsafe fn child(plan: &Plan) -> io::Result<()> {
    // SAFETY: (the whole function) system calls on descriptors and strings prepared in the plan.
    unsafe {
        check(
            libc::setns(plan.netns, libc::CLONE_NEWNET) as libc::c_long,
            b"joining the network namespace",
        )?;
        check(
            libc::setns(plan.mount_namespace, libc::CLONE_NEWNS) as libc::c_long,
            b"joining the mount namespace",
        )?;
        for fd in &plan.cgroup_procs {
            check(
                libc::write(*fd, b"0".as_ptr().cast(), 1) as libc::c_long,
                b"joining the cgroup",
            )?;
        }
        check(
            libc::unshare(
                libc::CLONE_NEWNS
                    | libc::CLONE_NEWUTS
                    | libc::CLONE_NEWIPC
                    | libc::CLONE_NEWPID
                    | libc::CLONE_NEWCGROUP,
            ) as libc::c_long,
            b"creating namespaces",
        )?;
        let mut status_pipe = [0 as RawFd; 2];
        check(
            libc::pipe2(status_pipe.as_mut_ptr(), libc::O_CLOEXEC) as libc::c_long,
            b"creating the status pipe",
        )?;
        let [status_read, status_write] = status_pipe;
        let init = check(libc::fork() as libc::c_long, b"forking the sandbox init")? as libc::pid_t;
        if init == 0 {
            libc::close(status_read);
            // C is single-threaded, so this fires exactly when C dies.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            return init_process(plan, status_write);
        }
        libc::close(status_write);
        close_all_except([status_read, plan.template.lifeline]);
        mirror(init, status_read, plan.template.lifeline)
    }
}

/// C: waits for the runtime's wait status (sent by G) and exits the same way. If Gust dies
/// first (its end of the lifeline closes), C kills G and with it the whole sandbox.
unsafe fn mirror(init: libc::pid_t, status_read: RawFd, lifeline: RawFd) -> ! {
    // SAFETY: (the whole function) plain system calls on our own descriptors and processes.
    unsafe {
        let mut status: libc::c_int = 0;
        let mut got = 0usize;
        let buffer = &mut status as *mut libc::c_int as *mut u8;
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
            if libc::poll(fds.as_mut_ptr(), 2, -1) < 0 {
                if *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                break;
            }
            if fds[1].revents != 0 {
                libc::kill(init, libc::SIGKILL);
                break;
            }
            if fds[0].revents == 0 {
                continue;
            }
            let n = libc::read(status_read, buffer.add(got).cast(), 4 - got);
            if n > 0 {
                got += n as usize;
                if got == 4 {
                    break;
                }
            } else if n == 0 || *libc::__errno_location() != libc::EINTR {
                break;
            }
        }
        let mut init_status: libc::c_int = 0;
        while libc::waitpid(init, &mut init_status, 0) < 0
            && *libc::__errno_location() == libc::EINTR
        {}
        if got < 4 {
            // G died without reporting: it was killed (the environment is being reset).
            status = if libc::WIFSIGNALED(init_status) {
                init_status
            } else {
                libc::SIGKILL
            };
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
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
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(signal, libc::SIG_DFL);
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        libc::kill(libc::getpid(), signal);
        libc::_exit(128 + signal)
    }
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
unsafe fn rename_init(region: Option<(usize, usize)>) {
    // SAFETY: the region is this process's own argument area on its stack, copied by fork;
    // nothing in this process reads it any more.
    unsafe {
        if let Some((start, end)) = region {
            let len = end - start;
            std::ptr::write_bytes(start as *mut u8, 0, len);
            if len >= INIT_COMMAND_LINE.len() {
                std::ptr::copy_nonoverlapping(
                    INIT_COMMAND_LINE.as_ptr(),
                    start as *mut u8,
                    INIT_COMMAND_LINE.len(),
                );
            }
        }
        libc::prctl(libc::PR_SET_NAME, c"init".as_ptr(), 0, 0, 0);
    }
}

/// G: PID 1 of the sandbox. Builds the filesystem, starts the runtime, reaps.
unsafe fn init_process(plan: &Plan, status_write: RawFd) -> io::Result<()> {
    // SAFETY: (the whole function) system calls on strings and descriptors prepared in the plan.
    unsafe {
        rename_init(plan.template.command_line);
        // Modes are given explicitly; Gust's umask must not narrow /dev/null's 0666.
        libc::umask(0);
        build_root(plan)?;
        let runtime = check(libc::fork() as libc::c_long, b"forking the runtime")? as libc::pid_t;
        if runtime == 0 {
            libc::close(status_write);
            return runtime_process(plan);
        }
        close_all_except([status_write, status_write]);
        loop {
            let mut status: libc::c_int = 0;
            let pid = libc::waitpid(-1, &mut status, 0);
            if pid == runtime {
                libc::write(status_write, (&status as *const libc::c_int).cast(), 4);
                libc::_exit(0);
            }
            if pid < 0 && *libc::__errno_location() == libc::ECHILD {
                libc::_exit(0);
            }
        }
    }
}

/// G: mounts the sandbox's root and pivots into it.
unsafe fn build_root(plan: &Plan) -> io::Result<()> {
    let null = std::ptr::null();
    mount(
        null,
        cstr(b"/\0"),
        null,
        libc::MS_REC | libc::MS_PRIVATE,
        null,
        b"making mounts private",
    )?;
    mount(
        cstr(b"tmpfs\0"),
        plan.template.root.as_ptr(),
        cstr(b"tmpfs\0"),
        libc::MS_NOSUID | libc::MS_NODEV,
        plan.template.root_options.as_ptr(),
        b"mounting the root",
    )?;
    for op in plan.template.ops.iter().chain(&plan.ops) {
        // SAFETY: all paths are NUL-terminated strings owned by the plan.
        unsafe {
            match op {
                Op::Mkdir(path) => {
                    if libc::mkdir(path.as_ptr(), 0o755) < 0
                        && *libc::__errno_location() != libc::EEXIST
                    {
                        return Err(fail(b"creating a directory"));
                    }
                }
                Op::Symlink { target, link } => {
                    check(
                        libc::symlink(target.as_ptr(), link.as_ptr()) as libc::c_long,
                        b"creating a symbolic link",
                    )?;
                }
                Op::File { path, contents } => {
                    write_file(path.as_ptr(), contents, true, b"writing a file")?
                }
                Op::CharDevice { path, device } => {
                    check(
                        libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, *device) as libc::c_long,
                        b"creating a device node",
                    )?;
                }
                Op::Bind {
                    source,
                    target,
                    read_only,
                } => {
                    mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        null,
                        libc::MS_BIND | libc::MS_REC,
                        null,
                        b"bind mount",
                    )?;
                    if *read_only {
                        mount(
                            null,
                            target.as_ptr(),
                            null,
                            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID,
                            null,
                            b"read-only remount",
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
                        cstr(b"tmpfs\0"),
                        target.as_ptr(),
                        cstr(b"tmpfs\0"),
                        libc::MS_NOSUID | nodev,
                        options.as_ptr(),
                        b"mounting a tmpfs",
                    )?;
                }
                Op::RemountReadOnly(target) => {
                    mount(
                        null,
                        target.as_ptr(),
                        null,
                        libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID,
                        null,
                        b"read-only remount",
                    )?;
                }
            }
        }
    }
    mount(
        cstr(b"proc\0"),
        plan.template.proc_dir.as_ptr(),
        cstr(b"proc\0"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        null,
        b"mounting /proc",
    )?;
    // SAFETY: plain system calls with plan-owned strings.
    unsafe {
        check(
            libc::sethostname(
                plan.template.hostname.as_ptr(),
                plan.template.hostname.as_bytes().len(),
            ) as libc::c_long,
            b"setting the hostname",
        )?;
        check(
            libc::chdir(plan.template.root.as_ptr()) as libc::c_long,
            b"entering the root",
        )?;
        check(
            libc::syscall(libc::SYS_pivot_root, cstr(b".\0"), cstr(b".\0")),
            b"pivot_root",
        )?;
        check(
            libc::umount2(cstr(b".\0"), libc::MNT_DETACH) as libc::c_long,
            b"detaching the old root",
        )?;
        check(libc::chdir(cstr(b"/\0")) as libc::c_long, b"entering /")?;
    }
    mount(
        null,
        cstr(b"/\0"),
        null,
        libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        null,
        b"making the root read-only",
    )?;
    Ok(())
}

/// Landlock's extensible structures.
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
const LANDLOCK_RULE_PATH_BENEATH: u32 = 1;

/// The filesystem rights Landlock knows at each ABI version.
pub fn landlock_handled(abi: i64) -> u64 {
    match abi {
        ..=0 => 0,
        1 => (1 << 13) - 1,
        2 => (1 << 14) - 1,
        3 | 4 => (1 << 15) - 1,
        _ => (1 << 16) - 1,
    }
}

/// The Landlock ABI this kernel offers (0 when it has none).
pub fn landlock_abi() -> i64 {
    // SAFETY: the version query takes no pointers.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    abi.max(0)
}

unsafe fn apply_landlock(rules: &[LandlockRule]) -> io::Result<()> {
    let handled = landlock_handled(landlock_abi());
    if handled == 0 || rules.is_empty() {
        return Ok(());
    }
    let attr = RulesetAttr {
        handled_access_fs: handled,
    };
    // SAFETY: (the whole block) Landlock system calls with structures we own.
    unsafe {
        let ruleset = check(
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                std::mem::size_of::<RulesetAttr>(),
                0u32,
            ),
            b"creating the Landlock ruleset",
        )? as RawFd;
        for rule in rules {
            let fd = libc::open(rule.path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
            if fd < 0 {
                continue;
            }
            let beneath = PathBeneathAttr {
                allowed_access: rule.access & handled,
                parent_fd: fd,
            };
            let added = libc::syscall(
                libc::SYS_landlock_add_rule,
                ruleset,
                LANDLOCK_RULE_PATH_BENEATH,
                &beneath as *const PathBeneathAttr,
                0u32,
            );
            libc::close(fd);
            check(added, b"adding a Landlock rule")?;
        }
        check(
            libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32),
            b"applying Landlock",
        )?;
        libc::close(ruleset);
    }
    Ok(())
}

/// R: becomes an unprivileged user in its own user namespace, limits itself, and returns to
/// let the exec happen.
unsafe fn runtime_process(plan: &Plan) -> io::Result<()> {
    // SAFETY: (the whole function) system calls with values and strings prepared in the plan.
    unsafe {
        // The usual umask for the runtime (G cleared its own to create device nodes).
        libc::umask(0o022);
        check(
            libc::setgroups(0, std::ptr::null()) as libc::c_long,
            b"dropping groups",
        )?;
        check(
            libc::setresgid(plan.host_gid, plan.host_gid, plan.host_gid) as libc::c_long,
            b"setting the gid",
        )?;
        check(
            libc::setresuid(plan.host_uid, plan.host_uid, plan.host_uid) as libc::c_long,
            b"setting the uid",
        )?;
        // Changing uid makes the process undumpable, which would leave /proc/self owned by
        // root and the id maps unwritable.
        check(
            libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) as libc::c_long,
            b"prctl(PR_SET_DUMPABLE)",
        )?;
        check(
            libc::unshare(libc::CLONE_NEWUSER) as libc::c_long,
            b"creating the user namespace",
        )?;
        write_file(cstr(SETGROUPS), DENY, false, b"writing setgroups")?;
        write_file(cstr(UID_MAP), &plan.uid_map, false, b"writing uid_map")?;
        write_file(cstr(GID_MAP), &plan.gid_map, false, b"writing gid_map")?;
        check(
            libc::chdir(plan.template.workdir.as_ptr()) as libc::c_long,
            b"entering the task root",
        )?;
        check(
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) as libc::c_long,
            b"prctl(PR_SET_NO_NEW_PRIVS)",
        )?;
        apply_landlock(&plan.template.landlock)?;
        // Limits come last: until exec closes them this process holds Gust's descriptors,
        // possibly thousands, and under a 1,024-file limit a new descriptor numbered past
        // it would fail with EMFILE.
        for (resource, value) in &plan.template.rlimits {
            let limit = libc::rlimit {
                rlim_cur: *value,
                rlim_max: *value,
            };
            check(
                libc::setrlimit(*resource, &limit) as libc::c_long,
                b"setting a resource limit",
            )?;
        }
        for program in &plan.template.seccomp {
            let fprog = libc::sock_fprog {
                len: program.len() as u16,
                filter: program.as_ptr() as *mut libc::sock_filter,
            };
            check(
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0u32,
                    &fprog as *const libc::sock_fprog,
                ),
                b"installing the seccomp filter",
            )?;
        }
    }
    Ok(())
}
