//! The end-to-end harness: a real `gust serve` on a free port with its own data directory,
//! driven with the official AWS SDK for Rust and, where the SDK cannot show the wire (status
//! codes and headers of arbitrary requests), with raw HTTP.

use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_sdk_lambda::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Environment, FunctionCode, Runtime};
use zip::write::SimpleFileOptions;

pub const ROLE: &str = "arn:aws:iam::123456789012:role/gust-test";

/// A running `gust serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub address: String,
    /// `host:port` of the HTTP route gateway.
    pub gateway: String,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

/// The interpreters the tests need: their absence fails the test with a message saying what
/// to install, never a silent skip.
pub fn require_interpreters() {
    for (program, package) in [("python3", "python3"), ("node", "nodejs")] {
        let found = Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "{program} is required by Gust's end-to-end tests: install it (Debian: apt install {package})"
        );
    }
}

impl Server {
    pub fn start() -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let mut server = Self::start_in(&data_dir, &[]);
        server._temp = Some(temp);
        server
    }

    pub fn start_with(args: &[&str]) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let mut server = Self::start_in(&data_dir, args);
        server._temp = Some(temp);
        server
    }

    /// Starts a server on an existing data directory (to test restarts).
    pub fn start_in(data_dir: &Path, args: &[&str]) -> Self {
        require_interpreters();
        std::fs::create_dir_all(data_dir).unwrap();
        let log = std::fs::File::create(data_dir.with_extension("log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gust"))
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(["--gateway-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", "warn,gust=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start gust serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut api = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(addr) = line.strip_prefix("Gust listening on http://") {
                    api = Some(addr.to_string());
                }
                if let (Some(api), Some(gateway)) =
                    (&api, line.strip_prefix("Gust HTTP routes on http://"))
                {
                    let _ = tx.send((api.clone(), gateway.to_string()));
                }
            }
        });
        let (address, gateway) = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "gust serve did not start; its log: {}",
                    std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default()
                )
            });
        Self {
            child,
            address,
            gateway,
            data_dir: data_dir.to_path_buf(),
            _temp: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn client(&self) -> aws_sdk_lambda::Client {
        let http = aws_smithy_http_client::Builder::new().build_http();
        let config = aws_sdk_lambda::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "AKIDGUSTTEST",
                "secret",
                None,
                None,
                "test",
            ))
            .endpoint_url(self.endpoint())
            .http_client(http)
            .build();
        aws_sdk_lambda::Client::from_conf(config)
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }

    /// Stops the server (SIGKILL: nothing is flushed on the way out).
    pub fn kill(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = self.data_dir.clone();
        // Keep the temp dir alive for the caller's restart.
        if let Some(temp) = self._temp.take() {
            std::mem::forget(temp);
        }
        dir
    }

    /// Sends SIGTERM and waits for the server to exit; returns how long that took.
    pub fn terminate(mut self) -> (Duration, PathBuf) {
        let started = std::time::Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let elapsed = started.elapsed();
        let dir = self.data_dir.clone();
        if let Some(temp) = self._temp.take() {
            std::mem::forget(temp);
        }
        (elapsed, dir)
    }

    /// Sends one raw HTTP request and returns (status, headers lower-cased, body).
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        raw_http(&self.address, method, path, headers, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts a Lambda error: status, `X-Amzn-ErrorType`, and the message (either spelling).
    pub fn assert_error(&self, status: u16, code: &str, message: &str) {
        assert_eq!(self.status, status, "status of {self:?}");
        assert_eq!(self.header("x-amzn-errortype"), Some(code), "{self:?}");
        let doc = self.json();
        let got = doc["message"]
            .as_str()
            .or(doc["Message"].as_str())
            .unwrap_or_default();
        assert!(
            got.contains(message),
            "message {got:?} does not contain {message:?}"
        );
        assert!(self.header("x-amzn-requestid").is_some());
    }
}

pub fn raw_http(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (and close) before reading a body it refuses.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = raw[split + 4..].to_vec();
    RawResponse {
        status,
        headers,
        body,
    }
}

/// One zip entry: name, content, unix mode.
pub type ZipEntry<'a> = (&'a str, &'a [u8], u32);

/// A zip of the given entries.
pub fn zip_of(files: &[ZipEntry]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, content, mode) in files {
        w.start_file(
            *name,
            SimpleFileOptions::default()
                .unix_permissions(*mode)
                .compression_method(zip::CompressionMethod::Deflated),
        )
        .unwrap();
        w.write_all(content).unwrap();
    }
    w.finish().unwrap().into_inner()
}

pub fn python_zip(source: &str) -> Vec<u8> {
    zip_of(&[("app.py", source.as_bytes(), 0o644)])
}

/// Creates a function and returns its name.
pub async fn create(
    client: &aws_sdk_lambda::Client,
    name: &str,
    runtime: Runtime,
    handler: &str,
    zip: Vec<u8>,
) -> aws_sdk_lambda::operation::create_function::CreateFunctionOutput {
    client
        .create_function()
        .function_name(name)
        .runtime(runtime)
        .handler(handler)
        .role(ROLE)
        .code(FunctionCode::builder().zip_file(Blob::new(zip)).build())
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"))
}

pub async fn create_with_env(
    client: &aws_sdk_lambda::Client,
    name: &str,
    runtime: Runtime,
    handler: &str,
    zip: Vec<u8>,
    timeout: i32,
    vars: &[(&str, &str)],
) {
    let mut env = Environment::builder();
    for (k, v) in vars {
        env = env.variables(*k, *v);
    }
    client
        .create_function()
        .function_name(name)
        .runtime(runtime)
        .handler(handler)
        .role(ROLE)
        .timeout(timeout)
        .environment(env.build())
        .code(FunctionCode::builder().zip_file(Blob::new(zip)).build())
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
}

/// The result of one invocation, as a client sees it.
#[derive(Debug)]
pub struct Invoked {
    pub status: i32,
    pub function_error: Option<String>,
    pub executed_version: Option<String>,
    pub payload: serde_json::Value,
    pub log: String,
}

pub async fn invoke(
    client: &aws_sdk_lambda::Client,
    name: &str,
    payload: serde_json::Value,
) -> Invoked {
    invoke_bytes(client, name, serde_json::to_vec(&payload).unwrap()).await
}

pub async fn invoke_bytes(
    client: &aws_sdk_lambda::Client,
    name: &str,
    payload: Vec<u8>,
) -> Invoked {
    use base64::Engine;
    let out = client
        .invoke()
        .function_name(name)
        .payload(Blob::new(payload))
        .log_type(aws_sdk_lambda::types::LogType::Tail)
        .send()
        .await
        .unwrap_or_else(|e| panic!("invoke {name}: {e:?}"));
    let raw = out
        .payload()
        .map(|b| b.as_ref().to_vec())
        .unwrap_or_default();
    let log = out
        .log_result()
        .map(|l| {
            String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(l).unwrap())
                .into_owned()
        })
        .unwrap_or_default();
    Invoked {
        status: out.status_code(),
        function_error: out.function_error().map(str::to_string),
        executed_version: out.executed_version().map(str::to_string),
        payload: serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null),
        log,
    }
}

/// Status, `X-Amzn-ErrorType` and message of a failed SDK call.
pub fn service_error<E>(
    err: aws_sdk_lambda::error::SdkError<E, aws_sdk_lambda::config::http::HttpResponse>,
) -> (u16, String, String)
where
    E: aws_sdk_lambda::error::ProvideErrorMetadata + std::fmt::Debug,
{
    match err {
        aws_sdk_lambda::error::SdkError::ServiceError(ctx) => {
            let raw = ctx.raw();
            let header = raw
                .headers()
                .get("x-amzn-errortype")
                .unwrap_or_default()
                .to_string();
            let code = ctx.err().code().unwrap_or_default().to_string();
            assert_eq!(header, code, "the SDK's code comes from X-Amzn-ErrorType");
            (
                raw.status().as_u16(),
                code,
                ctx.err().message().unwrap_or_default().to_string(),
            )
        }
        other => panic!("expected a service error, got {other:?}"),
    }
}

/// The unmodified `lambda_runtime` program built as this package's example.
pub fn rust_echo_binary() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_gust"));
    let path = exe.parent().unwrap().join("examples").join("rust_echo");
    assert!(
        path.is_file(),
        "{} is missing: `cargo test` builds it from crates/gust/examples/rust_echo.rs",
        path.display()
    );
    path
}

/// A function that appends each event to `$RECORD_DIR/<function>.log` as one JSON line, and
/// fails when the event asks it to.
pub fn recorder(fail: bool) -> Vec<u8> {
    let source = format!(
        r#"import json, os, time

def record(event, context, phase):
    line = json.dumps({{"event": event, "request_id": context.aws_request_id, "at": time.time(), "phase": phase}})
    with open(os.path.join(os.environ["RECORD_DIR"], context.function_name + ".log"), "a") as f:
        f.write(line + "\n")

def handler(event, context):
    record(event, context, "start")
    if {fail} or (isinstance(event, dict) and event.get("fail")):
        raise RuntimeError("failing on purpose")
    if isinstance(event, dict) and event.get("sleep"):
        time.sleep(event["sleep"])
        record(event, context, "done")
    return {{"ok": True}}
"#,
        fail = if fail { "True" } else { "False" }
    );
    python_zip(&source)
}

/// The invocations a recorder function started, in order.
pub fn records(dir: &Path, function: &str) -> Vec<serde_json::Value> {
    phase(dir, function, "start")
}

pub fn phase(dir: &Path, function: &str, phase: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(format!("{function}.log")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["phase"] == phase)
        .collect()
}

/// Polls until `ready` holds (or panics after `limit`).
pub async fn eventually<T>(limit: Duration, what: &str, mut ready: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn create_recorder(client: &aws_sdk_lambda::Client, name: &str, fail: bool, dir: &Path) {
    create_with_env(
        client,
        name,
        Runtime::from("python3.12"),
        "app.handler",
        recorder(fail),
        10,
        &[("RECORD_DIR", dir.to_str().unwrap())],
    )
    .await;
}

/// The `Max Memory Used` (MB) of the REPORT line in a call's log.
pub fn max_memory_used(log: &str) -> u64 {
    log.split("Max Memory Used: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no Max Memory Used in {log}"))
}

/// What the server logs for each environment forked from a runtime template.
pub const FORKED: &str = "environment forked from its runtime's template";

/// Waits until `server` has Python 3.12's runtime template ready (its first cold starts start it).
pub async fn runtime_template_ready(server: &Server) {
    eventually(Duration::from_secs(60), "the runtime's template", || {
        let status = server.raw("GET", "/gust/status", &[], b"").json();
        (status["RuntimeTemplates"] == serde_json::json!(["python3.12"])).then_some(())
    })
    .await;
}
