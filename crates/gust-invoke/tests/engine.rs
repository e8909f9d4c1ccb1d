//! The engine over a control plane made up for the test, on the process launcher (plain
//! child processes: no root, no sandbox): provisioned concurrency is reconciled, served and
//! retired as its configuration changes.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gust_invoke::admission::ConcurrencyLimits;
use gust_invoke::control_plane::CollectFuture;
use gust_invoke::{
    ControlPlane, InvokeRequest, Invoker, MemoryPolicy, Platform, ProvisionedState, Settings,
};
use gust_model::{Arns, FunctionConfig, FunctionRef, ProvisionedConfig};
use gust_runtimes::{Family, Provider, RuntimeTable};
use gust_sandbox::ProcessLauncher;
use tokio::sync::broadcast;

/// Function versions (the first one's provisioned concurrency can be asked for).
struct Fixed {
    version: Arc<FunctionConfig>,
    others: Vec<Arc<FunctionConfig>>,
    requested: Mutex<u32>,
    changes: broadcast::Sender<String>,
    arns: Arns,
}

impl ConcurrencyLimits for Fixed {
    fn reserved(&self, _: &str) -> Option<u32> {
        None
    }
    fn unreserved_limit(&self) -> u32 {
        1000
    }
    fn concurrent_executions(&self) -> u32 {
        1000
    }
}

impl ControlPlane for Fixed {
    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }
    fn is_current(&self, config: &FunctionConfig) -> bool {
        std::iter::once(&self.version)
            .chain(&self.others)
            .any(|v| **v == *config)
    }
    fn newest_version(&self, _: &str) -> Option<Arc<FunctionConfig>> {
        Some(self.version.clone())
    }
    fn provisioned_targets(&self) -> Vec<(Arc<ProvisionedConfig>, Arc<FunctionConfig>)> {
        let requested = *self.requested.lock().unwrap();
        let config = ProvisionedConfig {
            function: self.version.name.clone(),
            qualifier: self.version.version.clone(),
            requested,
            last_modified: String::new(),
        };
        (requested > 0)
            .then(|| (Arc::new(config), self.version.clone()))
            .into_iter()
            .collect()
    }
    fn provisioned_version(&self, _: &str, _: &str) -> Option<Arc<FunctionConfig>> {
        (*self.requested.lock().unwrap() > 0).then(|| self.version.clone())
    }
    fn collect_garbage(&self, _: HashSet<String>) -> CollectFuture<'_> {
        Box::pin(async { Ok(0) })
    }
    fn arns(&self) -> &Arns {
        &self.arns
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "waited a minute for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A made-up host: a Python function `f` (version 1) and `others` more functions, each
/// of whose handlers runs `handler_body`; the engine under `policy` and `budget_mb`.
struct Host {
    _dir: tempfile::TempDir,
    control: Arc<Fixed>,
    invoker: Arc<Invoker>,
}

fn host(others: usize, handler_body: &str, policy: MemoryPolicy, budget_mb: u64) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let runtimes = RuntimeTable::discover(&dir.path().join("runtime"), &BTreeMap::new());
    runtimes.install().unwrap();
    let Some(python) = runtimes.entries().iter().find(|e| {
        e.runtime.family == Family::Python && matches!(e.provider, Provider::Interpreter { .. })
    }) else {
        panic!("no Python interpreter on this host");
    };
    let version = |name: String, version: &str| {
        let mut config = FunctionConfig::sample(&name);
        config.version = version.into();
        config.runtime = Some(python.runtime.id.to_string());
        config.code.digest_hex = "code".into();
        Arc::new(config)
    };
    let task = dir.path().join("code").join("code").join("task");
    std::fs::create_dir_all(&task).unwrap();
    std::fs::write(
        task.join("app.py"),
        format!("def handler(event, context):\n    {handler_body}\n    return event\n"),
    )
    .unwrap();
    let control = Arc::new(Fixed {
        version: version("f".into(), "1"),
        others: (0..others)
            .map(|i| version(format!("g{i}"), "$LATEST"))
            .collect(),
        requested: Mutex::new(0),
        changes: broadcast::channel(16).0,
        arns: Arns::new("us-east-1", "123456789012"),
    });
    let invoker = Invoker::new(
        control.clone(),
        Platform {
            region: "us-east-1".into(),
            runtimes: Arc::new(runtimes),
            launcher: Arc::new(ProcessLauncher::new(dir.path().join("environments")).unwrap()),
            code_root: dir.path().join("code"),
        },
        Settings {
            keep_alive: Duration::from_secs(600),
            sweep_interval: Duration::from_secs(600),
            memory_budget_mb: budget_mb,
            memory_policy: policy,
            standbys_per_runtime: 0,
            standby_task_root: dir.path().join("standby"),
            runtime_templates: true,
        },
    );
    Host {
        _dir: dir,
        control,
        invoker,
    }
}

async fn invoke(host: &Host, config: &Arc<FunctionConfig>, payload: &'static [u8]) -> Bytes {
    let response = host
        .invoker
        .invoke(InvokeRequest {
            function: FunctionRef {
                name: config.name.clone(),
                qualifier: Some(config.version.clone()),
                region: None,
                account: None,
            },
            config: config.clone(),
            request_id: uuid(),
            payload: Bytes::from_static(payload),
            client_context: None,
            tenant_id: None,
        })
        .await
        .unwrap();
    assert!(!response.function_error, "{:?}", response.body);
    assert_eq!(response.executed_version, config.version);
    response.body
}

fn uuid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("request-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_environments_follow_their_configuration() {
    let host = host(0, "pass", MemoryPolicy::Reserved, 10_000);
    let (control, invoker) = (&host.control, &host.invoker);
    *control.requested.lock().unwrap() = 2;
    let status = || invoker.provisioned_status("f", "1", *control.requested.lock().unwrap());

    invoker.reconcile_provisioned();
    wait_until("two provisioned environments", || {
        status().state == ProvisionedState::Ready
    })
    .await;
    assert_eq!(invoker.idle_environments(), 2);
    assert_eq!(invoker.committed_memory_mb(), 256, "two claims of 128 MB");

    let body = invoke(&host, &control.version, b"{\"hello\": 1}").await;
    assert_eq!(body.as_ref(), b"{\"hello\": 1}");
    assert_eq!(
        invoker.idle_environments(),
        2,
        "a provisioned environment goes back to the pool"
    );

    *control.requested.lock().unwrap() = 1;
    invoker.reconcile_provisioned();
    assert_eq!(invoker.idle_environments(), 1, "the surplus one retires");
    assert_eq!(status().allocated, 1);

    *control.requested.lock().unwrap() = 0;
    invoker.reconcile_provisioned();
    assert_eq!(invoker.idle_environments(), 0);
    wait_until("the retired environments' memory", || {
        invoker.committed_memory_mb() == 0
    })
    .await;
    invoker.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_environments_count_for_what_they_use_under_the_measured_policy() {
    // Five functions of 128 MB in a 300 MB budget: reserved, two stay idle; measured (a
    // Python runtime doing nothing uses a few MB), all five do.
    for (policy, kept) in [(MemoryPolicy::Reserved, 2), (MemoryPolicy::Measured, 5)] {
        let host = host(5, "pass", policy, 300);
        for config in &host.control.others {
            invoke(&host, config, b"{}").await;
        }
        assert_eq!(host.invoker.idle_environments(), kept, "{policy:?}");
        host.invoker.sweep().await;
        wait_until("the total under the budget", || {
            host.invoker.committed_memory_mb() <= 300
        })
        .await;
        host.invoker.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_pressure_idle_environments_retire_and_running_ones_finish() {
    // Each environment holds about 70 MB once it ran: in a 300 MB budget, some of five must
    // go; every invocation, including the five at once, still succeeds.
    let host = host(
        5,
        "globals().setdefault('held', bytearray(b'x' * (64 << 20)))",
        MemoryPolicy::Measured,
        300,
    );
    for config in &host.control.others {
        invoke(&host, config, b"{}").await;
    }
    let idle = host.invoker.idle_environments();
    assert!((2..5).contains(&idle), "{idle} idle");
    let all_at_once = host
        .control
        .others
        .iter()
        .map(|config| invoke(&host, config, b"{}"));
    futures_join_all(all_at_once).await;
    host.invoker.sweep().await;
    // What retired is torn down off the sweep's path; its memory returns when it is gone.
    wait_until("the total back under the budget", || {
        host.invoker.committed_memory_mb() <= 300
    })
    .await;
    assert!(host.invoker.idle_environments() >= 1);
    host.invoker.shutdown();
}

/// Runs the futures concurrently and waits for all of them.
async fn futures_join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) {
    let mut set = Vec::new();
    for future in futures {
        set.push(future);
    }
    let mut pinned: Vec<_> = set.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        pinned.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pinned.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}
