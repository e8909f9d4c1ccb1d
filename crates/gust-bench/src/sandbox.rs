//! What the Linux sandbox costs to set up, measured on the launchers directly: a hello world
//! started in a fresh sandbox (with and without the pool of ready network namespaces) beside
//! the same hello world started as a plain child process.

use std::io::Read;

use anyhow::Context;
use std::path::Path;
use std::time::{Duration, Instant};

use gust_runtime_api::control::{Adoption, Claim, Exec};
use gust_sandbox::linux::LinuxLauncher;
use gust_sandbox::{Launcher, ProcessLauncher, ProcessSpec, SandboxSpec};

use crate::report::{Report, Stats};

/// The floor's name in the report.
const FLOOR: &str = "hello world as a plain child (create+spawn+wait)";

/// A 128 MB sandbox with Lambda's default /tmp and no network, as the hello worlds use.
fn hello_spec(environment_id: String, code_dir: &Path, runtime_dir: &Path) -> SandboxSpec {
    SandboxSpec {
        environment_id,
        code_dir: code_dir.to_path_buf(),
        runtime_dir: runtime_dir.to_path_buf(),
        memory_mb: 128,
        ephemeral_storage_mb: 512,
        read_only_paths: Vec::new(),
        egress: false,
        zygote: false,
    }
}

/// Checks that the hello world succeeded and printed its greeting on `output`.
fn check_hello(
    status: std::process::ExitStatus,
    output: std::os::fd::OwnedFd,
) -> anyhow::Result<()> {
    let mut text = String::new();
    std::fs::File::from(output).read_to_string(&mut text)?;
    anyhow::ensure!(
        status.success() && text == "hello\n",
        "the hello world failed: {status} {text:?}"
    );
    Ok(())
}

/// Runs `hello` in a new sandbox of `launcher` `runs` times; returns the time from creating
/// the sandbox to the program's exit (teardown, which Gust does off the invoke path, excluded)
/// and, of that, the time `create` took (cgroups, /tmp, namespaces; the rest is starting the
/// process in them).
async fn time_launcher(
    launcher: &dyn Launcher,
    dir: &Path,
    runs: usize,
    pause: Duration,
) -> anyhow::Result<(Stats, Stats)> {
    let hello = ProcessSpec {
        program: "/bin/echo".into(),
        args: vec!["hello".into()],
        env: vec![],
    };
    let mut samples = Vec::with_capacity(runs);
    let mut creates = Vec::with_capacity(runs);
    for i in 0..runs + 5 {
        let spec = hello_spec(format!("bench{i}"), dir, dir);
        let started = Instant::now();
        let mut sandbox = launcher.create(&spec)?;
        let created = started.elapsed();
        let spawned = sandbox.spawn(&hello)?;
        let mut child = spawned.child;
        let status = child.wait().await?;
        let elapsed = started.elapsed();
        check_hello(status, spawned.output)?;
        sandbox.destroy();
        // The first few runs warm caches up.
        if i >= 5 {
            samples.push(elapsed);
            creates.push(created);
        }
        tokio::time::sleep(pause).await;
    }
    Ok((Stats::new(samples), Stats::new(creates)))
}

/// The request-path cost of a sandbox started ahead (as Gust keeps them for custom
/// runtimes): sandbox, Runtime API and stand-in are ready before the clock starts; timed is
/// handing it the code, the memory limit and the program (`/bin/echo hello`), up to the
/// program's exit.
async fn time_started_ahead(
    launcher: &dyn Launcher,
    dir: &Path,
    runs: usize,
    pause: Duration,
) -> anyhow::Result<Stats> {
    let runtime_dir = dir.join("runtime");
    let placeholder = dir.join("placeholder");
    std::fs::create_dir_all(&placeholder)?;
    gust_runtimes::install_standby(&runtime_dir)?;
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs + 5 {
        let mut sandbox =
            launcher.create(&hello_spec(format!("ahead{i}"), &placeholder, &runtime_dir))?;
        sandbox.run_in_background();
        let listener = sandbox
            .take_listener()
            .context("the sandbox has no Runtime API listener")?;
        let link = std::sync::Arc::new(gust_runtime_api::Link::new());
        let server =
            gust_runtime_api::spawn(tokio::net::TcpListener::from_std(listener)?, link.clone());
        let command = gust_runtimes::standby_command(sandbox.runtime_dir());
        let stand_in = ProcessSpec {
            program: command.program,
            args: command.args,
            env: vec![(
                "AWS_LAMBDA_RUNTIME_API".into(),
                sandbox.runtime_api_address().to_string(),
            )],
        };
        let spawned = sandbox.spawn(&stand_in)?;
        let mut child = spawned.child;
        let pid = child.id().context("the stand-in has no pid")?;
        tokio::time::timeout(Duration::from_secs(10), link.standing_by())
            .await
            .context("the stand-in did not get ready")?;
        let started = Instant::now();
        sandbox.assign(dir, 128, 512, pid)?;
        link.claim_standby(Claim::Adopt(Adoption {
            environment: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("LAMBDA_TASK_ROOT".into(), "/var/task".into()),
            ],
            exec: Some(Exec {
                program: "/bin/echo".into(),
                args: vec!["hello".into()],
            }),
        }));
        let status = child.wait().await?;
        let elapsed = started.elapsed();
        check_hello(status, spawned.output)?;
        server.abort();
        sandbox.destroy();
        if i >= 5 {
            samples.push(elapsed);
        }
        tokio::time::sleep(pause).await;
    }
    Ok(Stats::new(samples))
}

/// Sandboxes created, used for a hello world and torn down per second, by `concurrency`
/// creators at once for `duration`. As in Gust, a creator hands the teardown to a blocking
/// thread and goes on; the clock stops when every teardown has finished.
async fn creation_rate(
    launcher: std::sync::Arc<dyn Launcher>,
    dir: &Path,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (launcher, done, dir) = (launcher.clone(), done.clone(), dir.to_path_buf());
        workers.push(tokio::spawn(async move {
            let hello = ProcessSpec {
                program: "/bin/echo".into(),
                args: vec!["hello".into()],
                env: vec![],
            };
            let mut i = 0;
            let mut teardowns = Vec::new();
            while Instant::now() < deadline {
                let spec = hello_spec(format!("rate{w}-{i}"), &dir, &dir);
                i += 1;
                let mut sandbox = launcher.create(&spec)?;
                let spawned = sandbox.spawn(&hello)?;
                let mut child = spawned.child;
                anyhow::ensure!(child.wait().await?.success(), "the hello world failed");
                drop(spawned.output);
                teardowns.push(tokio::task::spawn_blocking(move || sandbox.destroy()));
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            for teardown in teardowns {
                teardown.await?;
            }
            anyhow::Ok(())
        }));
    }
    let started = Instant::now();
    for w in workers {
        w.await??;
    }
    Ok(done.load(std::sync::atomic::Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// Measures the floor and the sandbox with and without pools (the sandbox needs root).
pub async fn setup(report: &mut Report, runs: usize) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let code = temp.path().join("code");
    std::fs::create_dir_all(&code)?;
    // The pools refill between invocations in real use; give them the same chance here.
    let pause = Duration::from_millis(3);
    let plain = ProcessLauncher::new(temp.path().join("plain"))?;
    report.floor(FLOOR, time_launcher(&plain, &code, runs, pause).await?.0);
    let plain: std::sync::Arc<dyn Launcher> = std::sync::Arc::new(plain);
    let rate_floor = "plain children started and reaped/s, 8 at once";
    report.floor_rate(
        rate_floor,
        creation_rate(plain, &code, 8, Duration::from_secs(2)).await?,
    );
    if let Ok(launcher) = LinuxLauncher::new(temp.path().join("rate")) {
        let launcher: std::sync::Arc<dyn Launcher> = std::sync::Arc::new(launcher);
        let rate = creation_rate(launcher, &code, 8, Duration::from_secs(2)).await?;
        report.rate(
            "sandboxes created, used and torn down/s, 8 at once",
            rate,
            rate_floor,
        );
    }
    let pooled = match LinuxLauncher::new(temp.path().join("pooled")) {
        Ok(launcher) => launcher,
        Err(e) => {
            report.note("sandbox setup", format!("not measured: {e}"));
            return Ok(());
        }
    };
    report.note("sandbox", pooled.describe());
    let (stats, create) = time_launcher(&pooled, &code, runs, pause).await?;
    report.measure("sandbox setup + hello world, with pools", stats, FLOOR);
    report.measure("… of which creating the sandbox, with pools", create, FLOOR);
    let stats = time_started_ahead(&pooled, temp.path(), runs, pause).await?;
    report.measure(
        "sandbox setup + hello world, from a sandbox started ahead",
        stats,
        FLOOR,
    );
    drop(pooled);
    let unpooled = LinuxLauncher::with_ready_namespaces(temp.path().join("unpooled"), 0)?;
    let (stats, create) = time_launcher(&unpooled, &code, runs, pause).await?;
    report.measure("sandbox setup + hello world, without pools", stats, FLOOR);
    report.measure(
        "… of which creating the sandbox, without pools",
        create,
        FLOOR,
    );
    drop(unpooled);
    // The same with `gust serve --expedite-rcu`'s host tuning, restored afterwards.
    if let Ok(before) = gust_sandbox::linux::expedite_rcu(true) {
        let expedited = LinuxLauncher::new(temp.path().join("expedited"))?;
        let measured = time_launcher(&expedited, &code, runs, pause).await;
        let _ = gust_sandbox::linux::expedite_rcu(before);
        report.measure(
            "sandbox setup + hello world, with pools and --expedite-rcu",
            measured?.0,
            FLOOR,
        );
    }
    Ok(())
}
