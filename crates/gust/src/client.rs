//! A small HTTP client for the CLI subcommands, speaking the Lambda REST API to a Gust server.

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

/// Where the CLI finds the server: `--endpoint`, else `$GUST_ENDPOINT`, else the default.
#[derive(clap::Args, Clone)]
pub struct Endpoint {
    /// Gust server URL.
    #[arg(
        long,
        env = "GUST_ENDPOINT",
        default_value = "http://127.0.0.1:4878",
        global = true
    )]
    pub endpoint: String,
}

pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("the server answered with invalid JSON")
    }

    /// Turns a Lambda error response into an error that names the code and message.
    pub fn into_result(self) -> anyhow::Result<Self> {
        if self.status < 300 {
            return Ok(self);
        }
        let code = self
            .header("x-amzn-errortype")
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {}", self.status));
        let message = serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|doc| {
                doc.get("message")
                    .or_else(|| doc.get("Message"))
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned());
        Err(anyhow!("{code}: {message}"))
    }
}

pub struct Client {
    authority: String,
    endpoint: String,
}

impl Client {
    pub fn new(endpoint: &Endpoint) -> anyhow::Result<Self> {
        let url = endpoint.endpoint.trim_end_matches('/');
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("the endpoint must be an http:// URL, got '{url}'");
        };
        if rest.is_empty() || rest.contains('/') {
            bail!("the endpoint must be http://HOST:PORT, got '{url}'");
        }
        let authority = if rest.contains(':') {
            rest.to_string()
        } else {
            format!("{rest}:80")
        };
        Ok(Self {
            authority,
            endpoint: url.to_string(),
        })
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<Response> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| {
                format!(
                    "cannot reach Gust at {}. Start it with `gust serve`, or point --endpoint (or GUST_ENDPOINT) at a running server",
                    self.endpoint
                )
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake with the Gust server failed")?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority);
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .context("invalid request")?;
        let response = sender
            .send_request(request)
            .await
            .context("the Gust server did not answer")?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .context("the Gust server's answer was cut off")?
            .to_bytes();
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}
