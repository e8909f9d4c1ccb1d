//! The seccomp filters every runtime runs under.
//!
//! A deny list, not an allow list: runtimes and the libraries functions bring need a wide and
//! changing set of system calls, while what a function has no business doing is short and
//! stable — changing mounts and namespaces, tracing, loading kernel code, administering the
//! machine. Denied calls fail with EPERM; `clone3` fails with ENOSYS so that the C library
//! falls back to `clone`, whose namespace flags the filter can inspect.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// System calls refused outright.
const DENIED: &[i64] = &[
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_bpf,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_perf_event_open,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    libc::SYS_syslog,
    libc::SYS_quotactl,
    libc::SYS_vhangup,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_userfaultfd,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
];

/// `clone` flags that would create namespaces.
const NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

fn arch() -> TargetArch {
    #[cfg(target_arch = "aarch64")]
    {
        TargetArch::aarch64
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        TargetArch::x86_64
    }
}

/// What a SnapStart snapshot process may do beyond a runtime: each environment it forks
/// makes its own namespaces (`unshare`) and mounts its own /proc, /tmp and /dev/shm in them,
/// before it installs [`programs`] on top of these.
const SNAPSHOT_ALLOWED: &[i64] = &[libc::SYS_unshare, libc::SYS_mount];

/// The compiled filters, in the order they are installed.
pub fn programs() -> Result<Vec<Vec<libc::sock_filter>>, seccompiler::Error> {
    compile(DENIED)
}

/// The filters of a snapshot process.
pub fn snapshot_programs() -> Result<Vec<Vec<libc::sock_filter>>, seccompiler::Error> {
    let denied: Vec<i64> = DENIED
        .iter()
        .copied()
        .filter(|nr| !SNAPSHOT_ALLOWED.contains(nr))
        .collect();
    compile(&denied)
}

fn compile(denied_calls: &[i64]) -> Result<Vec<Vec<libc::sock_filter>>, seccompiler::Error> {
    let mut denied: BTreeMap<i64, Vec<SeccompRule>> =
        denied_calls.iter().map(|nr| (*nr, Vec::new())).collect();
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|flag| {
            SeccompRule::new(vec![SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(*flag),
                *flag,
            )?])
        })
        .collect::<Result<Vec<_>, _>>()?;
    denied.insert(libc::SYS_clone, clone_rules);
    let deny = SeccompFilter::new(
        denied,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch(),
    )?;
    let no_clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch(),
    )?;
    let programs: Vec<BpfProgram> = vec![deny.try_into()?, no_clone3.try_into()?];
    Ok(programs
        .into_iter()
        .map(|program| {
            program
                .into_iter()
                .map(|i| libc::sock_filter {
                    code: i.code,
                    jt: i.jt,
                    jf: i.jf,
                    k: i.k,
                })
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn filters_compile() {
        let programs = super::programs().unwrap();
        assert_eq!(programs.len(), 2);
        assert!(programs.iter().all(|p| !p.is_empty()));
        let snapshot = super::snapshot_programs().unwrap();
        assert_eq!(snapshot.len(), 2);
        assert!(snapshot[0].len() < programs[0].len());
    }
}
