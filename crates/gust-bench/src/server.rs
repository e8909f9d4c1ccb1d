//! The `gust serve` under test, on a free port with a throwaway data directory.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use hyper::Method;

use crate::http::Connection;

pub struct Server {
    child: Child,
    pub address: String,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn start(gust: &Path, extra: &[String]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut child = Command::new(gust)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--gateway-listen",
                "off",
            ])
            // Lambda's request-rate quota (ten per second per unit of account concurrency)
            // would cap the throughput figures at 10,000/s: measure Gust, not the quota.
            .args(["--concurrency-limit", "10000"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("running {}", gust.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(address) = line.strip_prefix("Gust listening on http://") {
                        break address.to_string();
                    }
                }
                _ => {
                    let _ = child.kill();
                    bail!("gust serve exited before it was ready");
                }
            }
        };
        Ok(Self {
            child,
            address,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn isolation(&self, address: &str) -> anyhow::Result<String> {
        let mut conn = Connection::open(address).await?;
        let answer = conn
            .send(Method::GET, "/gust/status", &[], bytes::Bytes::new())
            .await?;
        let doc: serde_json::Value = serde_json::from_slice(&answer.body)?;
        Ok(doc["Isolation"].as_str().unwrap_or("unknown").to_string())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
