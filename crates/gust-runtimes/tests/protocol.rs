//! Every bootstrap, run as a real process, through every control message it handles (see
//! PROTOCOL.md): the real Runtime API server adopts the Python and Node.js runtimes and the
//! custom-runtime stand-in and asks Python's snapshot process to fork; a scripted server sends
//! messages of another version, which each bootstrap must refuse; and bootstraps of another
//! version are refused by the real server.
//!
//! What needs Gust's sandbox (a fork restored into its own environment) is covered end to end
//! by `crates/gust/tests/e2e/snapstart.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gust_runtime_api::control::{
    self, Adoption, Claim, Exec, ExitReport, ForkAnswer, ForkReport, ForkRequest,
};
use gust_runtime_api::{Invocation, Link, Outcome};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

const PYTHON: &str = "/usr/bin/python3";
const LIMIT: Duration = Duration::from_secs(20);

/// Gust's bootstraps installed by the crate itself, and a task root.
struct Installed {
    dir: tempfile::TempDir,
}

impl Installed {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let table = gust_runtimes::RuntimeTable::discover(&dir.path().join("rt"), &BTreeMap::new());
        table.install().unwrap();
        std::fs::create_dir(dir.path().join("task")).unwrap();
        Self { dir }
    }

    fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("rt")
    }

    fn task_root(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path().join("task")).unwrap()
    }

    fn python(&self) -> PathBuf {
        self.runtime_dir().join("python/bootstrap.py")
    }

    fn node(&self) -> PathBuf {
        self.runtime_dir().join("node/bootstrap.cjs")
    }

    fn stand_in(&self) -> PathBuf {
        self.runtime_dir().join(gust_runtimes::STANDBY_EXEC_PATH)
    }

    /// A copy of the Python runtime that speaks `gust-control/9`: its entry point beside a
    /// patched `_gust_runtime.py` (what the entry point imports), in a directory of their own.
    fn python_of_version_9(&self) -> PathBuf {
        let python = self.runtime_dir().join("python");
        let patched = self.of_version_9(&python.join("_gust_runtime.py"));
        let dir = self.runtime_dir().join("python-v9");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::rename(patched, dir.join("_gust_runtime.py")).unwrap();
        std::fs::copy(python.join("bootstrap.py"), dir.join("bootstrap.py")).unwrap();
        dir.join("bootstrap.py")
    }

    /// A copy of `bootstrap` that speaks `gust-control/9` (the version is text in every
    /// bootstrap, the stand-in's binary included, and keeps its length).
    fn of_version_9(&self, bootstrap: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let content = std::fs::read(bootstrap).unwrap();
        let (from, to) = (control::VERSION.as_bytes(), b"gust-control/9");
        let mut patched = Vec::with_capacity(content.len());
        let mut rest = &content[..];
        let mut found = false;
        while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
            patched.extend_from_slice(&rest[..at]);
            patched.extend_from_slice(to);
            rest = &rest[at + from.len()..];
            found = true;
        }
        patched.extend_from_slice(rest);
        assert!(found, "{} names no version", bootstrap.display());
        let name = bootstrap.file_name().unwrap().to_string_lossy();
        let copy = bootstrap.with_file_name(format!("v9-{name}"));
        std::fs::write(&copy, patched).unwrap();
        let mode = std::fs::metadata(bootstrap).unwrap().permissions().mode();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(mode)).unwrap();
        copy
    }
}

/// The real Runtime API on a loopback port.
struct Api {
    link: Arc<Link>,
    address: String,
    server: tokio::task::JoinHandle<()>,
}

impl Api {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let link = Arc::new(Link::new());
        let server = gust_runtime_api::spawn(listener, link.clone());
        Self {
            link,
            address,
            server,
        }
    }

    /// Waits until the runtime waits to be claimed.
    async fn standing_by(&self, runtime: &mut Child) {
        tokio::select! {
            _ = self.link.standing_by() => {}
            status = runtime.wait() => panic!("the runtime exited before its standby: {status:?}"),
            _ = tokio::time::sleep(LIMIT) => panic!("the runtime did not ask for its standby"),
        }
    }

    /// Dispatches an invocation and returns the function's result.
    async fn invoke(&self, trace_id: &str) -> Value {
        let pending = self.link.dispatch(Invocation {
            request_id: "req-1".into(),
            payload: "{}".into(),
            invoked_function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
            timeout: LIMIT,
            trace_id: trace_id.into(),
            client_context: None,
            cognito_identity: None,
            tenant_id: None,
        });
        let outcome = tokio::time::timeout(LIMIT, pending.outcome)
            .await
            .expect("the runtime answered in time")
            .unwrap();
        match outcome {
            Outcome::Response { body, .. } => serde_json::from_slice(&body).unwrap(),
            other => panic!("the invocation failed: {other:?}"),
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn node() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("node"))
                .find(|node| node.is_file())
        })
        .expect("node is installed")
}

/// Starts `program` with exactly `env`, its output captured.
fn spawn(program: &Path, args: &[PathBuf], env: &[(&str, &str)]) -> Child {
    Command::new(program)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()))
}

/// How a process ended, and its output.
async fn finished(child: Child) -> (ExitStatus, String, String) {
    let output = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .expect("the process ended in time")
        .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Variables of an adoption: what a function of `task_root` sees, among them values the old
/// JSON form had to escape.
fn function_environment(api: &Api, task_root: &Path, handler: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", api.address.as_str()),
        ("LAMBDA_TASK_ROOT", &task_root.display().to_string()),
        ("_HANDLER", handler),
        ("AWS_LAMBDA_FUNCTION_NAME", "f"),
        // As Gust sets it (else Python coerces the C locale by setting it itself).
        ("LC_CTYPE", "C.UTF-8"),
        ("EQUALS", "a=b=c"),
        ("QUOTES", "\"'\\ {}"),
        ("LINES", "one\ntwo\tthree"),
        ("UNICODE", "é ü 中文 🎉"),
        ("EMPTY", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Adopts a pre-started interpreter bootstrap and checks that its function sees exactly the
/// adopted variables (and the invocation's trace id), in its task root.
async fn adopt_interpreter(program: &Path, bootstrap: &Path, handler: &str, source: (&str, &str)) {
    let installed = Installed::new();
    let task_root = installed.task_root();
    std::fs::write(task_root.join(source.0), source.1).unwrap();
    let api = Api::start().await;
    let runtime_dir = installed.runtime_dir().display().to_string();
    let bootstrap = installed.runtime_dir().join(bootstrap);
    let mut runtime = spawn(
        program,
        std::slice::from_ref(&bootstrap),
        &[
            ("AWS_LAMBDA_RUNTIME_API", &api.address),
            ("LAMBDA_RUNTIME_DIR", &runtime_dir),
            ("_GUST_STANDBY", "1"),
            ("STARTED_WITH", "gone once adopted"),
        ],
    );
    api.standing_by(&mut runtime).await;
    let environment = function_environment(&api, &task_root, handler);
    api.link.claim_standby(Claim::Adopt(Adoption {
        environment: environment.clone(),
        exec: Some(Exec {
            program: program.display().to_string(),
            args: vec![bootstrap.display().to_string()],
        }),
    }));
    let trace_id = "Root=1-00000000-000000000000000000000000;Sampled=0";
    let seen = api.invoke(trace_id).await;
    let mut expected: BTreeMap<String, String> = environment.into_iter().collect();
    expected.insert("_X_AMZN_TRACE_ID".into(), trace_id.into());
    let seen_env: BTreeMap<String, String> = serde_json::from_value(seen["env"].clone()).unwrap();
    assert_eq!(seen_env, expected);
    assert_eq!(seen["cwd"], json!(task_root.display().to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn python_takes_the_adopted_environment() {
    adopt_interpreter(
        Path::new(PYTHON),
        Path::new("python/bootstrap.py"),
        "app.handler",
        (
            "app.py",
            "import os\n\ndef handler(event, context):\n    return {'env': dict(os.environ), 'cwd': os.getcwd()}\n",
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_takes_the_adopted_environment() {
    adopt_interpreter(
        &node(),
        Path::new("node/bootstrap.cjs"),
        "index.handler",
        (
            "index.js",
            "exports.handler = async () => ({ env: { ...process.env }, cwd: process.cwd() });\n",
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stand_in_execs_the_adopted_program() {
    let installed = Installed::new();
    let task_root = installed.task_root();
    let api = Api::start().await;
    let mut stand_in = spawn(
        &installed.stand_in(),
        &[],
        &[
            ("AWS_LAMBDA_RUNTIME_API", &api.address),
            ("STARTED_WITH", "gone once adopted"),
        ],
    );
    api.standing_by(&mut stand_in).await;
    let environment = function_environment(&api, &task_root, "function.handler");
    let script = "import json, os, sys\nprint(json.dumps({'args': sys.argv[1:], 'env': dict(os.environ), 'cwd': os.getcwd()}))";
    let args = vec![
        "-c".to_string(),
        script.to_string(),
        "two words".to_string(),
        String::new(),
        "ü=1".to_string(),
    ];
    api.link.claim_standby(Claim::Adopt(Adoption {
        environment: environment.clone(),
        exec: Some(Exec {
            program: PYTHON.into(),
            args,
        }),
    }));
    let (status, stdout, stderr) = finished(stand_in).await;
    assert!(status.success(), "{status:?}: {stderr}");
    let seen: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(seen["args"], json!(["two words", "", "ü=1"]));
    let seen_env: BTreeMap<String, String> = serde_json::from_value(seen["env"].clone()).unwrap();
    assert_eq!(seen_env, environment.into_iter().collect());
    assert_eq!(seen["cwd"], json!(task_root.display().to_string()));
}

/// Bodies to answer, each to the call (`METHOD path`) it answers.
type Script = Vec<(&'static str, Vec<u8>)>;

/// A stand-in of the Runtime API that answers control calls from a script, and records them.
struct Scripted {
    address: String,
    requests: Arc<Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Scripted {
    /// Answers the n-th call to each `(method path)` with the n-th body scripted for it, and
    /// any call beyond the script as a Runtime API that is shutting down.
    async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script));
        let server = {
            let requests = requests.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (requests, script) = (requests.clone(), script.clone());
                    tokio::spawn(Self::serve(stream, requests, script));
                }
            })
        };
        Self {
            address,
            requests,
            server,
        }
    }

    async fn serve(
        mut stream: TcpStream,
        requests: Arc<Mutex<Vec<String>>>,
        script: Arc<Mutex<Script>>,
    ) {
        let mut buffer = Vec::new();
        loop {
            let head_end = loop {
                if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at;
                }
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
            let length: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, v)| v.trim().parse().unwrap());
            while buffer.len() < head_end + 4 + length {
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            buffer.drain(..head_end + 4 + length);
            let request_line = head.lines().next().unwrap_or_default().to_string();
            let call = request_line
                .rsplit_once(' ')
                .map_or(request_line.clone(), |(call, _)| call.to_string());
            requests.lock().unwrap().push(head);
            let answer = {
                let mut script = script.lock().unwrap();
                let at = script.iter().position(|(c, _)| *c == call);
                at.map(|at| script.remove(at).1)
            };
            let (status, body) = match answer {
                Some(body) => ("200 OK", body),
                None => (
                    "500 Internal Server Error",
                    br#"{"errorType":"Runtime.ShuttingDown","errorMessage":"gone"}"#.to_vec(),
                ),
            };
            let mut response = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            response.extend_from_slice(&body);
            if stream.write_all(&response).await.is_err() {
                return;
            }
        }
    }

    /// Every request so far stated the version Gust speaks.
    fn assert_versioned(&self) {
        let requests = self.requests.lock().unwrap();
        assert!(!requests.is_empty());
        for head in requests.iter() {
            let stated = head.lines().any(|l| {
                l.split_once(':').is_some_and(|(name, value)| {
                    name.eq_ignore_ascii_case(control::HEADER) && value.trim() == control::VERSION
                })
            });
            assert!(stated, "a control call without its version: {head}");
        }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const STANDBY: &str = "GET /2018-06-01/runtime/gust/standby";
const FORKED: &str = "POST /2018-06-01/runtime/gust/forked";

/// Asserts that a bootstrap refused a message of version 2 in so many words.
fn assert_refused_version_2(status: ExitStatus, stderr: &str) {
    assert!(!status.success(), "{status:?}: {stderr}");
    assert!(
        stderr.contains("gust-control/2") && stderr.contains("gust-control/1"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_bootstrap_refuses_an_adoption_of_another_version() {
    let installed = Installed::new();
    let adoption = b"gust-control/2\0adopt\0env=A=1\0program=/bin/true\0".to_vec();
    let node = node();
    let runtimes = [
        (PathBuf::from(PYTHON), vec![installed.python()]),
        (node, vec![installed.node()]),
        (installed.stand_in(), vec![]),
    ];
    for (program, args) in runtimes {
        let api = Scripted::start(vec![(STANDBY, adoption.clone())]).await;
        let runtime = spawn(
            &program,
            &args,
            &[
                ("AWS_LAMBDA_RUNTIME_API", &api.address),
                ("_GUST_STANDBY", "1"),
            ],
        );
        let (status, _, stderr) = finished(runtime).await;
        assert_refused_version_2(status, &stderr);
        api.assert_versioned();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runtime_api_refuses_a_bootstrap_of_another_version() {
    let installed = Installed::new();
    let node = node();
    let python_9 = installed.python_of_version_9();
    let node_9 = installed.of_version_9(&installed.node());
    let stand_in_9 = installed.of_version_9(&installed.stand_in());
    let runtimes = [
        (PathBuf::from(PYTHON), vec![python_9]),
        (node, vec![node_9]),
        (stand_in_9, vec![]),
    ];
    for (program, args) in runtimes {
        let api = Api::start().await;
        let runtime = spawn(
            &program,
            &args,
            &[
                ("AWS_LAMBDA_RUNTIME_API", &api.address),
                ("_GUST_STANDBY", "1"),
            ],
        );
        let (status, _, stderr) = finished(runtime).await;
        assert!(!status.success(), "{status:?}: {stderr}");
        assert!(
            stderr.contains(
                "The bootstrap speaks gust-control/9; this Runtime API speaks gust-control/1."
            ),
            "{}: {stderr}",
            program.display()
        );
        assert!(!api.link.is_standing_by());
    }
}

/// One HTTP/1.1 exchange with the Runtime API: the status and the JSON body.
async fn exchange(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let mut request = format!(
        "{method} /2018-06-01/runtime/gust/{path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(LIMIT, stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runtime_api_refuses_other_versions_and_malformed_messages() {
    let api = Api::start().await;
    let speaks = [(control::HEADER, control::VERSION)];
    let exited = ExitReport { status: 9 }.encode().unwrap();
    for (method, path, headers, body) in [
        ("GET", "standby", &[][..], &b""[..]),
        (
            "GET",
            "standby",
            &[(control::HEADER, "gust-control/2")][..],
            b"",
        ),
        ("POST", "exited", &[][..], &exited[..]),
        ("POST", "forked", &[(control::HEADER, "2")][..], b""),
    ] {
        let (status, error) = exchange(&api.address, method, path, headers, body).await;
        assert_eq!(status, 400, "{path}: {error}");
        assert_eq!(error["errorType"], "Gust.UnsupportedProtocol", "{error}");
        let message = error["errorMessage"].as_str().unwrap();
        assert!(
            message.contains("this Runtime API speaks gust-control/1"),
            "{message}"
        );
    }
    for (path, body, why) in [
        ("exited", &b"9"[..], "does not end with a NUL"),
        ("exited", b"9\0", "not a gust-control/* message"),
        (
            "exited",
            b"gust-control/2\0exited\0status=9\0",
            "protocol gust-control/2",
        ),
        (
            "exited",
            b"gust-control/1\0exited\0status=nine\0",
            "status cannot be",
        ),
        (
            "forked",
            b"gust-control/1\0exited\0status=9\0",
            "where forked or fork-failed",
        ),
        (
            "forked",
            b"gust-control/1\0forked\0pid=0\0",
            "pid cannot be",
        ),
    ] {
        let (status, error) = exchange(&api.address, "POST", path, &speaks, body).await;
        assert_eq!(status, 400, "{path}: {error}");
        assert_eq!(error["errorType"], "Gust.InvalidMessage", "{error}");
        let message = error["errorMessage"].as_str().unwrap();
        assert!(message.contains(why), "{message}");
    }
    assert_eq!(api.link.reported_exit(), None);
    let (status, _) = exchange(&api.address, "POST", "exited", &speaks, &exited).await;
    assert_eq!(status, 202);
    assert_eq!(api.link.reported_exit(), Some(9));
}

/// Python's SnapStart snapshot process for a function in `installed`'s task root.
fn snapshot_process(installed: &Installed, address: &str) -> Child {
    forking_process(installed, address, "_GUST_SNAPSHOT")
}

/// A SnapStart snapshot process (`flag` `_GUST_SNAPSHOT`) or a runtime template
/// (`_GUST_TEMPLATE`): both fork on request.
fn forking_process(installed: &Installed, address: &str, flag: &str) -> Child {
    let gust_dir = installed.runtime_dir().join("gust");
    std::fs::create_dir_all(&gust_dir).unwrap();
    // Outside a sandbox nothing is confined: a policy with no seccomp programs (the fork
    // confines itself only in its environment's first process, which these tests never
    // reach).
    std::fs::write(
        gust_dir.join("confinement.json"),
        r#"{"Seccomp": {"Programs": []}}"#,
    )
    .unwrap();
    std::fs::write(
        installed.task_root().join("app.py"),
        "def handler(event, context):\n    return {}\n",
    )
    .unwrap();
    let runtime_dir = installed.runtime_dir().display().to_string();
    let task_root = installed.task_root().display().to_string();
    spawn(
        Path::new(PYTHON),
        &[installed.python()],
        &[
            ("AWS_LAMBDA_RUNTIME_API", address),
            ("LAMBDA_RUNTIME_DIR", &runtime_dir),
            ("LAMBDA_TASK_ROOT", &task_root),
            ("_HANDLER", "app.handler"),
            (flag, "1"),
        ],
    )
}

/// Waits until process `pid` is gone.
async fn gone(pid: u32) {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    tokio::time::timeout(LIMIT, async {
        while proc.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("process {pid} did not exit"));
}

/// Collects what `child` writes on stderr as it runs.
fn collect_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let mut stderr = child.stderr.take().unwrap();
    let collected = Arc::new(Mutex::new(String::new()));
    let sink = collected.clone();
    tokio::spawn(async move {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = stderr.read(&mut chunk).await {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    collected
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_process_forks_on_request_and_its_fork_takes_the_answer() {
    forks_on_request_and_the_fork_takes_the_answer("_GUST_SNAPSHOT").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_template_forks_on_request_and_its_fork_takes_the_answer() {
    forks_on_request_and_the_fork_takes_the_answer("_GUST_TEMPLATE").await;
}

async fn forks_on_request_and_the_fork_takes_the_answer(flag: &str) {
    let installed = Installed::new();
    let api = Api::start().await;
    let mut snapshot = forking_process(&installed, &api.address, flag);
    let snapshot_pid = snapshot.id().unwrap();
    let stderr = collect_stderr(&mut snapshot);
    for answer in [
        ForkAnswer::Abandon,
        ForkAnswer::Restore {
            environment: vec![("A".into(), "1".into())],
        },
    ] {
        api.standing_by(&mut snapshot).await;
        api.link
            .claim_standby(Claim::Fork(ForkRequest { tmp_mb: 64 }));
        let report = tokio::time::timeout(LIMIT, api.link.fork_reported())
            .await
            .expect("the fork was reported")
            .unwrap();
        let pid = match report {
            ForkReport::Forked { pid } => pid,
            ForkReport::Failed { reason } => {
                // No user namespaces here: the report still names why.
                assert!(!reason.is_empty());
                eprintln!("no fork on this host ({reason}); the fork's answer is not checked");
                api.link.answer_fork(ForkAnswer::Abandon);
                return;
            }
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(
            status
                .lines()
                .any(|l| l == format!("PPid:\t{snapshot_pid}")),
            "{status}"
        );
        let restore = matches!(answer, ForkAnswer::Restore { .. });
        api.link.answer_fork(answer);
        gone(pid).await;
        // Abandoned, the fork just exits. Restored, it goes on to connect its output, which
        // only Gust's sandbox provides, and ends there.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let said = stderr.lock().unwrap().clone();
        assert_eq!(
            said.contains("gust fork: starting the environment failed: "),
            restore,
            "{said}"
        );
    }
    // And the snapshot process waits for the next request.
    api.standing_by(&mut snapshot).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_process_refuses_a_fork_request_of_another_version() {
    let installed = Installed::new();
    let request = b"gust-control/2\0fork\0tmp-mb=64\0".to_vec();
    let api = Scripted::start(vec![(STANDBY, request)]).await;
    let snapshot = snapshot_process(&installed, &api.address);
    let (status, _, stderr) = finished(snapshot).await;
    assert_refused_version_2(status, &stderr);
    api.assert_versioned();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_refuses_an_answer_of_another_version() {
    let installed = Installed::new();
    let request = Claim::Fork(ForkRequest { tmp_mb: 64 }).encode().unwrap();
    let answer = b"gust-control/2\0abandon\0".to_vec();
    let api = Scripted::start(vec![(STANDBY, request), (FORKED, answer)]).await;
    let snapshot = snapshot_process(&installed, &api.address);
    // The snapshot process hands the answer to its fork and ends at the next standby (which
    // the script refuses); the fork shares its stderr.
    let (status, _, stderr) = finished(snapshot).await;
    assert!(status.success(), "{status:?}: {stderr}");
    api.assert_versioned();
    let forked = api
        .requests
        .lock()
        .unwrap()
        .iter()
        .any(|head| head.starts_with(FORKED));
    assert!(forked, "no fork report");
    if stderr.contains("starting the environment failed") {
        eprintln!("no fork on this host: {stderr}");
        return;
    }
    assert!(
        stderr.contains("gust fork: Gust sent a message of protocol 'gust-control/2'; this runtime speaks gust-control/1"),
        "{stderr}"
    );
}
