//! The host's view of what a server holds: its processes, cgroups, network namespaces, loop
//! devices and environment files, read from `/proc` and `/sys` rather than asked of Gust, so
//! that a leak Gust's own bookkeeping does not know about still shows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

/// One process, for messages.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub state: String,
    pub command: String,
}

impl std::fmt::Display for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} (parent {}, state {}): {}",
            self.pid, self.ppid, self.state, self.command
        )
    }
}

/// `(pid, ppid, state, comm)` from `/proc/<pid>/stat`. The command name is in parentheses and
/// may itself hold spaces and parentheses: the fields after it start after the last `)`.
fn stat(pid: u32) -> Option<(u32, String, String)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?.to_string();
    let ppid = rest.next()?.parse().ok()?;
    Some((ppid, state, comm))
}

/// Every process descending from `root` (not `root` itself), found by following parent links
/// over all of `/proc`: sandboxed processes live in PID namespaces of their own, but the host
/// sees them all.
pub fn descendants(root: u32) -> Vec<Process> {
    let mut all = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some((ppid, state, comm)) = stat(pid) {
            all.push((pid, ppid, state, comm));
        }
    }
    let parents: HashMap<u32, u32> = all.iter().map(|(pid, ppid, ..)| (*pid, *ppid)).collect();
    let descends = |mut pid: u32| {
        for _ in 0..64 {
            match parents.get(&pid) {
                Some(&ppid) if ppid == root => return true,
                Some(&ppid) if ppid > 1 => pid = ppid,
                _ => return false,
            }
        }
        false
    };
    let mut found: Vec<Process> = all
        .into_iter()
        .filter(|(pid, ..)| *pid != root && descends(*pid))
        .map(|(pid, ppid, state, comm)| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .trim()
                        .to_string()
                })
                .unwrap_or_default();
            Process {
                pid,
                ppid,
                state,
                command: if cmdline.is_empty() {
                    format!("[{comm}]")
                } else {
                    cmdline
                },
            }
        })
        .collect();
    found.sort();
    found
}

/// The kinds of namespace a descriptor can hold (`/proc/<pid>/fd/*` links to `net:[…]`,
/// `mnt:[…]`, …).
const NAMESPACES: [&str; 8] = ["net", "mnt", "pid", "user", "uts", "ipc", "cgroup", "time"];

/// How many namespaces of each kind the server process holds open through its descriptors:
/// its ready pools (network namespaces with their Runtime API listener, mount namespaces with
/// a /tmp volume) plus those of live sandboxes.
pub fn namespaces(pid: u32) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if let Some((kind, _)) = target.split_once(":[")
            && NAMESPACES.contains(&kind)
        {
            *counts.entry(kind.to_string()).or_default() += 1;
        }
    }
    counts
}

/// The directories named `name` under `dir`, down to `depth` levels, without entering other
/// servers' groups.
fn find_groups(dir: &Path, name: &str, depth: usize, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if file_name == name {
            out.push(entry.path());
        } else if !file_name.starts_with("gust-") && depth > 0 {
            find_groups(&entry.path(), name, depth - 1, out);
        }
    }
}

fn subdirectories(dir: &Path, depth: usize, out: &mut BTreeSet<PathBuf>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.insert(entry.path());
            if depth > 0 {
                subdirectories(&entry.path(), depth - 1, out);
            }
        }
    }
}

/// Every cgroup directory inside the server's own groups (`gust-<pid>`, one per controller
/// on cgroup v1, see `gust-sandbox/src/linux/cgroup.rs`): environments' groups are
/// `env-<environment id>`.
pub fn cgroups(pid: u32) -> BTreeSet<PathBuf> {
    let mut parents = Vec::new();
    find_groups(
        Path::new("/sys/fs/cgroup"),
        &format!("gust-{pid}"),
        6,
        &mut parents,
    );
    let mut out = BTreeSet::new();
    for parent in parents {
        subdirectories(&parent, 3, &mut out);
    }
    out
}

/// Every file and directory under `dir` (paths relative to it), not following symbolic links.
pub fn files(dir: &Path) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, depth: usize, out: &mut BTreeSet<PathBuf>) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            out.insert(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
            if depth > 0 && entry.file_type().is_ok_and(|t| t.is_dir()) && out.len() < 10_000 {
                walk(root, &path, depth - 1, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, 8, &mut out);
    out
}

/// Loop devices whose backing file lies (or lay, before it was unlinked) under `dir`, as
/// `loopN -> path`.
pub fn loop_devices(dir: &Path) -> BTreeSet<String> {
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut out = BTreeSet::new();
    for entry in fs::read_dir("/sys/block").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(backing) = fs::read_to_string(entry.path().join("loop/backing_file")) else {
            continue;
        };
        let backing = backing.trim();
        if Path::new(backing).starts_with(&dir) {
            out.insert(format!("{name} -> {backing}"));
        }
    }
    out
}

/// The server's resident memory, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Everything [`HostView::leftovers`] compares.
#[derive(Debug, Clone)]
pub struct HostView {
    pub processes: Vec<Process>,
    pub cgroups: BTreeSet<PathBuf>,
    /// Namespaces held through the server's descriptors, by kind.
    pub namespaces: BTreeMap<String, usize>,
    pub files: BTreeSet<PathBuf>,
    pub loop_devices: BTreeSet<String>,
}

impl HostView {
    /// Looks at server `pid` with data directory `data_dir`. `linux`: also its cgroups,
    /// namespaces and loop devices (which `--isolation process` does not use).
    pub fn take(pid: u32, data_dir: &Path, linux: bool) -> Self {
        Self {
            processes: descendants(pid),
            cgroups: if linux { cgroups(pid) } else { BTreeSet::new() },
            namespaces: if linux {
                namespaces(pid)
            } else {
                BTreeMap::new()
            },
            files: files(&data_dir.join("environments")),
            loop_devices: if linux {
                loop_devices(data_dir)
            } else {
                BTreeSet::new()
            },
        }
    }

    /// What this view holds beyond `baseline` (an idle fresh server's): one line per kind of
    /// leftover, empty when nothing is left behind.
    pub fn leftovers(&self, baseline: &HostView) -> Vec<String> {
        let mut found = Vec::new();
        let processes: Vec<String> = self
            .processes
            .iter()
            .filter(|p| !baseline.processes.iter().any(|b| b.pid == p.pid))
            .map(|p| p.to_string())
            .collect();
        if !processes.is_empty() {
            found.push(format!(
                "{} process(es) still descend from the server: {}",
                processes.len(),
                processes.join("; ")
            ));
        }
        let environment_groups: Vec<String> = self
            .cgroups
            .iter()
            .filter(|g| {
                g.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("env-"))
                    || !baseline.cgroups.contains(*g)
            })
            .map(|g| g.display().to_string())
            .collect();
        if !environment_groups.is_empty() {
            found.push(format!(
                "{} cgroup director(y/ies) left: {}",
                environment_groups.len(),
                environment_groups.join(", ")
            ));
        }
        // Pools are topped up after use, with new namespaces: only their number compares.
        for (kind, count) in &self.namespaces {
            let before = baseline.namespaces.get(kind).copied().unwrap_or(0);
            if *count > before {
                found.push(format!(
                    "the server holds {count} {kind} namespace(s), {before} when it was idle and fresh"
                ));
            }
        }
        let files: Vec<String> = self
            .files
            .difference(&baseline.files)
            .take(20)
            .map(|f| f.display().to_string())
            .collect();
        if !files.is_empty() {
            found.push(format!(
                "{} path(s) under environments/ that an idle fresh server does not have: {}",
                self.files.difference(&baseline.files).count(),
                files.join(", ")
            ));
        }
        // Volumes made ahead are loop devices too, replaced after use: compare their number.
        if self.loop_devices.len() > baseline.loop_devices.len() {
            found.push(format!(
                "{} loop device(s) backed by files under the data directory, {} when it was idle and fresh: {:?}",
                self.loop_devices.len(),
                baseline.loop_devices.len(),
                self.loop_devices
            ));
        }
        found
    }
}
