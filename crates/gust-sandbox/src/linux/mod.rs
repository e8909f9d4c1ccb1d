//! The Linux sandbox: every execution environment in its own user, PID, mount, IPC, UTS, cgroup
//! and network namespaces, as an unprivileged user with no capabilities, under seccomp and
//! Landlock, with cgroup limits on memory, processes and CPU — built from kernel primitives,
//! without a container runtime.

pub mod cgroup;
mod confinement;
pub mod egress;
mod late_mount;
mod netns;
pub mod seccomp;
mod spawn;
pub mod tmp_volume;

use std::ffi::{CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::RUNTIME_API_ADDRESS;
use crate::{
    Confinement, Isolation, Launcher, ProcessSpec, Sandbox, SandboxError, SandboxSpec, Spawned,
    TmpCount,
};
use cgroup::{Cgroups, EnvironmentGroup, Limits};
use netns::NetworkFactory;
use spawn::{LandlockRule, Op, Plan, Template};
pub use tmp_volume::TmpPolicy;
use tmp_volume::TmpVolumes;

pub(crate) use confinement::kernel as confinement_kernel;

/// The user and group a function runs as inside its sandbox (Lambda's `sbx_user1051`).
const SANDBOX_UID: u32 = 993;
const SANDBOX_GID: u32 = 990;
/// Host ids given to sandboxes: one per environment, above the usual system and user ranges,
/// and in a block of their own for each Gust server on the host (by process id), so that no
/// two live environments share a uid and with it RLIMIT_NPROC or the right to signal.
const HOST_ID_BASE: u32 = 1 << 20;
const HOST_ID_SPAN: u32 = 1 << 16;
const HOST_ID_BLOCKS: u32 = 4096;
static NEXT_HOST_ID: AtomicU32 = AtomicU32::new(0);
/// Lambda's limits on open files and on processes and threads.
const MAX_FILES: u64 = 1024;
const MAX_PROCESSES: u32 = 1024;
/// Network namespaces (and /tmp volumes) kept ready.
pub const READY_NAMESPACES: usize = 8;

const PASSWD: &[u8] = b"root:x:0:0:root:/root:/usr/sbin/nologin\nsbx_user1051:x:993:990::/tmp:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const GROUP: &[u8] = b"root:x:0:\nsbx_user1051:x:990:\nnogroup:x:65534:\n";
const HOSTS: &[u8] = b"127.0.0.1\tlocalhost sandbox sandbox.localdomain\n::1\tlocalhost ip6-localhost ip6-loopback\n";
/// Host files a runtime may need from /etc: name resolution, the dynamic linker's cache,
/// certificates.
const ETC_FILES: &[&str] = &[
    "resolv.conf",
    "nsswitch.conf",
    "ld.so.cache",
    "host.conf",
    "gai.conf",
    "localtime",
];
const ETC_DIRS: &[&str] = &["ssl", "ca-certificates", "pki", "alternatives"];
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
/// Top-level directories of the host that hold programs and libraries.
const SYSTEM_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// The Landlock rights Gust grants by name (the kernel's uapi values).
const LL_EXECUTE: u64 = linux_raw_sys::landlock::LANDLOCK_ACCESS_FS_EXECUTE as u64;
const LL_WRITE_FILE: u64 = linux_raw_sys::landlock::LANDLOCK_ACCESS_FS_WRITE_FILE as u64;
const LL_READ_FILE: u64 = linux_raw_sys::landlock::LANDLOCK_ACCESS_FS_READ_FILE as u64;
const LL_READ_DIR: u64 = linux_raw_sys::landlock::LANDLOCK_ACCESS_FS_READ_DIR as u64;
const LL_TRUNCATE: u64 = linux_raw_sys::landlock::LANDLOCK_ACCESS_FS_TRUNCATE as u64;
const LL_IOCTL_DEV: u64 = linux_raw_sys::landlock::LANDLOCK_ACCESS_FS_IOCTL_DEV as u64;

fn cstring(path: &Path) -> CString {
    // Paths from the filesystem never contain NUL bytes.
    CString::new(path.as_os_str().as_bytes()).unwrap_or_default()
}

fn io_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// How a top-level system directory appears on this host.
#[derive(Debug, Clone)]
enum SystemDir {
    Directory(&'static str),
    Link(&'static str, PathBuf),
}

/// Launches environments in Linux sandboxes. Needs root (or equivalent capabilities).
pub struct LinuxLauncher {
    /// Where each environment mounts its /tmp in its own mount namespace (one directory for
    /// all: nothing is created or removed on the host's filesystem per environment).
    tmp_mount_point: PathBuf,
    /// Each environment's /tmp, a disk-backed filesystem of its own.
    tmp_volumes: Arc<TmpVolumes>,
    cgroups: Cgroups,
    network: NetworkFactory,
    landlock_abi: i64,
    system_dirs: Vec<SystemDir>,
    /// What every sandbox's start shares, prepared once.
    template: Arc<Template>,
    /// The same for SnapStart snapshot processes (see [`SandboxSpec::zygote`]).
    snapshot_template: Arc<Template>,
    egress: Arc<egress::Egress>,
    /// A pipe whose write end only this process holds: sandboxes die with Gust.
    _lifeline: (OwnedFd, OwnedFd),
}

/// The default bound on what live environments' /tmp counts for: four times the space free
/// where their images are kept when Gust starts. The images are sparse, so under the reserved
/// policy this bounds what environments may write, not what they hold; under the measured
/// one, what idle environments hold plus the full sizes of running ones. Either way the
/// reserve of free space kept for the host (see [`tmp_volume`]) guards the disk itself.
pub fn default_tmp_budget_mb(dir: &Path) -> io::Result<u64> {
    let (_, free) = tmp_volume::disk_space_mb(dir)?;
    Ok(free * 4)
}

/// Makes the kernel's RCU grace periods expedited (`/sys/kernel/rcu_expedited`), host-wide.
///
/// Moving a process into a cgroup waits for a grace period, which is what the slowest
/// sandbox starts spend most of their time on (p99 about 20 ms instead of 5 on the benchmark
/// machine). Expedited grace periods cost the other CPUs an interrupt each, so this is the
/// operator's choice (`gust serve --expedite-rcu`), not a default. Returns the previous value.
pub fn expedite_rcu(on: bool) -> io::Result<bool> {
    const KNOB: &str = "/sys/kernel/rcu_expedited";
    let before = fs::read_to_string(KNOB)?.trim() != "0";
    fs::write(KNOB, if on { "1" } else { "0" })?;
    Ok(before)
}

/// The steps every sandbox's root shares: the host's system directories, a minimal /etc
/// (the host's files copied when Gust starts: a write costs less than a bind mount and its
/// read-only remount), mount points, and /dev with its device nodes.
fn root_ops(root: &Path, system_dirs: &[SystemDir]) -> Vec<Op> {
    let at = |rel: &str| cstring(&root.join(rel));
    let mut ops = Vec::new();
    for dir in system_dirs {
        match dir {
            SystemDir::Link(name, target) => ops.push(Op::Symlink {
                target: cstring(target),
                link: at(name),
            }),
            SystemDir::Directory(name) => {
                ops.push(Op::Mkdir(at(name)));
                ops.push(Op::Bind {
                    source: cstring(&Path::new("/").join(name)),
                    target: at(name),
                    read_only: true,
                });
            }
        }
    }
    ops.push(Op::Mkdir(at("etc")));
    ops.push(Op::File {
        path: at("etc/passwd"),
        contents: PASSWD.to_vec(),
    });
    ops.push(Op::File {
        path: at("etc/group"),
        contents: GROUP.to_vec(),
    });
    ops.push(Op::File {
        path: at("etc/hosts"),
        contents: HOSTS.to_vec(),
    });
    // Copied rather than bound: a file write costs less than a bind mount and its
    // read-only remount.
    for name in ETC_FILES {
        if let Ok(contents) = fs::read(Path::new("/etc").join(name)) {
            ops.push(Op::File {
                path: at(&format!("etc/{name}")),
                contents,
            });
        }
    }
    for name in ETC_DIRS {
        let host = Path::new("/etc").join(name);
        if host.is_dir() {
            let target = at(&format!("etc/{name}"));
            ops.push(Op::Mkdir(target.clone()));
            ops.push(Op::Bind {
                source: cstring(&host),
                target,
                read_only: true,
            });
        }
    }
    for dir in [
        "var",
        "var/task",
        "var/runtime",
        "opt",
        "tmp",
        "proc",
        "dev",
    ] {
        ops.push(Op::Mkdir(at(dir)));
    }
    ops.push(Op::Tmpfs {
        target: at("dev"),
        options: c"mode=755,size=64k".to_owned(),
        devices: true,
    });
    for name in DEVICES {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if let Ok(meta) = fs::metadata(Path::new("/dev").join(name))
            && meta.file_type().is_char_device()
        {
            ops.push(Op::CharDevice {
                path: at(&format!("dev/{name}")),
                device: meta.rdev(),
            });
        }
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(Op::Symlink {
            target: CString::new(target).unwrap_or_default(),
            link: at(&format!("dev/{link}")),
        });
    }
    ops.push(Op::Mkdir(at("dev/shm")));
    ops.push(Op::RemountReadOnly(at("dev")));
    ops
}

/// Read and execute everywhere; write only where a function may.
fn landlock_rules() -> Vec<LandlockRule> {
    let all = u64::MAX;
    vec![
        LandlockRule {
            path: c"/".to_owned(),
            access: LL_EXECUTE | LL_READ_FILE | LL_READ_DIR,
        },
        LandlockRule {
            path: c"/tmp".to_owned(),
            access: all,
        },
        LandlockRule {
            path: c"/dev/shm".to_owned(),
            access: all,
        },
        LandlockRule {
            path: c"/dev".to_owned(),
            access: LL_WRITE_FILE | LL_READ_FILE | LL_READ_DIR | LL_TRUNCATE | LL_IOCTL_DEV,
        },
        LandlockRule {
            path: c"/proc".to_owned(),
            access: LL_WRITE_FILE | LL_READ_FILE | LL_READ_DIR | LL_TRUNCATE,
        },
    ]
}

impl LinuxLauncher {
    /// Prepares cgroups, the namespace factory, /tmp volumes and the filters. Fails with a
    /// clear reason when the host does not let Gust isolate functions.
    pub fn new(environments_dir: impl Into<PathBuf>) -> io::Result<Self> {
        Self::with_ready_namespaces(environments_dir, READY_NAMESPACES)
    }

    /// Like [`new`](Self::new), keeping `ready` network namespaces and /tmp volumes prepared
    /// in advance (0: each is made when an environment needs it, which the benchmarks compare
    /// against).
    pub fn with_ready_namespaces(
        environments_dir: impl Into<PathBuf>,
        ready: usize,
    ) -> io::Result<Self> {
        Self::with_options(environments_dir, ready, None, TmpPolicy::default())
    }

    /// Like [`with_ready_namespaces`](Self::with_ready_namespaces), with a bound on what live
    /// environments' /tmp counts for (MB; default: [`default_tmp_budget_mb`]) and what an
    /// idle one counts for.
    pub fn with_options(
        environments_dir: impl Into<PathBuf>,
        ready: usize,
        tmp_budget_mb: Option<u64>,
        tmp_policy: TmpPolicy,
    ) -> io::Result<Self> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the Linux sandbox needs root (it creates namespaces, cgroups and mounts)",
            ));
        }
        let environments_dir = environments_dir.into();
        if environments_dir.exists() {
            fs::remove_dir_all(&environments_dir)?;
        }
        fs::create_dir_all(&environments_dir)?;
        let cgroups = Cgroups::setup()?;
        let network = NetworkFactory::start(ready)?;
        let system_dirs: Vec<SystemDir> = SYSTEM_DIRS
            .iter()
            .filter_map(|name| {
                let host = Path::new("/").join(name);
                let meta = fs::symlink_metadata(&host).ok()?;
                if meta.file_type().is_symlink() {
                    Some(SystemDir::Link(name, fs::read_link(&host).ok()?))
                } else if meta.is_dir() {
                    Some(SystemDir::Directory(name))
                } else {
                    None
                }
            })
            .collect();
        // Every sandbox mounts its root on this one directory, each in its own mount
        // namespace, so the root's paths are the same for all and prepared once.
        let root = environments_dir.join("root");
        fs::create_dir_all(&root)?;
        let tmp_mount_point = environments_dir.join("tmp");
        fs::create_dir_all(&tmp_mount_point)?;
        let images = environments_dir.join("tmp-images");
        let tmp_budget_mb = match tmp_budget_mb {
            Some(mb) => mb,
            None => default_tmp_budget_mb(&environments_dir)?,
        };
        let tmp_volumes = Arc::new(TmpVolumes::start(
            images,
            tmp_mount_point.clone(),
            tmp_budget_mb,
            tmp_policy,
            ready,
        )?);
        let lifeline = {
            let (read, write) = io::pipe()?;
            (OwnedFd::from(read), OwnedFd::from(write))
        };
        let template = |landlock, seccomp, max_processes: u64| Template {
            lifeline: lifeline.0.as_raw_fd(),
            root: cstring(&root),
            root_options: c"mode=755,size=2m".to_owned(),
            ops: root_ops(&root, &system_dirs),
            proc_dir: cstring(&root.join("proc")),
            hostname: c"sandbox".to_owned(),
            command_line: spawn::command_line_region(),
            workdir: c"/var/task".to_owned(),
            rlimits: vec![
                (libc::RLIMIT_NOFILE, MAX_FILES),
                (libc::RLIMIT_NPROC, max_processes),
            ],
            landlock,
            seccomp,
        };
        // A process's RLIMIT_NPROC also bounds, at its user namespace's level, every process
        // of the namespaces it creates (the kernel counts them per namespace and uid, up the
        // tree). Environments forked from a snapshot process or a template all sit in
        // namespaces below it, so it keeps the server's own limit; each fork limits itself as
        // every sandbox is limited, and the pids cgroup bounds the parent itself.
        let snapshot_template = Arc::new(template(
            Vec::new(),
            seccomp::snapshot_programs().map_err(io_error)?,
            own_process_limit()?,
        ));
        let template = Arc::new(template(
            landlock_rules(),
            seccomp::programs().map_err(io_error)?,
            u64::from(MAX_PROCESSES),
        ));
        Ok(Self {
            tmp_mount_point,
            tmp_volumes,
            cgroups,
            network,
            landlock_abi: spawn::landlock_abi(),
            system_dirs,
            template,
            snapshot_template,
            egress: Arc::new(egress::Egress::new()),
            _lifeline: lifeline,
        })
    }

    /// What the log says about the sandbox's building blocks.
    pub fn describe(&self) -> String {
        let landlock = if self.landlock_abi > 0 {
            format!("Landlock ABI {}", self.landlock_abi)
        } else {
            "no Landlock (kernel without it)".into()
        };
        let (_, tmp_budget) = self.tmp_volumes.usage();
        format!(
            "{}; seccomp; {landlock}; /tmp on disk, up to {tmp_budget} MB in all",
            self.cgroups.describe()
        )
    }

    /// This environment's own steps, after the template's: its code, Gust's bootstraps, its
    /// /tmp and shared memory, and interpreters installed outside the system directories.
    fn environment_ops(&self, spec: &SandboxSpec, tmp: &Path) -> Vec<Op> {
        let root = Path::new(OsStr::from_bytes(self.template.root.as_bytes()));
        let at = |rel: &str| cstring(&root.join(rel));
        let mut ops = vec![
            Op::Bind {
                source: cstring(&spec.code_dir),
                target: at("var/task"),
                read_only: true,
            },
            Op::Bind {
                source: cstring(&spec.runtime_dir),
                target: at("var/runtime"),
                read_only: true,
            },
            Op::Bind {
                source: cstring(tmp),
                target: at("tmp"),
                read_only: false,
            },
            Op::Tmpfs {
                target: at("dev/shm"),
                options: CString::new(format!(
                    "mode=1777,size={}m",
                    spec.ephemeral_storage_mb.min(512)
                ))
                .unwrap_or_default(),
                devices: false,
            },
        ];
        for extra in &spec.read_only_paths {
            let covered = self.system_dirs.iter().any(|d| match d {
                SystemDir::Directory(name) | SystemDir::Link(name, _) => {
                    extra.starts_with(Path::new("/").join(name))
                }
            });
            if covered || !extra.is_absolute() {
                continue;
            }
            let mut partial = PathBuf::from("/");
            for component in extra.components().skip(1) {
                partial.push(component);
                ops.push(Op::Mkdir(cstring(
                    &root.join(partial.strip_prefix("/").unwrap_or(&partial)),
                )));
            }
            ops.push(Op::Bind {
                source: cstring(extra),
                target: cstring(&root.join(extra.strip_prefix("/").unwrap_or(extra))),
                read_only: true,
            });
        }
        ops
    }
}

/// This process's own hard RLIMIT_NPROC (what a sandbox may keep without privileges).
fn own_process_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one rlimit struct into `limit`, which we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit.rlim_max)
}

/// A pipe for a child's report of a failed step: both ends close on exec, and reading never
/// blocks (the report, if any, is written before the spawn returns).
fn report_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) writes two new descriptors into the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just made, and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Launcher for LinuxLauncher {
    fn isolation(&self) -> Isolation {
        Isolation::Linux
    }

    fn starts_ahead(&self) -> bool {
        true
    }

    fn tmp_usage(&self) -> Option<(u64, u64)> {
        Some(self.tmp_volumes.usage())
    }

    fn confinement(&self) -> Option<Confinement> {
        Some(confinement::of(
            &self.template,
            SANDBOX_UID,
            SANDBOX_GID,
            spawn::landlock_handled(self.landlock_abi),
        ))
    }

    fn adopt_fork(
        &self,
        pid: u32,
        spec: &SandboxSpec,
        mount_code: bool,
    ) -> Result<(Box<dyn Sandbox>, std::net::TcpListener), SandboxError> {
        let group = self.cgroups.create(
            &format!("env-{}", spec.environment_id),
            Limits {
                memory_mb: spec.memory_mb,
                pids: MAX_PROCESSES,
            },
        )?;
        let volume = self.tmp_volumes.take(spec.ephemeral_storage_mb)?;
        late_mount::mount_tmp_volume(
            pid,
            std::os::fd::AsFd::as_fd(&volume.mount_namespace),
            &self.tmp_mount_point,
        )
        .map_err(SandboxError::MountTmp)?;
        if mount_code {
            late_mount::mount_code(pid, &spec.code_dir).map_err(SandboxError::MountTaskRoot)?;
        }
        let mut sandbox = ForkedSandbox {
            group: Some(group),
            netns: None,
            listener: None,
            _tmp: Some(volume),
        };
        if let Some(group) = &sandbox.group {
            group.set_memory(spec.memory_mb)?;
            group.attach(pid)?;
        }
        let fork_network = |source| SandboxError::ForkNetwork { pid, source };
        let (netns, mut listeners) =
            netns::listeners_in(pid, &[RUNTIME_API_ADDRESS, crate::LOG_SINK_ADDRESS])
                .map_err(fork_network)?;
        let log_sink = listeners
            .pop()
            .ok_or_else(|| fork_network(io::Error::other("no log listener")))?;
        sandbox.listener = listeners.pop();
        sandbox.netns = Some(netns);
        Ok((Box::new(sandbox), log_sink))
    }

    fn create(&self, spec: &SandboxSpec) -> Result<Box<dyn Sandbox>, SandboxError> {
        let tmp = &self.tmp_mount_point;
        let volume = self.tmp_volumes.take(spec.ephemeral_storage_mb)?;
        let mut sandbox = LinuxSandbox {
            tmp_volumes: self.tmp_volumes.clone(),
            tmp_mount_point: tmp.clone(),
            tmp_mb: volume.size_mb,
            group: None,
            egress: None,
            namespaces: None,
            listener: None,
            plan: None,
        };
        let group = self.cgroups.create(
            &format!("env-{}", spec.environment_id),
            Limits {
                memory_mb: spec.memory_mb,
                pids: MAX_PROCESSES,
            },
        )?;
        let slot = self
            .network
            .take()
            .map_err(SandboxError::NetworkNamespace)?;
        if spec.egress {
            let link = self
                .egress
                .attach(&slot.netns)
                .map_err(SandboxError::Egress)?;
            sandbox.egress = Some((self.egress.clone(), link));
        }
        let block = std::process::id() % HOST_ID_BLOCKS;
        let host_id = HOST_ID_BASE
            + block * HOST_ID_SPAN
            + NEXT_HOST_ID.fetch_add(1, Ordering::Relaxed) % HOST_ID_SPAN;
        let procs = group.procs_files()?;
        let template = if spec.zygote {
            &self.snapshot_template
        } else {
            &self.template
        };
        let plan = Plan {
            template: template.clone(),
            netns: slot.netns.as_raw_fd(),
            mount_namespace: volume.mount_namespace.as_raw_fd(),
            cgroup_procs: procs.iter().map(|fd| fd.as_raw_fd()).collect(),
            host_uid: host_id,
            host_gid: host_id,
            uid_map: format!("{SANDBOX_UID} {host_id} 1\n").into_bytes(),
            gid_map: format!("{SANDBOX_GID} {host_id} 1\n").into_bytes(),
            ops: self.environment_ops(spec, tmp),
        };
        sandbox.group = Some(group);
        sandbox.listener = Some(slot.listener);
        sandbox.namespaces = Some(Namespaces {
            _network: slot.netns,
            _tmp: volume,
            _cgroup_procs: procs,
        });
        sandbox.plan = Some(Arc::new(plan));
        Ok(Box::new(sandbox))
    }
}

/// What the plan refers to by descriptor, kept open while the sandbox lives.
struct Namespaces {
    _network: OwnedFd,
    /// The environment's mount namespace, which holds its /tmp: the filesystem lives as long
    /// as this namespace.
    _tmp: tmp_volume::TmpVolume,
    _cgroup_procs: Vec<OwnedFd>,
}

struct LinuxSandbox {
    /// Where another /tmp comes from, and where it is mounted in the environment's mount
    /// namespace, for a sandbox started ahead whose function wants another size.
    tmp_volumes: Arc<TmpVolumes>,
    tmp_mount_point: PathBuf,
    /// The size of its /tmp (MB).
    tmp_mb: u32,
    group: Option<EnvironmentGroup>,
    egress: Option<(Arc<egress::Egress>, egress::Link)>,
    namespaces: Option<Namespaces>,
    listener: Option<std::net::TcpListener>,
    plan: Option<Arc<Plan>>,
}

impl Sandbox for LinuxSandbox {
    fn take_listener(&mut self) -> Option<std::net::TcpListener> {
        self.listener.take()
    }

    fn spawn(&mut self, process: &ProcessSpec) -> Result<Spawned, SandboxError> {
        let plan = self.plan.clone().ok_or(SandboxError::Destroyed)?;
        // The child reports a failed step here; exec closes its end, so on success nothing
        // is ever written.
        let (report_read, report_write) = report_pipe().map_err(SandboxError::ReportPipe)?;
        let report = report_write.as_raw_fd();
        let spawned = crate::spawn_with_output(process, |command| {
            // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
            // system calls on data prepared in `plan` (see spawn.rs); `report` stays open
            // until the command has been spawned.
            unsafe {
                command.pre_exec(move || spawn::child(&plan, report));
            }
        });
        drop(report_write);
        match spawned {
            Err(SandboxError::Spawn { program, source }) => {
                Err(match spawn::read_report(report_read.as_raw_fd()) {
                    Some((step, source)) => {
                        tracing::debug!(program = %program.display(), step = step.name(), error = %source, "a sandbox's start failed");
                        SandboxError::Child {
                            program,
                            step: step.name(),
                            source,
                        }
                    }
                    None => SandboxError::Spawn { program, source },
                })
            }
            other => other,
        }
    }

    fn assign(
        &mut self,
        code_dir: &Path,
        memory_mb: u32,
        ephemeral_storage_mb: u32,
        runtime_pid: u32,
    ) -> Result<(), SandboxError> {
        let plan = self.plan.as_ref().ok_or(SandboxError::Destroyed)?;
        let task_root =
            cstring(&Path::new(OsStr::from_bytes(plan.template.root.as_bytes())).join("var/task"));
        let mut assigned = (**plan).clone();
        for op in &mut assigned.ops {
            if let Op::Bind { source, target, .. } = op
                && *target == task_root
            {
                *source = cstring(code_dir);
            }
        }
        if let Some(group) = &self.group {
            group.set_memory(memory_mb)?;
        }
        if ephemeral_storage_mb != self.tmp_mb {
            // Another filesystem of the function's size, both where the running runtime sees
            // it and in the mount namespace later starts of the runtime are made from.
            let namespaces = self.namespaces.as_mut().ok_or(SandboxError::Destroyed)?;
            let volume = self.tmp_volumes.take(ephemeral_storage_mb)?;
            late_mount::replace_tmp(
                runtime_pid,
                std::os::fd::AsFd::as_fd(&volume.mount_namespace),
                &self.tmp_mount_point,
            )
            .map_err(SandboxError::MountTmp)?;
            assigned.mount_namespace = volume.mount_namespace.as_raw_fd();
            namespaces._tmp = volume;
            self.tmp_mb = ephemeral_storage_mb;
        } else {
            // Its function is about to run, and may fill it.
            self.count_tmp(TmpCount::Full);
        }
        late_mount::mount_task_root(runtime_pid, code_dir).map_err(SandboxError::MountTaskRoot)?;
        self.plan = Some(Arc::new(assigned));
        Ok(())
    }

    fn run_in_background(&mut self) {
        if let Some(group) = &self.group
            && let Err(e) = group.set_idle_weight()
        {
            tracing::debug!(error = %e, "could not lower a sandbox's CPU weight");
        }
    }

    fn kill_all(&mut self) {
        if let Some(group) = &self.group {
            group.kill_all();
        }
    }

    fn peak_memory(&self) -> Option<u64> {
        self.group.as_ref()?.peak_memory()
    }

    fn memory_usage(&self) -> Option<u64> {
        self.group.as_ref()?.memory_usage()
    }

    fn out_of_memory(&self) -> bool {
        self.group.as_ref().is_some_and(|g| g.oom_kills() > 0)
    }

    fn count_tmp(&mut self, count: TmpCount) {
        if let Some(namespaces) = &mut self.namespaces {
            namespaces._tmp.count(count);
        }
    }

    fn destroy(&mut self) {
        if let Some(group) = self.group.take() {
            group.remove();
        }
        self.plan = None;
        if let Some((egress, link)) = self.egress.take() {
            egress.detach(link);
        }
        self.namespaces = None;
        self.listener = None;
    }
}

/// The sandbox of an environment forked from a SnapStart snapshot process: its namespaces
/// are its own (it made them), Gust adds its cgroup and its Runtime API listener. Its runtime
/// cannot be started again: the snapshot lives in the snapshot process.
struct ForkedSandbox {
    group: Option<EnvironmentGroup>,
    /// Kept open while the sandbox lives.
    netns: Option<OwnedFd>,
    listener: Option<std::net::TcpListener>,
    /// Its /tmp, mounted in its own mount namespace.
    _tmp: Option<tmp_volume::TmpVolume>,
}

impl Sandbox for ForkedSandbox {
    fn take_listener(&mut self) -> Option<std::net::TcpListener> {
        self.listener.take()
    }

    fn spawn(&mut self, process: &ProcessSpec) -> Result<Spawned, SandboxError> {
        Err(SandboxError::Spawn {
            program: process.program.clone(),
            source: io::Error::new(
                io::ErrorKind::Unsupported,
                "an environment restored from a snapshot is restored again, not restarted",
            ),
        })
    }

    fn kill_all(&mut self) {
        if let Some(group) = &self.group {
            group.kill_all();
        }
    }

    fn peak_memory(&self) -> Option<u64> {
        self.group.as_ref()?.peak_memory()
    }

    fn memory_usage(&self) -> Option<u64> {
        self.group.as_ref()?.memory_usage()
    }

    fn out_of_memory(&self) -> bool {
        self.group.as_ref().is_some_and(|g| g.oom_kills() > 0)
    }

    fn count_tmp(&mut self, count: TmpCount) {
        if let Some(volume) = &mut self._tmp {
            volume.count(count);
        }
    }

    fn destroy(&mut self) {
        if let Some(group) = self.group.take() {
            group.remove();
        }
        self.netns = None;
        self.listener = None;
        self._tmp = None;
    }
}

impl Drop for ForkedSandbox {
    fn drop(&mut self) {
        self.destroy();
    }
}

impl Drop for LinuxSandbox {
    fn drop(&mut self) {
        self.destroy();
    }
}

impl Drop for LinuxLauncher {
    fn drop(&mut self) {
        self.cgroups.remove();
    }
}
