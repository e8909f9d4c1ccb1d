//! Fitting a sandbox that is already running (one whose runtime was started before its
//! function was known) to its function: its code at `/var/task`; and giving an environment
//! forked from a SnapStart snapshot process or a runtime template its own /tmp (and, from a
//! template, its code).
//!
//! The code directory is cloned as a detached, read-only mount in Gust's own mount namespace
//! (where its host path resolves), and a short-lived thread that has unshared its filesystem
//! context enters the sandbox's mount namespace and attaches the clone at `/var/task`. Nothing
//! runs inside the sandbox and no process is forked.

use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use linux_raw_sys::general::{
    AT_RECURSIVE, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, MOVE_MOUNT_F_EMPTY_PATH,
    OPEN_TREE_CLONE, mount_attr,
};

/// The sandbox's PID 1 (its mount namespace is the sandbox's): the only child of the process
/// Gust started.
fn sandbox_init(runtime_pid: u32) -> io::Result<u32> {
    let children = fs::read_to_string(format!("/proc/{runtime_pid}/task/{runtime_pid}/children"))?;
    children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| io::Error::other("the sandbox has no init process"))
}

/// Clones the mount at `path` (in the calling thread's mount namespace) as a detached tree
/// we own.
fn clone_tree(path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let source = CString::new(path.as_os_str().as_bytes())?;
    let flags = OPEN_TREE_CLONE
        | libc::O_CLOEXEC as libc::c_uint
        | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: open_tree(2) with a NUL-terminated path; the result is a new descriptor we own.
    let tree =
        unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, source.as_ptr(), flags) };
    if tree < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `tree` is a descriptor open_tree just returned to us.
    Ok(unsafe { OwnedFd::from_raw_fd(tree as i32) })
}

/// Attaches the detached `tree` at `target` in the mount namespace of process `pid`, first
/// detaching what is mounted there if `replace`.
fn attach_at(pid: u32, tree: &OwnedFd, target: &CStr, replace: bool) -> io::Result<()> {
    let namespace = fs::File::open(format!("/proc/{pid}/ns/mnt"))?;
    in_mount_namespace(namespace.as_fd(), || {
        // SAFETY: umount2(2) of a NUL-terminated path in this thread's mount namespace.
        if replace && unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: move_mount(2) attaches our detached tree in this thread's mount namespace;
        // the strings are NUL-terminated.
        let moved = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                tree.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        if moved < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    })
}

/// Attaches `code_dir`, read-only, at `/var/task` in the sandbox whose starter is
/// `runtime_pid`.
pub fn mount_task_root(runtime_pid: u32, code_dir: &Path) -> io::Result<()> {
    mount_code(sandbox_init(runtime_pid)?, code_dir)
}

/// Attaches `code_dir`, read-only, at `/var/task` in the mount namespace of process `pid` (an
/// environment forked from a runtime template, which made its namespaces itself).
pub fn mount_code(pid: u32, code_dir: &Path) -> io::Result<()> {
    let tree = clone_tree(code_dir, true)?;
    let attr = mount_attr {
        attr_set: u64::from(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV),
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr(2) on our detached tree with a properly sized attribute struct.
    let set = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &attr as *const mount_attr,
            std::mem::size_of::<mount_attr>(),
        )
    };
    if set < 0 {
        return Err(io::Error::last_os_error());
    }
    attach_at(pid, &tree, c"/var/task", false)
}

/// Mounts the /tmp volume held in `volume_namespace` (at `mount_point` there) over `/tmp` in
/// the mount namespace of process `pid`: an environment forked from a SnapStart snapshot
/// process made its namespaces itself, and gets its own disk-backed /tmp this way before it
/// copies into it what init left in the snapshot's. (The snapshot's /tmp stays beneath: it
/// came into the environment's namespaces locked.)
pub fn mount_tmp_volume(
    pid: u32,
    volume_namespace: BorrowedFd<'_>,
    mount_point: &Path,
) -> io::Result<()> {
    let tree = in_mount_namespace(volume_namespace, || clone_tree(mount_point, false))?;
    attach_at(pid, &tree, c"/tmp", false)
}

/// Replaces the /tmp of the sandbox whose starter is `runtime_pid` with the volume held in
/// `volume_namespace` (a sandbox started ahead whose function wants another /tmp size).
pub fn replace_tmp(
    runtime_pid: u32,
    volume_namespace: BorrowedFd<'_>,
    mount_point: &Path,
) -> io::Result<()> {
    let tree = in_mount_namespace(volume_namespace, || clone_tree(mount_point, false))?;
    attach_at(sandbox_init(runtime_pid)?, &tree, c"/tmp", true)
}

/// Runs `work` on a short-lived thread that has entered the mount `namespace` (a thread,
/// since entering one changes the caller's view of the filesystem).
fn in_mount_namespace<T: Send>(
    namespace: BorrowedFd<'_>,
    work: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: unshare(2) gives only this thread its own filesystem context (which
                // entering a mount namespace requires).
                if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: setns(2) moves only this thread, which ends right after `work`, into
                // the namespace `namespace` keeps open.
                if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNS) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                work()
            })
            .join()
            .map_err(|_| io::Error::other("the mount thread panicked"))?
    })
}
