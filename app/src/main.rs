//! The `watch-together` binary: read the config from the environment, build the
//! application, serve until SIGTERM or Ctrl-C.

use anyhow::Context;
use watch_together::{Application, Config, shutdown_signal, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env().context("reading the configuration from the environment")?;
    telemetry::init_logging(config.log_format);
    let app = Application::build(config)
        .await
        .context("starting the Watch Together server")?;
    tracing::info!(message = "Listening.", addr = %app.local_addr());
    app.run_until_stopped(shutdown_signal()).await?;
    tracing::info!(message = "Stopped cleanly.");
    Ok(())
}
