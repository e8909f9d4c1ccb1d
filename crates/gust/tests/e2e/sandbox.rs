//! Hostile functions: each test is an attack from inside a function and a check that it
//! failed. Python functions attack through the standard library and ctypes; a custom runtime
//! written in bash attacks with shell commands.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{EphemeralStorage, FunctionCode, Runtime};
use base64::Engine;
use serde_json::{Value, json};

use crate::common::*;

/// A Python function that tries what it is told and reports whether it worked.
const ATTACKER: &str = r#"import ctypes, json, os, socket, subprocess, sys, time, uuid

ENVIRONMENT = uuid.uuid4().hex
libc = ctypes.CDLL(None, use_errno=True)


def call(name, *args):
    result = getattr(libc, name)(*args)
    if result == -1:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def read(path):
    with open(path, "rb") as f:
        return f.read(64)


def write(path):
    with open(path, "w") as f:
        f.write("pwned")


def processes():
    found = []
    for pid in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
        if True:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    found.append(f.read().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return found


def spawn_background(marker):
    code = "import time\nwhile True: time.sleep(1)"
    return subprocess.Popen([sys.executable, "-c", code, marker], start_new_session=True).pid


def fork_bomb(marker, seconds):
    subprocess.Popen(["/bin/bash", "-c", "f() { f | f & }; f # " + marker], start_new_session=True, stderr=subprocess.DEVNULL)
    time.sleep(seconds)
    return len(processes())


def spin(seconds):
    def burn():
        end = time.time() + seconds
        while time.time() < end:
            pass
        os._exit(0)

    children = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            burn()
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    return len(children)


def fill_tmp():
    written = 0
    chunk = b"x" * (1 << 20)
    try:
        with open("/tmp/fill", "wb") as f:
            while True:
                f.write(chunk)
                f.flush()
                written += len(chunk)
    except OSError as e:
        stat = os.statvfs("/tmp")
        os.remove("/tmp/fill")
        return {"errno": e.errno, "written": written, "size": stat.f_blocks * stat.f_frsize}


def write_tmp(mb, name):
    chunk = b"t" * (1 << 20)
    with open("/tmp/" + name, "wb") as f:
        for _ in range(mb):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    return {"written": os.path.getsize("/tmp/" + name), "files": sorted(os.listdir("/tmp"))}


def exhaust_memory():
    hoard = []
    while True:
        hoard.append(b"m" * (8 << 20))


ATTACKS = {
    "read": lambda e: read(e["path"]),
    "list": lambda e: os.listdir(e["path"]),
    "write": lambda e: write(e["path"]),
    "signal": lambda e: os.kill(e["pid"], 9),
    "ptrace": lambda e: call("ptrace", 16, e["pid"], None, None),
    "mount": lambda e: call("mount", b"tmpfs", b"/tmp", b"tmpfs", 0, None),
    "unshare": lambda e: call("unshare", 0x10000000),
    "load_module": lambda e: call("syscall", 175, None, 0, b""),
    "connect": lambda e: socket.create_connection(("127.0.0.1", e["port"]), timeout=2).close(),
    "sethostname": lambda e: call("sethostname", b"pwned", 5),
    "chroot": lambda e: call("chroot", b"/tmp"),
}


def handler(event, context):
    kind = event["attack"]
    if kind == "whoami":
        return {"environment": ENVIRONMENT, "uid": os.getuid(), "gid": os.getgid()}
    if kind == "processes":
        return {"processes": processes()}
    if kind == "background":
        pid = spawn_background(event["marker"])
        time.sleep(event.get("sleep", 0))
        return {"pid": pid}
    if kind == "fork_bomb":
        return {"visible": fork_bomb(event["marker"], event["seconds"])}
    if kind == "spawn":
        return {"exits": [subprocess.run(["/bin/true"]).returncode for _ in range(event["count"])]}
    if kind == "spin":
        return {"spun": spin(event["seconds"])}
    if kind == "fill_tmp":
        return fill_tmp()
    if kind == "write_tmp":
        return write_tmp(event["mb"], event["name"])
    if kind == "exhaust_memory":
        exhaust_memory()
    try:
        result = ATTACKS[kind](event)
        return {"succeeded": True, "detail": repr(result)[:200]}
    except Exception as e:
        return {"succeeded": False, "errno": getattr(e, "errno", None), "detail": f"{type(e).__name__}: {e}"[:200]}
"#;

/// A custom runtime in bash (its HTTP over bash's /dev/tcp): each event is a shell command,
/// base64-encoded in a JSON string; the answer is its output and exit status, base64-encoded.
const BASH_RUNTIME: &str = r#"#!/bin/bash
export LC_ALL=C
api="$AWS_LAMBDA_RUNTIME_API"
request() {
  exec 3<>"/dev/tcp/${api%:*}/${api#*:}"
  printf '%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s' "$1" "$2" "$api" "${#3}" "$3" >&3
  cat <&3
  exec 3<&-
}
while true; do
  response=$(request GET /2018-06-01/runtime/invocation/next "")
  id=$(printf '%s' "$response" | tr -d '\r' | sed -n 's/^[Ll]ambda-[Rr]untime-[Aa]ws-[Rr]equest-[Ii]d: *//p')
  body=${response#*$'\r\n\r\n'}
  command=$(printf '%s' "$body" | tr -d '"' | base64 -d)
  output=$( { bash -c "$command" 2>&1; echo "exit=$?"; } | base64 -w0)
  request POST "/2018-06-01/runtime/invocation/$id/response" "\"$output\"" >/dev/null
done
"#;

async fn create_python(
    client: &aws_sdk_lambda::Client,
    name: &str,
    memory: i32,
    storage: i32,
    timeout: i32,
) {
    client
        .create_function()
        .function_name(name)
        .runtime(Runtime::from("python3.12"))
        .handler("app.handler")
        .role(ROLE)
        .memory_size(memory)
        .timeout(timeout)
        .ephemeral_storage(EphemeralStorage::builder().size(storage).build().unwrap())
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(python_zip(ATTACKER)))
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
}

async fn attack(client: &aws_sdk_lambda::Client, name: &str, event: Value) -> Value {
    let out = invoke(client, name, event.clone()).await;
    assert_eq!(out.function_error, None, "{event}: {out:?}");
    out.payload
}

/// Asserts that an attack failed.
async fn refused(client: &aws_sdk_lambda::Client, name: &str, event: Value) -> Value {
    let result = attack(client, name, event.clone()).await;
    assert_eq!(
        result["succeeded"], false,
        "attack {event} succeeded: {result}"
    );
    result
}

/// Runs a shell command in the bash custom runtime; returns its output and exit status.
async fn shell(client: &aws_sdk_lambda::Client, name: &str, command: &str) -> (String, i32) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(command);
    let out = invoke(client, name, Value::String(encoded)).await;
    assert_eq!(out.function_error, None, "{command}: {out:?}");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(out.payload.as_str().unwrap_or_default())
        .unwrap();
    let text = String::from_utf8_lossy(&decoded).into_owned();
    let (output, status) = text.rsplit_once("exit=").unwrap();
    (output.to_string(), status.trim().parse().unwrap())
}

/// Host processes whose command line contains `marker`.
fn host_processes_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(marker) && !stat.contains(") Z ")
        })
        .count()
}

/// Waits (up to 10 s) until no process with `marker` is left on the host.
async fn gone(marker: &str) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if host_processes_with(marker) == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The host directory holding a function's extracted code.
async fn code_dir(server: &Server, client: &aws_sdk_lambda::Client, name: &str) -> String {
    let f = client
        .get_function()
        .function_name(name)
        .send()
        .await
        .unwrap();
    let sha = f.configuration().unwrap().code_sha256().unwrap();
    let digest = base64::engine::general_purpose::STANDARD
        .decode(sha)
        .unwrap();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    server
        .data_dir
        .join("code")
        .join(hex)
        .join("task")
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn python_functions_cannot_reach_the_host_or_each_other() {
    let server = Server::start();
    let client = server.client();
    create_python(&client, "attacker", 128, 512, 10).await;
    create(
        &client,
        "victim",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip("SECRET = 'victim-secret'\ndef handler(e, c):\n    return SECRET\n"),
    )
    .await;
    let victim_code = code_dir(&server, &client, "victim").await;
    assert!(Path::new(&victim_code).join("app.py").is_file());
    let data_dir = server.data_dir.display().to_string();

    let me = attack(&client, "attacker", json!({"attack": "whoami"})).await;
    assert_eq!(me["uid"], 993);
    assert_eq!(me["gid"], 990);

    // Files: secrets, Gust's data, another function's code.
    for path in ["/etc/shadow", "/etc/gshadow", "/root/.bash_history"] {
        refused(&client, "attacker", json!({"attack": "read", "path": path})).await;
    }
    refused(
        &client,
        "attacker",
        json!({"attack": "list", "path": data_dir}),
    )
    .await;
    refused(
        &client,
        "attacker",
        json!({"attack": "read", "path": format!("{victim_code}/app.py")}),
    )
    .await;
    refused(
        &client,
        "attacker",
        json!({"attack": "read", "path": "/proc/1/root/etc/shadow"}),
    )
    .await;
    for path in [
        "/var/task/app.py",
        "/var/task/new.py",
        "/usr/pwned",
        "/etc/passwd",
        "/etc/pwned",
        "/pwned",
        "/var/runtime/pwned",
        "/opt/pwned",
        "/proc/sys/kernel/hostname",
    ] {
        refused(
            &client,
            "attacker",
            json!({"attack": "write", "path": path}),
        )
        .await;
    }

    // Processes: neither the host's nor another sandbox's are visible or reachable.
    let marker = format!("victim-marker-{}", std::process::id());
    create_python(&client, "neighbour", 128, 512, 10).await;
    attack(
        &client,
        "neighbour",
        json!({"attack": "background", "marker": marker}),
    )
    .await;
    assert_eq!(host_processes_with(&marker), 1);
    let seen = attack(&client, "attacker", json!({"attack": "processes"})).await;
    let seen: Vec<String> = serde_json::from_value(seen["processes"].clone()).unwrap();
    assert!(seen.len() <= 4, "{seen:?}");
    assert!(
        seen.iter()
            .all(|c| !c.contains(&marker) && !c.contains("gust") && !c.contains(&data_dir)),
        "{seen:?}"
    );
    assert_eq!(seen[0].trim(), "/init", "{seen:?}");
    let gust = server.pid();
    refused(
        &client,
        "attacker",
        json!({"attack": "signal", "pid": gust}),
    )
    .await;
    refused(&client, "attacker", json!({"attack": "ptrace", "pid": 1})).await;
    refused(
        &client,
        "attacker",
        json!({"attack": "ptrace", "pid": gust}),
    )
    .await;

    // Privileged operations.
    for kind in ["mount", "unshare", "load_module", "sethostname", "chroot"] {
        let result = refused(&client, "attacker", json!({"attack": kind})).await;
        assert_eq!(result["errno"], 1, "{kind}: {result}");
    }

    // The host's loopback: a server the test runs, and Gust's own API.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    refused(
        &client,
        "attacker",
        json!({"attack": "connect", "port": port}),
    )
    .await;
    let gust_port: u16 = server.address.rsplit(':').next().unwrap().parse().unwrap();
    refused(
        &client,
        "attacker",
        json!({"attack": "connect", "port": gust_port}),
    )
    .await;
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "something connected to the host listener"
    );

    // The victim is untouched and still answers.
    let out = invoke(&client, "victim", json!({})).await;
    assert_eq!(out.payload, "victim-secret");
    assert_eq!(host_processes_with(&marker), 1);

    // Sandboxed processes do not outlive Gust, even when it is killed.
    let data_dir = server.kill();
    assert!(gone(&marker).await, "a function's process outlived Gust");
    let _ = std::fs::remove_dir_all(data_dir.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_is_limited_reported_and_the_next_invoke_is_fresh() {
    let server = Server::start();
    let client = server.client();
    create_python(&client, "hog", 128, 512, 30).await;
    let before = attack(&client, "hog", json!({"attack": "whoami"})).await;

    let out = invoke(&client, "hog", json!({"attack": "exhaust_memory"})).await;
    assert_eq!(out.function_error.as_deref(), Some("Unhandled"), "{out:?}");
    assert_eq!(out.payload["errorType"], "Runtime.ExitError", "{out:?}");
    let message = out.payload["errorMessage"].as_str().unwrap();
    assert!(
        message.ends_with("Error: Runtime exited with error: signal: killed"),
        "{message}"
    );
    let used = max_memory_used(&out.log);
    assert!((120..=128).contains(&used), "{}", out.log);

    let after = attack(&client, "hog", json!({"attack": "whoami"})).await;
    assert_ne!(
        before["environment"], after["environment"],
        "the next invoke reused the environment"
    );
    let out = invoke(&client, "hog", json!({"attack": "whoami"})).await;
    assert!(
        !out.log.contains("Init Duration"),
        "a healthy environment is reused: {}",
        out.log
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tmp_is_private_and_bounded_by_ephemeral_storage() {
    let server = Server::start();
    let client = server.client();
    create_python(&client, "filler", 1024, 600, 60).await;
    let result = attack(&client, "filler", json!({"attack": "fill_tmp"})).await;
    assert_eq!(result["errno"], 28, "{result}");
    // At least EphemeralStorage fits (the filesystem's own metadata is on top of it).
    let size = result["size"].as_u64().unwrap();
    let written = result["written"].as_u64().unwrap();
    assert!(written >= 600 << 20 && written <= size, "{result}");
    assert!(size <= 640 << 20, "{result}");
    // What the function deleted is free again.
    let again = attack(&client, "filler", json!({"attack": "fill_tmp"})).await;
    assert_eq!(again["written"], result["written"], "{again}");
    // Nothing is kept under Gust's data directory: image files are unlinked as soon as they
    // are attached (a volume being made ahead shows for the moment its mkfs or copy takes).
    eventually(
        Duration::from_secs(20),
        "the data directory without images",
        || (dir_size(&server.data_dir) < 64 << 20).then_some(()),
    )
    .await;
    // The function keeps working.
    attack(&client, "filler", json!({"attack": "whoami"})).await;
}

/// On Lambda /tmp is storage of its own: writing more to it than the function has memory must
/// neither kill the function nor count as memory used, and one environment's files are not
/// another's.
#[tokio::test(flavor = "multi_thread")]
async fn tmp_is_storage_not_memory() {
    let server = Server::start();
    let client = server.client();
    create_python(&client, "writer", 256, 512, 60).await;
    let out = invoke(
        &client,
        "writer",
        json!({"attack": "write_tmp", "mb": 300, "name": "first"}),
    )
    .await;
    assert_eq!(out.function_error, None, "{out:?}");
    assert_eq!(out.payload["written"], 300 << 20, "{out:?}");
    let used = max_memory_used(&out.log);
    assert!(used < 128, "/tmp counted as memory: {}", out.log);
    // The same environment still has its file; the write past the size is refused.
    let more = attack(&client, "writer", json!({"attack": "fill_tmp"})).await;
    assert_eq!(more["errno"], 28, "{more}");
    let again = attack(&client, "writer", json!({"attack": "list", "path": "/tmp"})).await;
    assert!(
        again["detail"].as_str().unwrap().contains("first"),
        "{again}"
    );

    // A second environment (a concurrent invocation) starts with an empty /tmp.
    let busy = {
        let client = client.clone();
        tokio::spawn(async move {
            invoke(&client, "writer", json!({"attack": "spin", "seconds": 3})).await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = attack(&client, "writer", json!({"attack": "list", "path": "/tmp"})).await;
    busy.await.unwrap();
    assert_eq!(other["detail"], "[]", "{other}");
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                // What the file holds on the disk (image files are sparse).
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

/// Invokes `name` until `busy` finishes; returns how many invocations succeeded, failing on
/// any that did not.
async fn keep_invoking(
    client: &aws_sdk_lambda::Client,
    name: &str,
    busy: tokio::task::JoinHandle<Value>,
) -> (usize, Value) {
    let mut answered = 0;
    while !busy.is_finished() {
        let out = invoke(client, name, json!({"attack": "whoami"})).await;
        assert_eq!(out.function_error, None, "{out:?}");
        answered += 1;
    }
    (answered, busy.await.unwrap())
}

/// Waits until a fork bomb has spread, then invokes `bystander` ten times: every invocation must
/// succeed. Returns the most bomb processes seen on the host meanwhile.
async fn bystander_answers_during_bomb(
    client: &aws_sdk_lambda::Client,
    bystander: &str,
    event: Value,
    marker: &str,
) -> usize {
    let started = Instant::now();
    while host_processes_with(marker) < 100 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the fork bomb never spread"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut most = 0;
    for _ in 0..10 {
        let out = invoke(client, bystander, event.clone()).await;
        assert_eq!(out.function_error, None, "{out:?}");
        most = most.max(host_processes_with(marker));
    }
    most
}

/// Deletes the function a fork bomb runs in: retiring its environment ends the bomb.
async fn end_fork_bomb(client: &aws_sdk_lambda::Client, function: &str, marker: &str) {
    client
        .delete_function()
        .function_name(function)
        .send()
        .await
        .unwrap();
    assert!(gone(marker).await, "the fork bomb survived its environment");
}

/// Starts a fork bomb in `function` for `seconds`, its processes named with `marker`.
fn start_fork_bomb(
    client: &aws_sdk_lambda::Client,
    function: &str,
    marker: &str,
    seconds: u64,
) -> tokio::task::JoinHandle<Value> {
    let (client, function) = (client.clone(), function.to_string());
    let event = json!({"attack": "fork_bomb", "marker": marker, "seconds": seconds});
    tokio::spawn(async move { attack(&client, &function, event).await })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_bomb_is_contained() {
    let server = Server::start();
    let client = server.client();
    create_python(&client, "bomber", 1024, 512, 30).await;
    create_python(&client, "bystander", 128, 512, 10).await;
    attack(&client, "bystander", json!({"attack": "whoami"})).await;
    let marker = format!("pybomb-{}", std::process::id());
    let bomb = start_fork_bomb(&client, "bomber", &marker, 4);
    let most =
        bystander_answers_during_bomb(&client, "bystander", json!({"attack": "whoami"}), &marker)
            .await;
    let result = bomb.await.unwrap();
    let visible = result["visible"].as_u64().unwrap();
    assert!(visible <= 1024, "{result}");
    assert!(most <= 1024, "{most} bomb processes");
    end_fork_bomb(&client, "bomber", &marker).await;
}

/// Environments forked from one runtime template share its host uid: a fork bomb in one must
/// not take the processes another needs (each is limited on its own, as a fresh sandbox is).
#[tokio::test(flavor = "multi_thread")]
async fn a_fork_bomb_in_a_forked_environment_leaves_the_others_their_processes() {
    let server = Server::start_with(&["--standby-runtimes", "0"]);
    let client = server.client();
    for (name, memory) in [("first", 128), ("bomber", 1024), ("newcomer", 128)] {
        create_python(&client, name, memory, 512, 30).await;
    }
    // The first cold start of the runtime starts its template; the others fork from it.
    attack(&client, "first", json!({"attack": "whoami"})).await;
    runtime_template_ready(&server).await;
    let marker = format!("pybomb-forked-{}", std::process::id());
    let bomb = start_fork_bomb(&client, "bomber", &marker, 6);
    let started = Instant::now();
    while host_processes_with(&marker) < 900 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the fork bomb never reached its limit ({} processes)",
            host_processes_with(&marker)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let spawned = attack(&client, "newcomer", json!({"attack": "spawn", "count": 20})).await;
    assert_eq!(spawned["exits"], json!(vec![0; 20]), "{spawned}");
    assert_eq!(
        server.log().matches(FORKED).count(),
        2,
        "the bomber and the newcomer were forked from the template: {}",
        server.log()
    );
    bomb.await.unwrap();
    end_fork_bomb(&client, "bomber", &marker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cpu_hog_does_not_starve_another_function() {
    let server = Server::start();
    let client = server.client();
    create_python(&client, "spinner", 128, 512, 30).await;
    create_python(&client, "bystander", 128, 512, 10).await;
    attack(&client, "bystander", json!({"attack": "whoami"})).await;
    let spin = {
        let client = client.clone();
        tokio::spawn(async move {
            attack(&client, "spinner", json!({"attack": "spin", "seconds": 4})).await
        })
    };
    let (answered, result) = keep_invoking(&client, "bystander", spin).await;
    assert_eq!(result["spun"], 4);
    assert!(
        answered >= 3,
        "the bystander answered only {answered} times"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn background_processes_end_with_their_environment() {
    let server = Server::start();
    let client = server.client();
    create_python(&client, "lingerer", 128, 512, 2).await;
    let marker = format!("linger-{}", std::process::id());

    // After a normal return the process lives on in the warm environment…
    attack(
        &client,
        "lingerer",
        json!({"attack": "background", "marker": format!("{marker}-a")}),
    )
    .await;
    assert_eq!(host_processes_with(&format!("{marker}-a")), 1);
    // …and a timeout resets the environment, killing everything in it.
    let out = invoke(
        &client,
        "lingerer",
        json!({"attack": "background", "marker": format!("{marker}-b"), "sleep": 10}),
    )
    .await;
    assert_eq!(out.payload["errorType"], "Sandbox.Timedout", "{out:?}");
    assert!(
        gone(&format!("{marker}-a")).await,
        "a background process survived a reset"
    );
    assert!(
        gone(&format!("{marker}-b")).await,
        "a background process survived a timeout"
    );

    // Retiring the environment (here: the function changes) ends them too.
    attack(
        &client,
        "lingerer",
        json!({"attack": "background", "marker": format!("{marker}-c")}),
    )
    .await;
    assert_eq!(host_processes_with(&format!("{marker}-c")), 1);
    client
        .update_function_configuration()
        .function_name("lingerer")
        .description("changed")
        .send()
        .await
        .unwrap();
    assert!(
        gone(&format!("{marker}-c")).await,
        "a background process survived retirement"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_runtime_is_confined_too() {
    let server = Server::start();
    let client = server.client();
    client
        .create_function()
        .function_name("shell")
        .runtime(Runtime::from("provided.al2023"))
        .handler("unused")
        .role(ROLE)
        .memory_size(1024)
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(zip_of(&[(
                    "bootstrap",
                    BASH_RUNTIME.as_bytes(),
                    0o755,
                )])))
                .build(),
        )
        .send()
        .await
        .unwrap();
    create(
        &client,
        "other",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip("def handler(e, c):\n    return 'other'\n"),
    )
    .await;
    let other_code = code_dir(&server, &client, "other").await;
    let data_dir = server.data_dir.display().to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();

    let (out, status) = shell(
        &client,
        "shell",
        "id -u; id -g; hostname; tr -d '\\0' < /proc/1/cmdline",
    )
    .await;
    assert_eq!(status, 0, "{out}");
    assert_eq!(out, "993\n990\nsandbox\n/init");

    let attempts = [
        "cat /etc/shadow".to_string(),
        format!("ls {data_dir}"),
        format!("cat {other_code}/app.py"),
        "echo x > /var/task/bootstrap".into(),
        "echo x > /usr/bin/pwned".into(),
        "echo x > /etc/hosts".into(),
        format!("kill -9 {}", server.pid()),
        "kill -9 1".into(),
        format!("exec 3<>/dev/tcp/127.0.0.1/{port}"),
        "unshare -r true".into(),
        "mount -t tmpfs none /tmp".into(),
        "mkdir /tmp/x && mount --bind /tmp/x /var/task".into(),
        "chroot /tmp true".into(),
    ];
    for command in &attempts {
        let (out, status) = shell(&client, "shell", command).await;
        assert_ne!(status, 0, "`{command}` succeeded: {out}");
    }
    let (out, _) = shell(&client, "shell", "ls /proc | grep -c '^[0-9]'").await;
    let visible: u32 = out.trim().parse().unwrap();
    assert!(visible <= 8, "{visible} processes visible");

    // A fork bomb in the shell runtime hits the process limit; the other function answers.
    let marker = format!("shbomb-{}", std::process::id());
    let bomb = {
        let client = client.clone();
        let command =
            format!("(setsid bash -c 'f() {{ f | f & }}; f # {marker}' 2>/dev/null &); sleep 2");
        // The runtime itself may be unable to fork an answer once the limit is hit: the
        // invocation's outcome is not the point, the containment is.
        tokio::spawn(async move {
            let encoded = base64::engine::general_purpose::STANDARD.encode(command);
            invoke(&client, "shell", Value::String(encoded)).await;
        })
    };
    let most = bystander_answers_during_bomb(&client, "other", json!({}), &marker).await;
    bomb.await.unwrap();
    assert!(most <= 1024, "{most} bomb processes");
    client
        .delete_function()
        .function_name("shell")
        .send()
        .await
        .unwrap();
    assert!(
        gone(&marker).await,
        "the fork bomb survived its environment"
    );
}

/// Runs a shell script of setup commands, failing the test on error.
fn sh(script: &str) {
    let status = std::process::Command::new("sh")
        .args(["-ec", script])
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
}

#[tokio::test(flavor = "multi_thread")]
async fn egress_is_a_per_function_setting() {
    // An outside host: a network namespace this test makes, with an HTTP server.
    let id = std::process::id();
    let ns = format!("gust-e2e-outside-{id}");
    let link = format!("ge{}", id % 100_000);
    sh(&format!(
        "ip netns add {ns}; ip link add {link} type veth peer name eth0 netns {ns}; \
         ip addr add 10.251.0.1/24 dev {link}; ip link set {link} up; \
         ip -n {ns} addr add 10.251.0.2/24 dev eth0; ip -n {ns} link set eth0 up; ip -n {ns} link set lo up"
    ));
    let web = tempfile::tempdir().unwrap();
    std::fs::write(web.path().join("index.html"), "hello from outside").unwrap();
    let mut server = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "/usr/bin/python3",
            "-m",
            "http.server",
            "--bind",
            "10.251.0.2",
            "8080",
        ])
        .current_dir(web.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let gust = Server::start();
    let client = gust.client();
    let fetch = "import urllib.request\ndef handler(e, c):\n    try:\n        return urllib.request.urlopen('http://10.251.0.2:8080/', timeout=2).read().decode()\n    except Exception as err:\n        return 'failed: ' + repr(err)\n";
    create_with_env(
        &client,
        "open",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip(fetch),
        10,
        &[("GUST_NETWORK", "egress")],
    )
    .await;
    create_with_env(
        &client,
        "closed",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip(fetch),
        10,
        &[("GUST_NETWORK", "none")],
    )
    .await;
    create(
        &client,
        "default",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip(fetch),
    )
    .await;

    let mut answer = Value::Null;
    for _ in 0..50 {
        // The server may still be starting.
        answer = invoke(&client, "open", json!({})).await.payload;
        if answer == "hello from outside" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer, "hello from outside");
    for name in ["closed", "default"] {
        let answer = invoke(&client, name, json!({})).await.payload;
        assert!(
            answer.as_str().unwrap().starts_with("failed: "),
            "{name}: {answer}"
        );
    }

    // A bad setting is refused like any bad parameter.
    let err = client
        .update_function_configuration()
        .function_name("open")
        .environment(
            aws_sdk_lambda::types::Environment::builder()
                .variables("GUST_NETWORK", "internet")
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    let (status, code, message) = service_error(err);
    assert_eq!(
        (status, code.as_str()),
        (400, "InvalidParameterValueException")
    );
    assert_eq!(
        message,
        "GUST_NETWORK must be none or egress, got 'internet'."
    );

    let _ = server.kill();
    let _ = server.wait();
    sh(&format!("ip netns del {ns}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_isolation_in_force_is_reported() {
    let sandboxed = Server::start();
    let plain = Server::start_with(&["--isolation", "process"]);
    for (server, isolation, warned) in [(&sandboxed, "linux", false), (&plain, "process", true)] {
        let settings = server.raw("GET", "/2016-08-19/account-settings", &[], b"");
        assert_eq!(settings.status, 200);
        assert_eq!(settings.header("x-gust-isolation"), Some(isolation));
        let status = server.raw("GET", "/gust/status", &[], b"").json();
        assert_eq!(status["Isolation"], isolation);
        assert_eq!(status["IsolationWarning"].is_string(), warned, "{status}");
    }
    assert!(
        plain.log().contains("NOT isolated from the host"),
        "{}",
        plain.log()
    );
}

#[test]
fn without_privileges_gust_refuses_unless_told_to_run_unisolated() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for path in [dir.path(), data.as_path()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let as_nobody = |extra: &[&str]| {
        let mut command = std::process::Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_gust"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--gateway-listen",
                "off",
            ])
            .arg("--data-dir")
            .arg(&data)
            .args(extra)
            .env("HOME", dir.path());
        command
    };
    let refused = as_nobody(&[])
        .output()
        .expect("setpriv (util-linux) is needed");
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("cannot isolate functions") && message.contains("--isolation=process"),
        "{message}"
    );

    let mut plain = as_nobody(&["--isolation", "process"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(plain.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let _ = plain.kill();
    let _ = plain.wait();
    assert!(first.starts_with("Gust listening on"), "{first}");
}

#[tokio::test(flavor = "multi_thread")]
async fn expedite_rcu_tunes_the_host_when_asked() {
    let knob = "/sys/kernel/rcu_expedited";
    let before = std::fs::read_to_string(knob).unwrap();
    std::fs::write(knob, "0").unwrap();
    let server = Server::start_with(&["--expedite-rcu"]);
    let after = std::fs::read_to_string(knob).unwrap();
    std::fs::write(knob, before.trim()).unwrap();
    assert_eq!(after.trim(), "1");
    assert!(
        server.log().contains("rcu_expedited = 1"),
        "{}",
        server.log()
    );
}

/// The host's disk is protected: environments' `/tmp` sizes are bounded by `--tmp-budget`
/// (here under the reserved policy, where every environment counts its full size). When a
/// cold start would pass it, idle environments retire to make room; when even that cannot
/// make room, the invocation fails with a clear error and nothing changes.
#[tokio::test(flavor = "multi_thread")]
async fn the_tmp_budget_retires_idle_environments_and_refuses_what_cannot_fit() {
    // Room for two 512 MB volumes (and none for a runtime template's small one).
    let server = Server::start_with(&[
        "--tmp-budget",
        "1024",
        "--standby-runtimes",
        "0",
        "--runtime-templates",
        "false",
        "--memory-policy",
        "reserved",
    ]);
    let client = server.client();
    for name in ["first", "second", "third"] {
        create_python(&client, name, 128, 512, 30).await;
    }
    create_python(&client, "huge", 128, 2048, 30).await;
    let first = attack(&client, "first", json!({"attack": "whoami"})).await;
    attack(&client, "second", json!({"attack": "whoami"})).await;
    let status = server.raw("GET", "/gust/status", &[], b"").json();
    assert_eq!(status["EnvironmentTmpMB"], 1024, "{status}");
    assert_eq!(status["TmpBudgetMB"], 1024, "{status}");
    // A third environment fits once the least recently used idle one retires.
    attack(&client, "third", json!({"attack": "whoami"})).await;
    let status = server.raw("GET", "/gust/status", &[], b"").json();
    assert_eq!(status["EnvironmentTmpMB"], 1024, "{status}");
    assert_eq!(status["IdleEnvironments"], 2, "{status}");
    let again = attack(&client, "first", json!({"attack": "whoami"})).await;
    assert_ne!(
        first["environment"], again["environment"],
        "first was retired"
    );
    // More than the whole budget: refused, clearly.
    let response = server.raw("POST", "/2015-03-31/functions/huge/invocations", &[], b"{}");
    response.assert_error(500, "ServiceException", "--tmp-budget");
    // ... without retiring anything for it.
    let status = server.raw("GET", "/gust/status", &[], b"").json();
    assert_eq!(status["IdleEnvironments"], 2, "{status}");
    assert_eq!(status["EnvironmentTmpMB"], 1024, "{status}");
}

/// Under the measured policy (the default) an idle environment's `/tmp` counts what it holds
/// of the disk: more idle environments stay warm than the budget holds at their full sizes,
/// and one that wrote to `/tmp` counts what it wrote. Environments that wake at once count
/// their full sizes again, far past the budget, and none of their writes is refused for it;
/// once they are idle, the sweep retires the least recently used until the total is back
/// under the budget.
#[tokio::test(flavor = "multi_thread")]
async fn idle_environments_count_the_tmp_they_hold() {
    const BUDGET: u64 = 700;
    let budget = BUDGET.to_string();
    let server = Server::start_with(&["--tmp-budget", &budget, "--standby-runtimes", "0"]);
    let client = server.client();
    let status = || server.raw("GET", "/gust/status", &[], b"").json();
    let tmp_mb = |status: &Value| status["EnvironmentTmpMB"].as_u64().unwrap();
    let names = ["a", "b", "c", "d"];
    for name in names {
        create_python(&client, name, 128, 512, 60).await;
    }
    let mut environments = Vec::new();
    for name in names {
        let whoami = attack(&client, name, json!({"attack": "whoami"})).await;
        environments.push(whoami["environment"].clone());
    }
    // Four idle environments of 512 MB each under a budget that holds one in full.
    let idle = status();
    assert_eq!(idle["IdleEnvironments"], 4, "{idle}");
    assert_eq!(idle["TmpBudgetMB"], BUDGET, "{idle}");
    assert!(
        tmp_mb(&idle) < 64,
        "empty volumes count what they hold: {idle}"
    );
    for (name, environment) in names.iter().zip(&environments) {
        let again = attack(&client, name, json!({"attack": "whoami"})).await;
        assert_eq!(again["environment"], *environment, "{name} stayed warm");
    }

    // What an idle environment wrote counts.
    let written = attack(
        &client,
        "a",
        json!({"attack": "write_tmp", "mb": 200, "name": "kept"}),
    )
    .await;
    assert_eq!(written["written"], 200 << 20, "{written}");
    let after = status();
    assert!(
        (200..200 + 64).contains(&tmp_mb(&after)),
        "200 MB written: {after}"
    );

    // All four wake at once and write 200 MB each: the writes succeed although together they
    // count 4 × 512 MB against a 700 MB budget while they run.
    let writes: Vec<_> = names
        .into_iter()
        .map(|name| {
            let client = client.clone();
            tokio::spawn(async move {
                invoke(
                    &client,
                    name,
                    json!({"attack": "write_tmp", "mb": 200, "name": "burst"}),
                )
                .await
            })
        })
        .collect();
    for write in writes {
        let out = write.await.unwrap();
        assert_eq!(out.function_error, None, "{out:?}");
        assert_eq!(out.payload["written"], 200 << 20, "{out:?}");
    }
    // Idle again they hold about 1,000 MB: the least recently used retire until the rest fit.
    let relieved = eventually(
        Duration::from_secs(40),
        "idle environments retired to bring /tmp under its budget",
        || {
            let now = status();
            (now["IdleEnvironments"].as_u64().unwrap() < 4).then_some(now)
        },
    )
    .await;
    let kept = relieved["IdleEnvironments"].as_u64().unwrap();
    assert!(kept >= 1, "{relieved}");
    assert!(tmp_mb(&relieved) <= BUDGET, "{relieved}");
    assert!(
        tmp_mb(&relieved) >= 200 * kept,
        "each environment kept counts what it wrote: {relieved}"
    );
    // Nothing was lost: every function still answers.
    for name in names {
        attack(&client, name, json!({"attack": "whoami"})).await;
    }
}
