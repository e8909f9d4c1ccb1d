//! The plain process launcher: each environment's runtime is a child process of Gust in its own
//! process group, with its own scratch directory and its own Runtime API listener on loopback.
//! It isolates nothing from the host; it is the launcher of `--isolation=process`.

use std::fs;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use rustix::process::{Pid, Signal, kill_process_group};

use crate::{Isolation, Launcher, ProcessSpec, Sandbox, SandboxError, SandboxSpec, Spawned};

/// Launches environments as plain child processes.
#[derive(Debug, Clone)]
pub struct ProcessLauncher {
    environments_dir: PathBuf,
}

impl ProcessLauncher {
    /// `environments_dir` holds one scratch directory per live environment; leftovers of a
    /// previous run are removed.
    pub fn new(environments_dir: impl Into<PathBuf>) -> io::Result<Self> {
        let environments_dir = environments_dir.into();
        if environments_dir.exists() {
            fs::remove_dir_all(&environments_dir)?;
        }
        fs::create_dir_all(&environments_dir)?;
        Ok(Self { environments_dir })
    }
}

impl Launcher for ProcessLauncher {
    fn isolation(&self) -> Isolation {
        Isolation::Process
    }

    fn create(&self, spec: &SandboxSpec) -> Result<Box<dyn Sandbox>, SandboxError> {
        let dir = self.environments_dir.join(&spec.environment_id);
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp).map_err(|source| SandboxError::Directory {
            path: tmp.clone(),
            source,
        })?;
        let listener = TcpListener::bind("127.0.0.1:0").map_err(SandboxError::Listener)?;
        listener
            .set_nonblocking(true)
            .map_err(SandboxError::Listener)?;
        let address = listener
            .local_addr()
            .map_err(SandboxError::Listener)?
            .to_string();
        Ok(Box::new(ProcessSandbox {
            dir,
            tmp,
            task_root: spec.code_dir.clone(),
            runtime_dir: spec.runtime_dir.clone(),
            listener: Some(listener),
            address,
            groups: Vec::new(),
            current: None,
        }))
    }
}

struct ProcessSandbox {
    dir: PathBuf,
    tmp: PathBuf,
    task_root: PathBuf,
    runtime_dir: PathBuf,
    listener: Option<TcpListener>,
    address: String,
    /// Process groups started here; each runtime leads its own.
    groups: Vec<Pid>,
    current: Option<Pid>,
}

impl ProcessSandbox {
    /// A figure of the runtime process's `/proc/<pid>/status` given in kB, in bytes.
    fn status_bytes(&self, field: &str) -> Option<u64> {
        let pid = self.current?;
        let status = fs::read_to_string(format!("/proc/{}/status", pid.as_raw_nonzero())).ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
}

impl Sandbox for ProcessSandbox {
    fn take_listener(&mut self) -> Option<TcpListener> {
        self.listener.take()
    }

    fn runtime_api_address(&self) -> &str {
        &self.address
    }

    fn task_root(&self) -> &Path {
        &self.task_root
    }

    fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }

    fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    fn spawn(&mut self, process: &ProcessSpec) -> Result<Spawned, SandboxError> {
        let task_root = self.task_root.clone();
        let spawned = crate::spawn_with_output(process, |command| {
            command.current_dir(task_root).process_group(0);
        })?;
        let pid = spawned.child.id().and_then(|id| Pid::from_raw(id as i32));
        if let Some(pid) = pid {
            self.groups.push(pid);
        }
        self.current = pid;
        Ok(spawned)
    }

    fn kill_all(&mut self) {
        for group in self.groups.drain(..) {
            // ESRCH only means the group is already gone.
            let _ = kill_process_group(group, Signal::KILL);
        }
        self.current = None;
    }

    fn peak_memory(&self) -> Option<u64> {
        self.status_bytes("VmHWM:")
    }

    /// The runtime process's resident set (its children are not counted: without a cgroup
    /// there is no one figure for them).
    fn memory_usage(&self) -> Option<u64> {
        self.status_bytes("VmRSS:")
    }

    fn destroy(&mut self) {
        self.kill_all();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for ProcessSandbox {
    fn drop(&mut self) {
        self.destroy();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[tokio::test]
    async fn runs_a_process_and_kills_its_whole_group() {
        let root = tempfile::tempdir().unwrap();
        let launcher = ProcessLauncher::new(root.path().join("envs")).unwrap();
        let mut sandbox = launcher
            .create(&SandboxSpec {
                environment_id: "e1".into(),
                code_dir: root.path().to_path_buf(),
                runtime_dir: root.path().to_path_buf(),
                memory_mb: 128,
                ephemeral_storage_mb: 512,
                read_only_paths: Vec::new(),
                egress: false,
                zygote: false,
            })
            .unwrap();
        assert!(sandbox.runtime_api_address().starts_with("127.0.0.1:"));
        assert!(sandbox.take_listener().is_some());
        assert!(sandbox.tmp_dir().is_dir());

        let echo = sandbox
            .spawn(&ProcessSpec {
                program: "/bin/sh".into(),
                args: vec!["-c".into(), "echo out; echo err >&2; echo $GUST_T".into()],
                env: vec![("GUST_T".into(), "t".into())],
            })
            .unwrap();
        let mut child = echo.child;
        child.wait().await.unwrap();
        let mut text = String::new();
        std::fs::File::from(echo.output)
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "out\nerr\nt\n");

        // A background grandchild dies with the group.
        let spawned = sandbox
            .spawn(&ProcessSpec {
                program: "/bin/sh".into(),
                args: vec!["-c".into(), "sleep 100 & echo $!; wait".into()],
                env: vec![],
            })
            .unwrap();
        let mut first = [0u8; 16];
        let mut out = std::fs::File::from(spawned.output);
        let n = out.read(&mut first).unwrap();
        let grandchild: i32 = String::from_utf8_lossy(&first[..n]).trim().parse().unwrap();
        assert!(sandbox.peak_memory().is_some());
        let tmp = sandbox.tmp_dir().to_path_buf();
        sandbox.destroy();
        let mut child = spawned.child;
        child.wait().await.unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let status = std::fs::read_to_string(format!("/proc/{grandchild}/status"));
        assert!(
            status.is_err() || status.unwrap().contains("State:\tZ"),
            "grandchild survived"
        );
        assert!(!tmp.exists());
    }
}
