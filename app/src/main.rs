//! The `watch-together` binary: read the config from the environment, build the
//! application, serve until SIGTERM or Ctrl-C.
//!
//! `watch-together healthcheck` is the container's health check: it asks the server
//! running in the same container (`http://127.0.0.1:$PORT/api/health`) and exits 0
//! when it answers 200, 1 otherwise — the runtime image has no curl.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use watch_together::{Application, Config, shutdown_signal, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return Ok(healthcheck().await);
    }
    let config = Config::from_env().context("reading the configuration from the environment")?;
    telemetry::init_logging(config.log_format);
    let app = Application::build(config)
        .await
        .context("starting the Watch Together server")?;
    tracing::info!(message = "Listening.", addr = %app.local_addr());
    app.run_until_stopped(shutdown_signal()).await?;
    tracing::info!(message = "Stopped cleanly.");
    Ok(ExitCode::SUCCESS)
}

/// GET /api/health on the local server within 3 s; 0 when it answers 200.
async fn healthcheck() -> ExitCode {
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let ask = async {
        let mut s = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await?;
        s.write_all(b"GET /api/health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await?;
        std::io::Result::Ok(head)
    };
    match tokio::time::timeout(Duration::from_secs(3), ask).await {
        Ok(Ok(head)) if head.starts_with(b"HTTP/1.") && &head[9..12] == b"200" => ExitCode::SUCCESS,
        Ok(Ok(head)) => {
            eprintln!(
                "unhealthy: /api/health answered {}",
                String::from_utf8_lossy(&head)
            );
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("unhealthy: 127.0.0.1:{port}: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("unhealthy: /api/health did not answer within 3 s");
            ExitCode::FAILURE
        }
    }
}
