//! `gust-bench`: measures Gust against the floors it cannot beat, in one run.
//!
//! It starts its own `gust serve`, deploys a custom-runtime echo, a Python and a Node.js hello
//! world, and reports each figure beside its floor (process start, interpreter start, a bare
//! HTTP round trip on loopback) with the ratio between them. Medians and p99s only: one run on
//! a shared machine is noise. Cold starts at scale (hundreds of distinct functions) are in
//! [`scale`], on a server of their own.

mod http;
mod measure;
mod report;
mod sandbox;
mod scale;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::report::Report;

#[derive(Parser)]
#[command(
    name = "gust-bench",
    about = "Benchmark a Gust server against the floors measured in the same run"
)]
pub struct Args {
    /// The gust binary to benchmark [default: the `gust` next to this program].
    #[arg(long)]
    gust: Option<PathBuf>,
    /// Seconds each throughput measurement runs.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Samples for latency percentiles.
    #[arg(long, default_value_t = 2000)]
    samples: usize,
    /// Sandboxes set up per sandbox measurement.
    #[arg(long, default_value_t = 300)]
    sandboxes: usize,
    /// Cold starts measured per runtime.
    #[arg(long, default_value_t = 30)]
    cold_starts: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the results as a Markdown report (BENCHMARKS.md) here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Measure only the sandbox's setup cost (no server), e.g. while working on the sandbox.
    #[arg(long)]
    sandbox_only: bool,
    /// Cold starts at scale (issue 20): N distinct Python functions invoked once each, then
    /// again, then N more Python and N Node.js functions 32 at once (0 skips these).
    #[arg(long, default_value_t = 300)]
    scale_functions: usize,
    /// With the scale scenarios: M Python functions on a fresh server, each invoked once, and
    /// how many idle environments the server keeps (0 skips this).
    #[arg(long, default_value_t = 1000)]
    scale_idle: usize,
    /// Run only the scale scenarios and the floors they are reported beside.
    #[arg(long)]
    scale_only: bool,
    /// Extra arguments for `gust serve` (repeatable), e.g. --serve-arg=--isolation=process.
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    serve_args: Vec<String>,
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name(name))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.sandbox_only {
        let mut report = Report::new();
        sandbox::setup(&mut report, args.sandboxes).await?;
        report.print();
        return Ok(());
    }
    let gust = match &args.gust {
        Some(p) => p.clone(),
        None => sibling("gust")?,
    };
    let echo = sibling("bench-echo")?;
    anyhow::ensure!(
        gust.is_file(),
        "{} not found: build it with `cargo build --release -p gust -p gust-bench`",
        gust.display()
    );
    anyhow::ensure!(
        echo.is_file(),
        "{} not found: build it with `cargo build --release -p gust-bench`",
        echo.display()
    );
    let duration = Duration::from_secs_f64(args.duration);
    let mut report = Report::new();
    let scale = scale::Options {
        functions: args.scale_functions,
        idle: args.scale_idle,
    };

    if args.scale_only {
        anyhow::ensure!(
            scale.functions > 0,
            "--scale-only needs --scale-functions above 0"
        );
        eprintln!("measuring floors…");
        {
            // A server only to learn which interpreters it runs.
            let server =
                server::Server::start(&gust, &args.serve_args).context("starting gust serve")?;
            report.note(
                "isolation",
                server
                    .isolation(&server.address)
                    .await
                    .unwrap_or_else(|_| "unknown".into()),
            );
            measure::floors(&mut report, &server.address, args.samples).await?;
        }
        eprintln!("cold starts at scale…");
        scale::run(&mut report, &gust, &args.serve_args, &scale).await?;
        return finish(&args, &report);
    }

    eprintln!("starting gust serve…");
    let server = server::Server::start(&gust, &args.serve_args).context("starting gust serve")?;
    let address = server.address.clone();
    report.note(
        "isolation",
        server
            .isolation(&address)
            .await
            .unwrap_or_else(|_| "unknown".into()),
    );
    measure::deploy(&address, &echo).await?;

    eprintln!("measuring floors…");
    measure::floors(&mut report, &address, args.samples).await?;

    eprintln!("warm invocations…");
    measure::warm(&mut report, &address, args.samples, duration).await?;
    eprintln!("function URLs…");
    measure::function_url(&mut report, &address, args.samples, duration).await?;
    eprintln!("cold starts…");
    {
        let mut forking_args = args.serve_args.clone();
        forking_args.extend(["--standby-runtimes".to_string(), "0".to_string()]);
        let mut fresh_args = forking_args.clone();
        fresh_args.extend(["--runtime-templates".to_string(), "false".to_string()]);
        let fresh = server::Server::start(&gust, &fresh_args)
            .context("starting gust serve --standby-runtimes 0 --runtime-templates false")?;
        measure::deploy(&fresh.address, &echo).await?;
        let forking = server::Server::start(&gust, &forking_args)
            .context("starting gust serve --standby-runtimes 0")?;
        measure::deploy(&forking.address, &echo).await?;
        let servers = measure::ColdServers {
            ahead: &address,
            fresh: &fresh.address,
            forking: &forking.address,
        };
        measure::cold(&mut report, &servers, args.cold_starts).await?;
    }
    eprintln!("SnapStart…");
    measure::snapstart(&mut report, &address, args.cold_starts).await?;
    eprintln!("asynchronous invocations…");
    measure::asynchronous(&mut report, &address, duration).await?;
    measure::memory(&mut report, &server).await?;
    drop(server);
    if scale.functions > 0 {
        eprintln!("cold starts at scale…");
        scale::run(&mut report, &gust, &args.serve_args, &scale).await?;
    }
    // The kernel frees the network namespaces and cgroups of the servers' environments in
    // the background after they exit (hundreds of them after the scenarios above); measuring
    // sandbox setup while it does measures that work too. `--sandbox-only` needs no pause.
    eprintln!("letting the kernel finish the servers' teardown…");
    tokio::time::sleep(Duration::from_secs(15)).await;
    eprintln!("sandbox setup…");
    sandbox::setup(&mut report, args.sandboxes).await?;
    finish(&args, &report)
}

/// Prints the report and writes the files asked for.
fn finish(args: &Args, report: &Report) -> anyhow::Result<()> {
    report.print();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report.to_json())?)?;
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, report.to_markdown())?;
    }
    Ok(())
}
