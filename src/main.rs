//! The `vigil` command line: `run`, `check`, `test rules`, `status`, `healthcheck`,
//! `dashboards render|push`, `silence add|list|expire`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vigil::api::status::{StatusReport, render_text};
use vigil::health::Overall;
use vigil::logging::{self, LogFormat};
use vigil::{Daemon, config};

/// `print!` to stdout that does not panic when stdout is closed (`vigil … | head`):
/// what cannot be written is dropped, and the exit code still gives the outcome.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

/// `println!`, as [`out!`].
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `eprintln!`, as [`out!`]: a closed stderr is not a panic either.
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// Vigil: the health-monitoring sidecar of the Watch Together server.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon until SIGTERM or Ctrl-C.
    Run {
        /// The config file.
        #[arg(long, short, env = "VIGIL_CONFIG", default_value = "vigil.yaml")]
        config: PathBuf,
        /// Log format: auto (JSON unless stderr is a terminal), json, pretty.
        #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
        log_format: LogFormat,
    },
    /// Validate the config; print `ok`, or every problem as file:line:col (exit 2).
    Check {
        /// The config file.
        #[arg(long, short, env = "VIGIL_CONFIG", default_value = "vigil.yaml")]
        config: PathBuf,
    },
    /// Run rule unit tests (promtool's format): `vigil test rules FILE...`.
    Test {
        #[command(subcommand)]
        what: TestCommand,
    },
    /// Print a running daemon's /status as a table. Exit 0 ok, 1 degraded, 2 down,
    /// 3 when the daemon cannot be reached.
    Status {
        /// The daemon's base URL.
        #[arg(long, env = "VIGIL_URL", default_value = "http://127.0.0.1:9464")]
        url: String,
        /// Print the JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// The container health check: GET a local daemon's /healthz; exit 0 when it
    /// answers 200, 1 otherwise (the runtime image has no curl).
    Healthcheck {
        /// The URL to ask.
        #[arg(
            long,
            env = "VIGIL_HEALTHCHECK_URL",
            default_value = "http://127.0.0.1:9464/healthz"
        )]
        url: String,
    },
    /// Render or upload the CloudWatch dashboards of dashboards/.
    Dashboards {
        #[command(subcommand)]
        what: DashboardsCommand,
    },
    /// Add, list or expire silences on a running daemon (needs VIGIL_API_TOKEN).
    Silence {
        /// The daemon's base URL.
        #[arg(
            long,
            env = "VIGIL_URL",
            default_value = "http://127.0.0.1:9464",
            global = true
        )]
        url: String,
        #[command(subcommand)]
        what: SilenceCommand,
    },
}

#[derive(Debug, Subcommand)]
enum SilenceCommand {
    /// Mute alerts matching every MATCHER (name="value", name=~"regex", …) for a while.
    Add {
        /// Matchers, e.g. 'alertname="CacheDown"'.
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long, e.g. 2h.
        #[arg(long, default_value = "1h")]
        duration: String,
        /// Who silences (defaults to $USER).
        #[arg(long, env = "USER")]
        author: String,
        /// Why.
        #[arg(long)]
        comment: String,
    },
    /// List silences and their state.
    List,
    /// End a silence now.
    Expire {
        /// The silence's id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum DashboardsCommand {
    /// Print the dashboards as one JSON object, dashboard name → body.
    Render {
        #[command(flatten)]
        target: DashboardTarget,
    },
    /// Upload the dashboards with PutDashboard (credentials and region as for any
    /// AWS tool; AWS_ENDPOINT_URL for a local AWS).
    Push {
        #[command(flatten)]
        target: DashboardTarget,
    },
}

/// Which dashboards, for which environment.
#[derive(Debug, clap::Args)]
struct DashboardTarget {
    /// The environment (`${environment}`; dashboards are named `<env>-watch-together-<file>`).
    #[arg(long = "env")]
    environment: String,
    /// The region (`${region}`).
    #[arg(long, env = "AWS_REGION")]
    region: String,
    /// The AWS account (`${account_id}`, in the alarm widget's ARNs).
    #[arg(long, env = "AWS_ACCOUNT_ID")]
    account_id: String,
    /// The directory of dashboard bodies.
    #[arg(long, default_value = "dashboards")]
    dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum TestCommand {
    /// Run the unit tests in each FILE; exit 1 when one fails.
    Rules {
        /// Test files in promtool's format.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match config::load(&config) {
            Ok(_) => {
                outln!("ok");
                ExitCode::SUCCESS
            }
            Err(problems) => {
                outln!("{problems}");
                ExitCode::from(2)
            }
        },
        Command::Run { config, log_format } => {
            let config = match config::load(&config) {
                Ok(c) => c,
                Err(problems) => {
                    errln!("{problems}");
                    return ExitCode::from(2);
                }
            };
            logging::init(log_format);
            match runtime().and_then(|rt| rt.block_on(run(config))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(message = "Vigil failed.", error = format!("{e:#}"));
                    errln!("vigil: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Test {
            what: TestCommand::Rules { files },
        } => {
            let mut passed = true;
            for f in files {
                let result = vigil::rules::unittest::run_file(&f);
                out!("{}", result.report);
                passed &= result.passed;
            }
            if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Silence { url, what } => silence(&url, what),
        Command::Dashboards { what } => dashboards(what),
        Command::Healthcheck { url } => healthcheck(&url),
        Command::Status { url, json } => {
            match runtime().and_then(|rt| rt.block_on(fetch_status(&url))) {
                Ok((report, raw)) => {
                    if json {
                        outln!("{raw}");
                    } else {
                        out!("{}", render_text(&report));
                    }
                    ExitCode::from(match report.status {
                        Overall::Ok => 0,
                        Overall::Degraded => 1,
                        Overall::Down => 2,
                    })
                }
                Err(e) => {
                    errln!("vigil: {e:#}");
                    ExitCode::from(3)
                }
            }
        }
    }
}

/// Calls the silence API; prints the answer. Exit 0 on success, 2 for a refused
/// request (4xx), 3 when the daemon cannot be reached.
fn silence(url: &str, what: SilenceCommand) -> ExitCode {
    let token = std::env::var("VIGIL_API_TOKEN").unwrap_or_default();
    let base = url.trim_end_matches('/');
    let request = async {
        let client = vigil::peer::client(Duration::from_secs(10)).map_err(anyhow::Error::msg)?;
        let req = match &what {
            SilenceCommand::Add {
                matchers,
                duration,
                author,
                comment,
            } => {
                let d = vigil::settings::duration::parse(duration)
                    .map_err(|e| anyhow::anyhow!("--duration: {e}"))?;
                let end = chrono::Utc::now() + chrono::Duration::from_std(d)?;
                client
                    .post(format!("{base}/api/silences"))
                    .json(&serde_json::json!({
                        "matchers": matchers,
                        "endsAt": end,
                        "createdBy": author,
                        "comment": comment,
                    }))
            }
            SilenceCommand::List => client.get(format!("{base}/api/silences")),
            SilenceCommand::Expire { id } => client.delete(format!("{base}/api/silences/{id}")),
        };
        let resp = req
            .bearer_auth(&token)
            .send()
            .await
            .with_context(|| format!("cannot reach Vigil at {base}"))?;
        let status = resp.status();
        let mut resp = resp;
        let bytes = vigil::peer::read_body(&mut resp, vigil::peer::JSON_BODY_BYTES)
            .await
            .unwrap_or_default();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        anyhow::Ok((status, body))
    };
    match runtime().and_then(|rt| rt.block_on(request)) {
        Ok((status, body)) if status.is_success() => {
            match what {
                SilenceCommand::Add { .. } => {
                    outln!("{}", body["silenceID"].as_str().unwrap_or(""))
                }
                SilenceCommand::Expire { id } => outln!("expired {id}"),
                SilenceCommand::List => {
                    for s in body["silences"].as_array().into_iter().flatten() {
                        let matchers: Vec<String> = s["matchers"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|m| {
                                let op = match (m["isEqual"].as_bool(), m["isRegex"].as_bool()) {
                                    (Some(true), Some(false)) => "=",
                                    (Some(false), Some(false)) => "!=",
                                    (Some(true), Some(true)) => "=~",
                                    _ => "!~",
                                };
                                format!("{}{op}{}", m["name"].as_str().unwrap_or(""), m["value"])
                            })
                            .collect();
                        outln!(
                            "{}  {:<8} until {}  {}  by {}: {}",
                            s["id"].as_str().unwrap_or(""),
                            s["status"]["state"].as_str().unwrap_or(""),
                            s["endsAt"].as_str().unwrap_or(""),
                            matchers.join(","),
                            s["createdBy"].as_str().unwrap_or(""),
                            s["comment"].as_str().unwrap_or("")
                        );
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            errln!(
                "vigil: {status}: {}",
                body["reason"].as_str().unwrap_or("no reason given")
            );
            ExitCode::from(2)
        }
        Err(e) => {
            errln!("vigil: {e:#}");
            ExitCode::from(3)
        }
    }
}

/// `vigil dashboards render|push`. Exit 0, 2 for a broken dashboard file, 1 when
/// CloudWatch refuses.
fn dashboards(what: DashboardsCommand) -> ExitCode {
    let (DashboardsCommand::Render { target } | DashboardsCommand::Push { target }) = &what;
    let rendered = match vigil::dashboards::render(
        &target.dir,
        &target.environment,
        &target.region,
        &target.account_id,
    ) {
        Ok(r) => r,
        Err(e) => {
            errln!("vigil: {e}");
            return ExitCode::from(2);
        }
    };
    match what {
        DashboardsCommand::Render { .. } => {
            let all: serde_json::Map<String, serde_json::Value> = rendered
                .iter()
                .map(|d| {
                    let body = serde_json::from_str(&d.body).expect("render checked the JSON");
                    (d.name.clone(), body)
                })
                .collect();
            outln!(
                "{}",
                serde_json::to_string_pretty(&all).expect("JSON values serialize")
            );
            ExitCode::SUCCESS
        }
        DashboardsCommand::Push { target } => {
            let push = async {
                let client = vigil::publish::cloudwatch::client(Some(&target.region)).await;
                vigil::dashboards::push(&client, &rendered).await
            };
            match runtime()
                .map_err(|e| format!("{e:#}"))
                .and_then(|rt| rt.block_on(push))
            {
                Ok(results) => {
                    for (name, messages) in results {
                        outln!("pushed {name}");
                        for m in messages {
                            outln!("  CloudWatch says: {m}");
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    errln!("vigil: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `vigil healthcheck`: 0 when `url` answers 200 within 3 s.
fn healthcheck(url: &str) -> ExitCode {
    let ask = async {
        let client = vigil::peer::client(Duration::from_secs(3)).map_err(anyhow::Error::msg)?;
        let resp = client.get(url).send().await?;
        let status = resp.status();
        let body = vigil::peer::error_body(resp).await;
        anyhow::Ok((status, body))
    };
    match runtime().and_then(|rt| rt.block_on(ask)) {
        Ok((status, _)) if status.is_success() => ExitCode::SUCCESS,
        Ok((status, body)) => {
            errln!("unhealthy: {url} answered {status}: {body}");
            ExitCode::FAILURE
        }
        Err(e) => {
            errln!("unhealthy: {url}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn run(config: config::Config) -> anyhow::Result<()> {
    let daemon = Daemon::build(config).await?;
    daemon.run(shutdown_signal()).await?;
    Ok(())
}

async fn fetch_status(base: &str) -> anyhow::Result<(StatusReport, String)> {
    let url = format!("{}/status?format=json", base.trim_end_matches('/'));
    let client = vigil::peer::client(Duration::from_secs(10)).map_err(anyhow::Error::msg)?;
    let mut resp = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach Vigil at {url}"))?;
    // A status document is some kilobytes; whatever answers there, at most 16 MiB.
    let raw = vigil::peer::read_body(&mut resp, 16 * vigil::peer::JSON_BODY_BYTES)
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    let raw = String::from_utf8(raw)
        .with_context(|| format!("{url} answered bytes that are not UTF-8"))?;
    let report = serde_json::from_str(&raw)
        .with_context(|| format!("{url} did not answer a status document"))?;
    Ok((report, raw))
}

/// Completes on SIGTERM (what ECS sends) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
