//! `gust serve`: wires the layers together and runs until SIGINT or SIGTERM.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use gust_api::{App, Front};
use gust_control::{Control, Settings as ControlSettings};
use gust_invoke::{
    AsyncQueue, Invoker, MemoryPolicy, Platform, QueueSettings, Settings as InvokeSettings,
};
use gust_model::Arns;
use gust_runtimes::RuntimeTable;
use gust_sandbox::linux::{LinuxLauncher, TmpPolicy};
use gust_sandbox::{Launcher, ProcessLauncher};
use gust_store::TriggerStore;
use gust_triggers::{Clock, Gateway, Routes, Schedules};
use tokio::net::TcpListener;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum IsolationArg {
    /// Each environment in its own namespaces, cgroups, seccomp and Landlock sandbox (needs
    /// root).
    Linux,
    /// Plain child processes: no isolation from the host. Only for trusted code.
    Process,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum MemoryPolicyArg {
    /// Idle environments count for what their sandbox really uses.
    Measured,
    /// Every environment counts for its full MemorySize.
    Reserved,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to serve the Lambda API on (port 0 picks a free port).
    #[arg(long, env = "GUST_LISTEN", default_value = "127.0.0.1:4878")]
    listen: String,
    /// Address of the HTTP route gateway (`gust route`); `off` runs no gateway.
    #[arg(long, env = "GUST_GATEWAY_LISTEN", default_value = "127.0.0.1:4879")]
    gateway_listen: String,
    /// Start the schedule clock at this time (Unix seconds or RFC 3339) instead of now, and let
    /// `PUT /gust/clock` set it: for tests and rehearsals of schedules.
    #[arg(long, value_name = "TIME")]
    clock_start: Option<String>,
    /// Where functions, code and runtime state are kept [default: $GUST_DATA_DIR, else
    /// $XDG_DATA_HOME/gust, else ~/.local/share/gust].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Region shown in ARNs and given to functions as AWS_REGION.
    #[arg(long, env = "GUST_REGION", default_value = "us-east-1")]
    region: String,
    /// Twelve-digit account id shown in ARNs.
    #[arg(long, env = "GUST_ACCOUNT_ID", default_value = "123456789012")]
    account_id: String,
    /// Most invocations running at once (Lambda's ConcurrentExecutions).
    #[arg(long, default_value_t = gust_model::limits::DEFAULT_CONCURRENT_EXECUTIONS)]
    concurrency_limit: u32,
    /// Seconds an idle execution environment is kept warm.
    #[arg(long, default_value_t = 300)]
    keep_alive: u64,
    /// Sandboxes kept started ahead of demand per kind (Python runtime, Node.js runtime and
    /// memory size, custom runtimes), for fast cold starts (0 turns this off).
    #[arg(long, default_value_t = 2)]
    standby_runtimes: usize,
    /// Fork Python environments from a loaded interpreter per runtime (a runtime template)
    /// rather than starting an interpreter for each; `false` starts each one afresh or from
    /// the runtimes started ahead. Forks of one template share its memory layout and hash
    /// secret: see the README.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    runtime_templates: bool,
    /// Total MemorySize (MB) of execution environments beyond which idle ones retire, least
    /// recently used first, to make room [default: 3/4 of the host's RAM].
    #[arg(long, value_name = "MB")]
    memory_budget: Option<u64>,
    /// What an idle environment counts for against the memory budget and the /tmp budget:
    /// `measured` (what its sandbox really uses and what its /tmp holds on the disk; its
    /// MemorySize and EphemeralStorage while it runs) or `reserved` (its full MemorySize and
    /// EphemeralStorage, always).
    #[arg(long, value_enum, default_value_t = MemoryPolicyArg::Measured)]
    memory_policy: MemoryPolicyArg,
    /// What live execution environments' /tmp may count for (MB; see --memory-policy), which
    /// is kept on the disk under the data directory; a new /tmp needs its full
    /// EphemeralStorage to fit, else idle environments retire, else the cold start fails with
    /// a clear error
    /// [default: 4 times the space free there when Gust starts; sparse files hold only what is written, and no /tmp is made while the disk is nearly full].
    #[arg(long, value_name = "MB")]
    tmp_budget: Option<u64>,
    /// Use this interpreter for a runtime id, e.g. python3.12=/opt/python/bin/python3.12
    /// (repeatable).
    #[arg(long = "interpreter", value_name = "RUNTIME=PATH")]
    interpreters: Vec<String>,
    /// Deploy the sample function `hello` (Python) if it does not exist yet.
    #[arg(long)]
    sample: bool,
    /// How execution environments are isolated.
    #[arg(long, value_enum, default_value = "linux")]
    isolation: IsolationArg,
    /// Make the kernel's RCU grace periods expedited, host-wide: sandboxes start with far
    /// less tail latency (moving a process into a cgroup waits for a grace period), at the
    /// cost of an interrupt on every CPU per grace period. Stays set after Gust exits.
    #[arg(long)]
    expedite_rcu: bool,
    /// Seconds to let running requests and asynchronous invocations finish after SIGTERM;
    /// asynchronous invocations still running then stay queued for the next start.
    #[arg(long, default_value_t = 10)]
    shutdown_grace: u64,
    /// Multiplies every asynchronous retry delay, backoff and event-age limit (1 = Lambda's
    /// timing: retries after about 1 and 2 minutes, events expire after their maximum age).
    /// Small values make tests of retries and expiry fast.
    #[arg(long, default_value_t = 1.0)]
    async_time_scale: f64,
}

const SAMPLE_NAME: &str = "hello";
const SAMPLE_SOURCE: &str = r#"import json


def handler(event, context):
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    print(f"Saying hello to {name}")
    return {
        "message": f"Hello, {name}!",
        "function": context.function_name,
        "requestId": context.aws_request_id,
    }
"#;

fn parse_interpreters(specs: &[String]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut configured = BTreeMap::new();
    for spec in specs {
        let Some((runtime, path)) = spec.split_once('=') else {
            bail!("--interpreter takes RUNTIME=PATH, got '{spec}'");
        };
        if gust_runtimes::ids::gust_runtime(runtime).is_none() {
            bail!("--interpreter: '{runtime}' is not a runtime Gust runs");
        }
        let path = PathBuf::from(path);
        if !gust_runtimes::resolve::is_native_executable(
            &std::fs::canonicalize(&path).unwrap_or(path.clone()),
        ) {
            bail!(
                "--interpreter: {} is not an executable binary (shell shims are refused: they cost ~90 ms per start)",
                path.display()
            );
        }
        configured.insert(runtime.to_string(), path);
    }
    Ok(configured)
}

fn sample_zip() -> anyhow::Result<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer.start_file("app.py", zip::write::SimpleFileOptions::default())?;
    writer.write_all(SAMPLE_SOURCE.as_bytes())?;
    Ok(writer.finish()?.into_inner())
}

async fn deploy_sample(control: &Control) -> anyhow::Result<()> {
    let r = gust_model::FunctionRef::parse(SAMPLE_NAME, gust_model::names::NameShape::Plain)?;
    if control.resolve(&r).is_ok() {
        return Ok(());
    }
    let request = serde_json::from_value(serde_json::json!({
        "FunctionName": SAMPLE_NAME,
        "Runtime": "python3.12",
        "Handler": "app.handler",
        "Role": format!("arn:aws:iam::{}:role/gust-sample", control.arns().account),
        "Description": "Gust's sample function",
        "Code": { "ZipFile": base64::engine::general_purpose::STANDARD.encode(sample_zip()?) },
    }))?;
    control
        .create(request)
        .await
        .map_err(|e| anyhow::anyhow!("could not deploy the sample function: {e}"))?;
    Ok(())
}

/// Three quarters of the host's RAM: the rest is for the host, Gust and the page cache.
fn default_memory_budget_mb() -> u64 {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .unwrap_or(4 * 1024 * 1024);
    total_kib / 1024 * 3 / 4
}

/// `--clock-start`: Unix seconds, or an RFC 3339 time.
fn parse_time_ms(text: &str) -> anyhow::Result<i64> {
    if let Ok(secs) = text.parse::<f64>() {
        return Ok((secs * 1000.0) as i64);
    }
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("--clock-start: '{text}' is neither Unix seconds nor RFC 3339"))?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Raises the soft limit on open files to the hard one: each environment holds several
/// descriptors (its namespaces, cgroup files, listener and output pipe).
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "could not raise the open-file limit");
        }
    }
}

fn linux_launcher(
    data_dir: &std::path::Path,
    tmp_budget: Option<u64>,
    memory_policy: MemoryPolicyArg,
) -> anyhow::Result<Arc<dyn Launcher>> {
    // /tmp follows the memory policy: an idle environment counts what it really holds of
    // the disk, or its full size.
    let tmp_policy = match memory_policy {
        MemoryPolicyArg::Measured => TmpPolicy::Measured,
        MemoryPolicyArg::Reserved => TmpPolicy::Reserved,
    };
    match LinuxLauncher::with_options(
        data_dir.join("environments"),
        gust_sandbox::linux::READY_NAMESPACES,
        tmp_budget,
        tmp_policy,
    ) {
        Ok(launcher) => {
            tracing::info!("isolation: linux — {}", launcher.describe());
            Ok(Arc::new(launcher))
        }
        Err(e) => bail!(
            "cannot isolate functions: {e:#}. Run Gust as root, or pass --isolation=process to \
             run functions as plain processes with no isolation from the host (trusted code only)"
        ),
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    if args.account_id.len() != 12 || !args.account_id.bytes().all(|b| b.is_ascii_digit()) {
        bail!(
            "--account-id must be twelve digits, got '{}'",
            args.account_id
        );
    }
    let arns = Arns::new(args.region.clone(), args.account_id.clone());
    if gust_model::FunctionRef::parse(&arns.function("x"), gust_model::names::NameShape::Plain)
        .is_err()
    {
        bail!(
            "--region '{}' is not a region name like us-east-1",
            args.region
        );
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(crate::default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let configured = parse_interpreters(&args.interpreters)?;

    let runtime_dir = data_dir.join("runtime");
    let runtimes =
        tokio::task::spawn_blocking(move || RuntimeTable::discover(&runtime_dir, &configured))
            .await
            .context("runtime discovery failed")?;
    runtimes.install().with_context(|| {
        format!(
            "cannot write the runtime bootstraps to {}",
            runtimes.runtime_dir().display()
        )
    })?;
    for entry in runtimes.entries() {
        match &entry.provider {
            gust_runtimes::Provider::Interpreter {
                interpreter, exact, ..
            } => tracing::debug!(
                runtime = entry.runtime.id,
                interpreter = %interpreter.path.display(),
                version = %interpreter.version,
                exact,
                "runtime resolved"
            ),
            gust_runtimes::Provider::Missing { what } => {
                tracing::warn!(
                    runtime = entry.runtime.id,
                    "no {what} interpreter found: functions with this runtime cannot run"
                )
            }
            gust_runtimes::Provider::FunctionBootstrap => {}
        }
    }
    let runtimes = Arc::new(runtimes);

    let control = Arc::new(
        Control::open(
            &data_dir,
            ControlSettings {
                arns: arns.clone(),
                concurrent_executions: args.concurrency_limit,
            },
        )
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?,
    );

    raise_open_file_limit();
    if args.expedite_rcu {
        match gust_sandbox::linux::expedite_rcu(true) {
            Ok(_) => tracing::info!("host tuning: /sys/kernel/rcu_expedited = 1"),
            Err(e) => bail!("--expedite-rcu: cannot write /sys/kernel/rcu_expedited: {e}"),
        }
    }
    let launcher: Arc<dyn Launcher> = match args.isolation {
        IsolationArg::Linux => linux_launcher(&data_dir, args.tmp_budget, args.memory_policy)?,
        IsolationArg::Process => {
            tracing::warn!(
                "isolation: process — functions run as plain child processes of Gust and are NOT \
                 isolated from the host, Gust's data or each other; run only trusted code"
            );
            Arc::new(
                ProcessLauncher::new(data_dir.join("environments"))
                    .context("cannot prepare the environments directory")?,
            )
        }
    };
    let isolation = launcher.isolation().name();
    // Runtimes started ahead see this empty directory as their code until a function adopts
    // them.
    let standby_task_root = data_dir.join("standby-task");
    std::fs::create_dir_all(&standby_task_root)
        .with_context(|| format!("cannot create {}", standby_task_root.display()))?;
    let invoker = Invoker::new(
        control.clone(),
        Platform {
            region: args.region.clone(),
            runtimes: runtimes.clone(),
            launcher,
            code_root: control.code_store().root().to_path_buf(),
        },
        InvokeSettings {
            keep_alive: Duration::from_secs(args.keep_alive),
            // Sweep often enough that an environment outlives its keep-alive by at most half.
            sweep_interval: Duration::from_millis((args.keep_alive * 500).clamp(200, 10_000)),
            memory_budget_mb: args.memory_budget.unwrap_or_else(default_memory_budget_mb),
            memory_policy: match args.memory_policy {
                MemoryPolicyArg::Measured => MemoryPolicy::Measured,
                MemoryPolicyArg::Reserved => MemoryPolicy::Reserved,
            },
            standbys_per_runtime: args.standby_runtimes,
            standby_task_root: standby_task_root.clone(),
            runtime_templates: args.runtime_templates,
        },
    );
    invoker.start();
    if !(args.async_time_scale > 0.0 && args.async_time_scale.is_finite()) {
        bail!("--async-time-scale must be a positive number");
    }
    let queue = AsyncQueue::open(
        &data_dir,
        control.clone(),
        invoker.clone(),
        QueueSettings {
            time_scale: args.async_time_scale,
            per_function_limit: (args.concurrency_limit as usize / 2).max(1),
        },
    )
    .context("cannot open the asynchronous invocation queue")?;
    queue.start();

    if args.sample {
        deploy_sample(&control).await?;
    }

    let clock = Arc::new(match &args.clock_start {
        Some(start) => Clock::starting_at(parse_time_ms(start)?),
        None => Clock::system(),
    });
    let trigger_store = Arc::new(std::sync::Mutex::new(
        TriggerStore::open(&data_dir.join("triggers.db"))
            .context("cannot open the trigger store (rules and routes)")?,
    ));
    let schedules = Schedules::open(trigger_store.clone(), arns.clone(), queue.clone(), clock)
        .context("cannot load the scheduled rules")?;
    schedules.start();
    let routes = Routes::open(control.clone(), trigger_store).context("cannot load the routes")?;
    let gateway = Arc::new(Gateway::new(
        control.clone(),
        Arc::new(invoker.clone()),
        routes,
    ));
    let gateway_listener = if args.gateway_listen == "off" {
        None
    } else {
        Some(
            TcpListener::bind(&args.gateway_listen)
                .await
                .with_context(|| {
                    format!(
                        "cannot listen on {} (--gateway-listen)",
                        args.gateway_listen
                    )
                })?,
        )
    };
    let gateway_address = match &gateway_listener {
        Some(l) => Some(l.local_addr()?.to_string()),
        None => None,
    };

    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    let app = Arc::new(App {
        control: control.clone(),
        invoker: invoker.clone(),
        queue: queue.clone(),
        runtimes,
        isolation,
        public_address: address.to_string(),
        gateway,
        gateway_address: gateway_address.clone(),
        schedules,
    });
    tracing::info!(
        %address,
        data_dir = %data_dir.display(),
        functions = control.account_usage().function_count,
        "Gust is serving the Lambda API"
    );
    println!("Gust listening on http://{address}");
    if let Some(gateway) = &gateway_address {
        println!("Gust HTTP routes on http://{gateway}");
    }
    if args.sample {
        println!(
            "Sample function '{SAMPLE_NAME}' is ready: gust invoke {SAMPLE_NAME} --payload '{{\"name\": \"you\"}}'"
        );
    }
    let _ = std::io::stdout().flush();

    let grace = Duration::from_secs(args.shutdown_grace);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop_signal = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let gateway_server = gateway_listener.map(|listener| {
        tokio::spawn(gust_api::serve(
            listener,
            app.clone(),
            Front::Gateway,
            stop_signal(stopped.clone()),
            grace,
        ))
    });
    let server = tokio::spawn(gust_api::serve(
        listener,
        app,
        Front::Api,
        stop_signal(stopped),
        grace,
    ));
    shutdown_signal().await;
    tracing::info!("shutting down: no new work; letting running work finish");
    let _ = stop.send(true);
    let (_, _) = tokio::join!(server, queue.shutdown(grace));
    if let Some(gateway) = gateway_server {
        let _ = gateway.await;
    }
    invoker.shutdown();
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
