//! The Linux sandbox from the inside: what a process started in it sees and may do.
//! These tests need root, as the sandbox itself does.
#![cfg(target_os = "linux")]

use std::io::Read;

use gust_sandbox::linux::LinuxLauncher;
use gust_sandbox::{Launcher, ProcessSpec, Sandbox, SandboxError, SandboxSpec};

struct Fixture {
    sandbox: Box<dyn Sandbox>,
    /// Sandboxes die with their launcher.
    _launcher: LinuxLauncher,
    _dir: tempfile::TempDir,
}

fn sandbox(memory_mb: u32) -> Fixture {
    sandbox_with(memory_mb, false)
}

fn sandbox_with(memory_mb: u32, egress: bool) -> Fixture {
    sandbox_reading(memory_mb, egress, Vec::new())
}

/// A sandbox with `read_only_paths` from the host.
fn sandbox_reading(
    memory_mb: u32,
    egress: bool,
    read_only_paths: Vec<std::path::PathBuf>,
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(code.join("handler.txt"), "the code").unwrap();
    let runtime = dir.path().join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    let launcher =
        LinuxLauncher::new(dir.path().join("envs")).expect("the Linux sandbox needs root");
    let sandbox = launcher
        .create(&SandboxSpec {
            environment_id: dir
                .path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            code_dir: code,
            runtime_dir: runtime,
            memory_mb,
            ephemeral_storage_mb: 16,
            read_only_paths,
            egress,
            zygote: false,
        })
        .unwrap();
    Fixture {
        sandbox,
        _launcher: launcher,
        _dir: dir,
    }
}

async fn run(sandbox: &mut dyn Sandbox, script: &str) -> (String, std::process::ExitStatus) {
    let spawned = sandbox
        .spawn(&ProcessSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        })
        .unwrap();
    let mut child = spawned.child;
    let output = std::fs::File::from(spawned.output);
    let reader = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        let mut output = output;
        let _ = output.read_to_string(&mut text);
        text
    });
    let status = child.wait().await.unwrap();
    (reader.await.unwrap(), status)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_sees_lambdas_filesystem_as_an_unprivileged_user() {
    let mut f = sandbox(128);
    let (out, status) = run(
        f.sandbox.as_mut(),
        "id -u; id -g; hostname; cat /var/task/handler.txt; echo; ls /etc | tr '\\n' ' '; echo; \
         grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; grep Seccomp: /proc/self/status; \
         echo scratch > /tmp/x && cat /tmp/x; ulimit -n; grep 'Max processes' /proc/self/limits | tr -s ' ' | cut -d' ' -f3; ls /proc | grep -c '^[0-9]'",
    )
    .await;
    assert!(status.success(), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "993", "{out}");
    assert_eq!(lines[1], "990", "{out}");
    assert_eq!(lines[2], "sandbox", "{out}");
    assert_eq!(lines[3], "the code", "{out}");
    assert!(!lines[4].contains("shadow"), "{out}");
    assert!(lines[4].contains("passwd"), "{out}");
    assert_eq!(lines[5], "CapEff:\t0000000000000000", "{out}");
    assert_eq!(lines[6], "NoNewPrivs:\t1", "{out}");
    assert_eq!(lines[7], "Seccomp:\t2", "{out}");
    assert_eq!(lines[8], "scratch", "{out}");
    assert_eq!(lines[9], "1024", "{out}");
    assert_eq!(lines[10], "1024", "{out}");
    // init, the shell, ls and grep at most.
    assert!(lines[11].parse::<u32>().unwrap() <= 4, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_work_and_files_get_the_usual_umask() {
    let mut f = sandbox(128);
    let (out, status) = run(
        f.sandbox.as_mut(),
        "echo gone > /dev/null && head -c 4 /dev/zero | od -An -tx1 && head -c 8 /dev/urandom | wc -c; \
         umask; touch /tmp/f && stat -c %a /tmp/f; (echo x > /dev/pwned) 2>/dev/null || echo refused",
    )
    .await;
    assert!(status.success(), "{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        ["00 00 00 00", "8", "0022", "644", "refused"],
        "{out}"
    );
}

/// A step of the sandbox's start that fails is named in the error (the child reports it),
/// while a runtime that cannot be exec'd is still a plain spawn error.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_start_names_its_step() {
    let missing = std::path::PathBuf::from("/gust-test-no-such-directory");
    let mut f = sandbox_reading(128, false, vec![missing]);
    let process = |program: &str| ProcessSpec {
        program: program.into(),
        args: Vec::new(),
        env: Vec::new(),
    };
    match f.sandbox.spawn(&process("/bin/true")) {
        Err(SandboxError::Child { step, source, .. }) => {
            assert_eq!(step, "bind mount");
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        }
        other => panic!("expected the bind mount to fail: {:?}", other.err()),
    }
    let mut f = sandbox(128);
    match f.sandbox.spawn(&process("/no/such/runtime")) {
        Err(SandboxError::Spawn { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT))
        }
        other => panic!("expected exec to fail: {:?}", other.err()),
    }
}

/// What a fork of a snapshot process applies is the sandbox's own definition, with the
/// kernel's numbers for this machine.
#[test]
fn the_confinement_document_is_the_sandboxs_definition() {
    let f = sandbox(128);
    let document = f._launcher.confinement().unwrap().document();
    assert_eq!(
        document["Order"],
        serde_json::json!([
            "Capabilities",
            "NoNewPrivs",
            "Landlock",
            "Rlimits",
            "Seccomp"
        ])
    );
    assert_eq!(
        document["Capabilities"],
        serde_json::json!({"Kept": 0, "ClearAmbient": true, "DropBounding": []})
    );
    assert_eq!(
        document["Rlimits"],
        serde_json::json!([
            {"Name": "RLIMIT_NOFILE", "Resource": libc::RLIMIT_NOFILE, "Soft": 1024, "Hard": 1024},
            {"Name": "RLIMIT_NPROC", "Resource": libc::RLIMIT_NPROC, "Soft": 1024, "Hard": 1024},
        ])
    );
    let rules = document["Landlock"]["Rules"].as_array().unwrap();
    let handled = document["Landlock"]["Handled"].as_u64().unwrap();
    if handled != 0 {
        assert_eq!(rules[0][0], "/");
        assert!(rules.iter().any(|r| r[0] == "/tmp" && r[1] == handled));
    }
    assert_eq!(document["Seccomp"]["Programs"].as_array().unwrap().len(), 2);
    let kernel = &document["Kernel"];
    assert_eq!(kernel["SYS_seccomp"], libc::SYS_seccomp);
    assert_eq!(
        kernel["SYS_landlock_create_ruleset"],
        libc::SYS_landlock_create_ruleset
    );
    assert_eq!(kernel["PR_SET_NO_NEW_PRIVS"], libc::PR_SET_NO_NEW_PRIVS);
    assert_eq!(kernel["_LINUX_CAPABILITY_VERSION_3"], 0x2008_0522);
    assert_eq!(kernel["LandlockRulesetAttrSize"], 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_status_and_signals_come_through() {
    let mut f = sandbox(128);
    let (_, status) = run(f.sandbox.as_mut(), "exit 7").await;
    assert_eq!(status.code(), Some(7));
    let (_, status) = run(f.sandbox.as_mut(), "kill -SEGV $$").await;
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGSEGV));
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_outside_tmp_fail_and_tmp_is_bounded() {
    let mut f = sandbox(128);
    let (out, _) = run(
        f.sandbox.as_mut(),
        "for p in /var/task/x /usr/x /etc/x /x /var/runtime/x; do (echo > $p) 2>/dev/null && echo wrote $p; done; \
         dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1 | grep -o 'No space left'; echo done",
    )
    .await;
    assert!(!out.contains("wrote"), "{out}");
    assert!(out.contains("No space left"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_over_the_limit_is_killed_and_peak_reported() {
    let mut f = sandbox(64);
    let (_, status) = run(
        f.sandbox.as_mut(),
        "/usr/bin/python3 -c 'b = b\"x\" * (200 << 20)'; exit 3",
    )
    .await;
    // Python is killed; the shell goes on and exits 3.
    assert_eq!(status.code(), Some(3));
    let peak = f.sandbox.peak_memory().unwrap();
    assert!(peak > 32 << 20 && peak <= 64 << 20, "{peak}");
}

#[tokio::test(flavor = "multi_thread")]
async fn background_processes_die_with_the_sandbox() {
    let mut f = sandbox(128);
    let spawned = f
        .sandbox
        .spawn(&ProcessSpec {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "setsid sleep 1000 & echo started; exec sleep 1000".into(),
            ],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        })
        .unwrap();
    let mut output = std::fs::File::from(spawned.output);
    let mut buf = [0u8; 8];
    output.read_exact(&mut buf).unwrap();
    let mut before = count_sleepers();
    for _ in 0..200 {
        if before >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        before = count_sleepers();
    }
    assert!(before >= 2);
    f.sandbox.kill_all();
    let mut child = spawned.child;
    child.wait().await.unwrap();
    for _ in 0..100 {
        if count_sleepers() == before - 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(count_sleepers(), before - 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn sandboxes_die_with_their_launcher() {
    let f = sandbox(128);
    let mut sandbox = f.sandbox;
    let spawned = sandbox
        .spawn(&ProcessSpec {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "sleep 2000 & echo started; exec sleep 2000".into(),
            ],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        })
        .unwrap();
    let mut output = std::fs::File::from(spawned.output);
    let mut buf = [0u8; 8];
    output.read_exact(&mut buf).unwrap();
    // The launcher goes (as when Gust dies) while the sandbox itself is still there.
    drop(f._launcher);
    let mut child = spawned.child;
    let status = child.wait().await.unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    for _ in 0..200 {
        if count_processes(b"sleep\x002000\x00") == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("a sandboxed process outlived the launcher");
}

fn count_sleepers() -> usize {
    count_processes(b"sleep\x001000\x00")
}

fn count_processes(command_line: &[u8]) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            cmdline == command_line
        })
        .filter(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            !stat.contains(") Z ")
        })
        .count()
}

/// A busy server holds thousands of descriptors; the runtime's 1,024-file limit must not
/// trip over them before exec closes them.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_with_many_open_files_still_starts_runtimes() {
    let mut f = sandbox(128);
    let held: Vec<std::fs::File> = (0..1500)
        .map(|_| std::fs::File::open("/dev/null").unwrap())
        .collect();
    let (out, status) = run(f.sandbox.as_mut(), "ulimit -n; ls /proc/self/fd | wc -l").await;
    assert!(status.success(), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1024", "{out}");
    assert!(lines[1].trim().parse::<u32>().unwrap() < 10, "{out}");
    drop(held);
}

/// A host outside Gust: a network namespace the test makes, linked to the host by a veth pair,
/// with a TCP server that answers "outside". Removed on drop.
struct OutsideHost {
    name: String,
    server: std::process::Child,
    address: String,
}

fn ip(args: &[&str]) {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .expect("ip (iproute2) is needed");
    assert!(status.success(), "ip {args:?}");
}

impl OutsideHost {
    fn start(subnet: u8) -> Self {
        let name = format!("gust-outside-{}-{subnet}", std::process::id());
        let link = format!("go{}x{subnet}", std::process::id() % 10_000);
        let host = format!("10.250.{subnet}.1/24");
        let address = format!("10.250.{subnet}.2");
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &name,
        ]);
        ip(&["addr", "add", &host, "dev", &link]);
        ip(&["link", "set", &link, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &name, "link", "set", "eth0", "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        let script = format!(
            "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('{address}', 8080))\ns.listen()\nprint('ready', flush=True)\nwhile True:\n    c, _ = s.accept()\n    c.sendall(b'outside')\n    c.close()\n"
        );
        let mut server = std::process::Command::new("ip")
            .args(["netns", "exec", &name, "/usr/bin/python3", "-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = [0u8; 6];
        server
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut ready)
            .unwrap();
        Self {
            name,
            server,
            address,
        }
    }
}

impl Drop for OutsideHost {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Connects and prints "connected" (the host's listener never answers).
const CONNECT: &str = "/usr/bin/python3 -c \"import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2); print('connected')\"";
const FETCH: &str = "/usr/bin/python3 -c \"import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2); print(s.recv(100).decode())\"";

#[tokio::test(flavor = "multi_thread")]
async fn egress_reaches_outside_hosts_but_not_the_host_or_other_sandboxes() {
    let outside = OutsideHost::start(7);
    let host_listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let host_port = host_listener.local_addr().unwrap().port();

    let mut open = sandbox_with(128, true);
    let (out, status) = run(
        open.sandbox.as_mut(),
        &format!("{FETCH} {} 8080", outside.address),
    )
    .await;
    assert!(status.success(), "{out}");
    assert_eq!(out.trim(), "outside");
    // The host itself, on its address facing the outside host and on its sandbox side, is
    // out of reach.
    let (out, status) = run(
        open.sandbox.as_mut(),
        &format!("{CONNECT} 10.250.7.1 {host_port}"),
    )
    .await;
    assert!(!status.success(), "reached the host: {out}");
    let range = 192 + std::process::id() % 48;
    let (out, status) = run(
        open.sandbox.as_mut(),
        &format!("{CONNECT} 10.{range}.0.1 {host_port}"),
    )
    .await;
    assert!(!status.success(), "reached the host: {out}");

    // Nor another sandbox: a second egress sandbox listens on its address (10.N.0.6).
    let mut neighbour = sandbox_with(128, true);
    let server = neighbour
        .sandbox
        .spawn(&ProcessSpec {
            program: "/usr/bin/python3".into(),
            args: vec![
                "-c".into(),
                "import socket\ns = socket.socket()\ns.bind(('0.0.0.0', 9100))\ns.listen()\nprint('ready', flush=True)\nwhile True: s.accept()[0].close()".into(),
            ],
            env: vec![],
        })
        .unwrap();
    let mut ready = [0u8; 6];
    std::fs::File::from(server.output)
        .read_exact(&mut ready)
        .unwrap();
    let (out, status) = run(
        open.sandbox.as_mut(),
        &format!("{CONNECT} 10.{range}.0.6 9100"),
    )
    .await;
    assert!(!status.success(), "reached another sandbox: {out}");
    neighbour.sandbox.kill_all();

    // Without egress there is no route at all.
    let mut closed = sandbox(128);
    let (out, status) = run(
        closed.sandbox.as_mut(),
        &format!("{FETCH} {} 8080", outside.address),
    )
    .await;
    assert!(
        !status.success(),
        "reached the outside without egress: {out}"
    );
    drop(host_listener);
}
