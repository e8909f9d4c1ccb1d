//! The `gust` command: `gust serve` runs the platform; the other subcommands are a small client
//! for people without the AWS CLI.

mod cli;
mod client;
mod package;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Gust: a self-hosted serverless platform that speaks AWS Lambda's interfaces.
#[derive(Parser)]
#[command(name = "gust", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Gust server (Lambda API, invoke path, execution environments).
    Serve(serve::ServeArgs),
    /// Create a function from a directory or .zip, or update it if it exists.
    Deploy(cli::DeployArgs),
    /// Invoke a function and print its result.
    Invoke(cli::InvokeArgs),
    /// List functions.
    #[command(alias = "list")]
    Ls(cli::ListArgs),
    /// Delete a function.
    #[command(alias = "delete")]
    Rm(cli::RemoveArgs),
    /// Show which interpreter serves each runtime id.
    Runtimes(cli::RuntimesArgs),
    /// Show the server's isolation, environments and asynchronous queues.
    Status(cli::StatusArgs),
    /// List, show, redrive or delete asynchronous invocations that failed for good.
    Dlq(cli::DlqArgs),
    /// Manage the HTTP routes of the gateway (`METHOD /path` -> function).
    Route(cli::RouteArgs),
}

/// Where the server keeps its state when `--data-dir` is not given: `$GUST_DATA_DIR`, else
/// `$XDG_DATA_HOME/gust`, else `~/.local/share/gust`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GUST_DATA_DIR") {
        return dir.into();
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("gust");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| ".".into());
    home.join(".local/share/gust")
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gust: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Deploy(args) => cli::deploy(args).await,
            Command::Invoke(args) => cli::invoke(args).await,
            Command::Ls(args) => cli::list(args).await,
            Command::Rm(args) => cli::remove(args).await,
            Command::Runtimes(args) => cli::runtimes(args).await,
            Command::Status(args) => cli::status(args).await,
            Command::Dlq(args) => cli::dlq(args).await,
            Command::Route(args) => cli::route(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gust: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
