//! The engine over a control plane made up for the test, on the process launcher (plain
//! child processes: no root, no sandbox): provisioned concurrency is reconciled, served and
//! retired as its configuration changes.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gust_invoke::admission::ConcurrencyLimits;
use gust_invoke::control_plane::CollectFuture;
use gust_invoke::{ControlPlane, InvokeRequest, Invoker, Platform, ProvisionedState, Settings};
use gust_model::{Arns, FunctionConfig, FunctionRef, ProvisionedConfig};
use gust_runtimes::{Family, Provider, RuntimeTable};
use gust_sandbox::ProcessLauncher;
use tokio::sync::broadcast;

/// One function version and the provisioned concurrency asked for it.
struct Fixed {
    version: Arc<FunctionConfig>,
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
        *config == *self.version
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_environments_follow_their_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let runtimes = RuntimeTable::discover(&dir.path().join("runtime"), &BTreeMap::new());
    runtimes.install().unwrap();
    let Some(python) = runtimes.entries().iter().find(|e| {
        e.runtime.family == Family::Python && matches!(e.provider, Provider::Interpreter { .. })
    }) else {
        panic!("no Python interpreter on this host");
    };
    let mut version = FunctionConfig::sample("f");
    version.version = "1".into();
    version.runtime = Some(python.runtime.id.to_string());
    let task = dir
        .path()
        .join("code")
        .join(&version.code.digest_hex)
        .join("task");
    std::fs::create_dir_all(&task).unwrap();
    std::fs::write(
        task.join("app.py"),
        "def handler(event, context):\n    return event\n",
    )
    .unwrap();
    let control = Arc::new(Fixed {
        version: Arc::new(version),
        requested: Mutex::new(2),
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
            memory_budget_mb: 10_000,
            standbys_per_runtime: 0,
            standby_task_root: dir.path().join("standby"),
        },
    );
    let status = || invoker.provisioned_status("f", "1", *control.requested.lock().unwrap());

    invoker.reconcile_provisioned();
    wait_until("two provisioned environments", || {
        status().state == ProvisionedState::Ready
    })
    .await;
    assert_eq!(invoker.idle_environments(), 2);
    assert_eq!(invoker.committed_memory_mb(), 256, "two claims of 128 MB");

    let response = invoker
        .invoke(InvokeRequest {
            function: FunctionRef {
                name: "f".into(),
                qualifier: Some("1".into()),
                region: None,
                account: None,
            },
            config: control.version.clone(),
            request_id: "r-1".into(),
            payload: Bytes::from_static(b"{\"hello\": 1}"),
            client_context: None,
            tenant_id: None,
        })
        .await
        .unwrap();
    assert!(!response.function_error, "{:?}", response.body);
    assert_eq!(response.body.as_ref(), b"{\"hello\": 1}");
    assert_eq!(response.executed_version, "1");
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
