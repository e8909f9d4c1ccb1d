//! Control groups: one per execution environment, for memory, process and CPU limits, memory
//! accounting, and killing everything an environment started.
//!
//! Both hierarchies are supported: cgroup v1 (a mount per controller) and the unified v2
//! hierarchy. Gust makes one parent group per server (`gust-<pid>`) under its own group, so that
//! whatever limits its operator gave Gust also bound its functions, and so that two servers on
//! one host never touch each other's environments.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::SandboxError;

/// Which hierarchy the host uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// One directory per controller: memory, pids, cpu.
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpu: PathBuf,
    },
    /// The unified hierarchy.
    V2 { base: PathBuf },
}

/// The per-server parent group.
#[derive(Debug, Clone)]
pub struct Cgroups {
    hierarchy: Hierarchy,
}

/// Limits of one environment.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_mb: u32,
    pub pids: u32,
}

/// One environment's group (a directory per controller on v1).
#[derive(Debug)]
pub struct EnvironmentGroup {
    dirs: Vec<PathBuf>,
    memory_dir: PathBuf,
    v2: bool,
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Writes one of an environment group's limits.
fn limit(path: &Path, value: &str) -> Result<(), SandboxError> {
    fs::write(path, value).map_err(|source| SandboxError::CgroupLimit {
        path: path.to_path_buf(),
        source,
    })
}

fn create_dir(dir: &Path) -> Result<(), SandboxError> {
    fs::create_dir_all(dir).map_err(|source| SandboxError::CreateCgroup {
        path: dir.to_path_buf(),
        source,
    })
}

/// The mount point of a v1 controller, from /proc/self/mountinfo.
fn v1_mount(mountinfo: &str, controller: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        let mut post = post.split_whitespace();
        if post.next()? != "cgroup" {
            return None;
        }
        let _source = post.next()?;
        let options = post.next()?;
        if !options.split(',').any(|o| o == controller) {
            return None;
        }
        pre.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// This process's group path in a v1 controller (or v2 with `controller` = "").
fn own_path(proc_cgroup: &str, controller: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        let matches = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        matches.then(|| path.to_string())
    })
}

fn join(mount: &Path, path: &str) -> PathBuf {
    mount.join(path.trim_start_matches('/'))
}

/// Removes groups left by Gust servers that are no longer running, killing their processes.
fn remove_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("gust-")
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(children) = fs::read_dir(entry.path()) {
            for child in children.flatten().filter(|c| c.path().is_dir()) {
                kill_members(&child.path());
                let _ = fs::remove_dir(child.path());
            }
        }
        let _ = fs::remove_dir(entry.path());
    }
}

fn kill_members(dir: &Path) {
    for _ in 0..50 {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

impl Cgroups {
    /// Finds the hierarchy and makes this server's parent group.
    pub fn setup() -> io::Result<Self> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
        let proc_cgroup = fs::read_to_string("/proc/self/cgroup")?;
        let pid = std::process::id();
        let v1 = |controller: &str| -> Option<PathBuf> {
            Some(join(
                &v1_mount(&mountinfo, controller)?,
                &own_path(&proc_cgroup, controller)?,
            ))
        };
        let hierarchy = match (v1("memory"), v1("pids"), v1("cpu")) {
            (Some(memory), Some(pids), Some(cpu)) => {
                let mut dirs = Vec::new();
                for parent in [&memory, &pids, &cpu] {
                    remove_stale(parent);
                    let dir = parent.join(format!("gust-{pid}"));
                    fs::create_dir_all(&dir)?;
                    dirs.push(dir);
                }
                Hierarchy::V1 {
                    memory: dirs[0].clone(),
                    pids: dirs[1].clone(),
                    cpu: dirs[2].clone(),
                }
            }
            _ => {
                let root = Path::new("/sys/fs/cgroup");
                if !root.join("cgroup.controllers").exists() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        "no cgroup hierarchy with the memory, pids and cpu controllers was found",
                    ));
                }
                let own = join(root, &own_path(&proc_cgroup, "").unwrap_or_default());
                remove_stale(&own);
                // A v2 group with processes cannot delegate controllers: Gust moves itself into
                // a leaf of its own group first.
                let base = own.join(format!("gust-{pid}"));
                let supervisor = base.join("supervisor");
                fs::create_dir_all(&supervisor)?;
                write(&supervisor.join("cgroup.procs"), &pid.to_string())?;
                for dir in [&own, &base] {
                    write(&dir.join("cgroup.subtree_control"), "+memory +pids +cpu")?;
                }
                Hierarchy::V2 { base }
            }
        };
        Ok(Self { hierarchy })
    }

    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }

    /// A readable description for the log.
    pub fn describe(&self) -> String {
        match &self.hierarchy {
            Hierarchy::V1 { memory, pids, cpu } => format!(
                "cgroup v1: memory {}, pids {}, cpu {}",
                memory.display(),
                pids.display(),
                cpu.display()
            ),
            Hierarchy::V2 { base } => format!("cgroup v2 (memory, pids, cpu): {}", base.display()),
        }
    }

    /// Creates an environment's group with its limits.
    pub fn create(&self, name: &str, limits: Limits) -> Result<EnvironmentGroup, SandboxError> {
        let group = match &self.hierarchy {
            Hierarchy::V1 { memory, pids, cpu } => {
                let dirs = vec![memory.join(name), pids.join(name), cpu.join(name)];
                for dir in &dirs {
                    create_dir(dir)?;
                }
                limit(&dirs[1].join("pids.max"), &limits.pids.to_string())?;
                EnvironmentGroup {
                    memory_dir: dirs[0].clone(),
                    dirs,
                    v2: false,
                }
            }
            Hierarchy::V2 { base } => {
                let dir = base.join(name);
                create_dir(&dir)?;
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    limit(&swap, "0")?;
                }
                limit(&dir.join("pids.max"), &limits.pids.to_string())?;
                EnvironmentGroup {
                    memory_dir: dir.clone(),
                    dirs: vec![dir],
                    v2: true,
                }
            }
        };
        group.set_memory(limits.memory_mb)?;
        Ok(group)
    }

    /// Removes this server's parent group (at shutdown; environments are gone by then).
    pub fn remove(&self) {
        let dirs = match &self.hierarchy {
            Hierarchy::V1 { memory, pids, cpu } => vec![memory.clone(), pids.clone(), cpu.clone()],
            Hierarchy::V2 { base } => vec![base.clone()],
        };
        for dir in dirs {
            let _ = fs::remove_dir(&dir);
        }
    }
}

impl EnvironmentGroup {
    /// Gives the group the least CPU weight there is: it runs on time nobody else wants.
    pub fn set_idle_weight(&self) -> Result<(), SandboxError> {
        if self.v2 {
            limit(&self.dirs[0].join("cpu.weight"), "1")
        } else {
            limit(&self.dirs[2].join("cpu.shares"), "2")
        }
    }

    /// Sets the memory limit, and the CPU weight that goes with it: 1,769 MB is one vCPU's
    /// worth (1024 shares).
    pub fn set_memory(&self, memory_mb: u32) -> Result<(), SandboxError> {
        let bytes = (memory_mb as u64 * 1024 * 1024).to_string();
        let shares = ((memory_mb as u64 * 1024) / 1769).clamp(2, 262_144);
        if self.v2 {
            limit(&self.memory_dir.join("memory.max"), &bytes)?;
            // cpu.weight is 1–10000 with 100 as the default: scale shares to it.
            let weight = (shares * 100 / 1024).clamp(1, 10_000);
            return limit(&self.dirs[0].join("cpu.weight"), &weight.to_string());
        }
        // With swap accounting, memory+swap must not extend the limit and may never be below
        // it: raise it first, lower it last.
        let memory_limit = self.memory_dir.join("memory.limit_in_bytes");
        let memsw = self.memory_dir.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            if limit(&memsw, &bytes).is_err() {
                limit(&memory_limit, &bytes)?;
                limit(&memsw, &bytes)?;
            } else {
                limit(&memory_limit, &bytes)?;
            }
        } else {
            limit(&memory_limit, &bytes)?;
        }
        limit(&self.dirs[2].join("cpu.shares"), &shares.to_string())
    }

    /// Moves process `pid` (and so everything it starts afterwards) into the group.
    pub fn attach(&self, pid: u32) -> Result<(), SandboxError> {
        for dir in &self.dirs {
            let path = dir.join("cgroup.procs");
            fs::write(&path, pid.to_string()).map_err(|source| SandboxError::JoinCgroup {
                pid,
                path,
                source,
            })?;
        }
        Ok(())
    }

    /// `cgroup.procs` of each controller, opened for the child to join with a single write.
    pub fn procs_files(&self) -> Result<Vec<OwnedFd>, SandboxError> {
        self.dirs
            .iter()
            .map(|d| {
                let path = d.join("cgroup.procs");
                fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map(OwnedFd::from)
                    .map_err(|source| SandboxError::OpenCgroup { path, source })
            })
            .collect()
    }

    /// Kills every process in the group (and so, through its PID namespace, everything the
    /// environment started).
    pub fn kill_all(&self) {
        if self.v2 {
            let kill = self.dirs[0].join("cgroup.kill");
            if fs::write(&kill, "1").is_ok() {
                return;
            }
        }
        for dir in &self.dirs {
            kill_members(dir);
        }
    }

    /// Peak memory use of the group since it was created, in bytes, less the file pages it
    /// holds now: the page cache of what the environment wrote to its /tmp (and read from
    /// disk) is charged to the group but reclaimable, and on Lambda /tmp never counts as
    /// memory used.
    pub fn peak_memory(&self) -> Option<u64> {
        let peak = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        Some(self.read_bytes(peak)?.saturating_sub(self.file_pages()))
    }

    /// Memory the group uses now, in bytes, less its file pages (as
    /// [`EnvironmentGroup::peak_memory`]).
    pub fn memory_usage(&self) -> Option<u64> {
        let current = if self.v2 {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        };
        Some(self.read_bytes(current)?.saturating_sub(self.file_pages()))
    }

    fn read_bytes(&self, file: &str) -> Option<u64> {
        fs::read_to_string(self.memory_dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The page cache charged to the group (active and inactive file pages), in bytes.
    fn file_pages(&self) -> u64 {
        let stat = fs::read_to_string(self.memory_dir.join("memory.stat")).unwrap_or_default();
        let (active, inactive) = if self.v2 {
            ("active_file ", "inactive_file ")
        } else {
            ("total_active_file ", "total_inactive_file ")
        };
        stat.lines()
            .filter_map(|line| {
                line.strip_prefix(active)
                    .or_else(|| line.strip_prefix(inactive))
            })
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .sum()
    }

    /// How many processes the kernel killed for exceeding the group's memory limit.
    pub fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        fs::read_to_string(self.memory_dir.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("oom_kill ")?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Kills what is left and removes the group.
    pub fn remove(&self) {
        self.kill_all();
        for dir in &self.dirs {
            for _ in 0..100 {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(_) => {
                        kill_members(dir);
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_mounts_and_own_paths() {
        let mountinfo = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            v1_mount(mountinfo, "memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        assert_eq!(v1_mount(mountinfo, "pids"), None);
        let proc_cgroup = "8:pids:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/x\n0::/user.slice\n";
        assert_eq!(
            own_path(proc_cgroup, "memory").as_deref(),
            Some("/process_api/abc")
        );
        assert_eq!(own_path(proc_cgroup, "cpu").as_deref(), Some("/x"));
        assert_eq!(own_path(proc_cgroup, "").as_deref(), Some("/user.slice"));
    }
}
