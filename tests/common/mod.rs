//! What the daemon's integration tests share: the real app on port 0, the real
//! `vigil` binary with a config of the test's own, and reading `/status`.

#![allow(dead_code)]

pub mod page;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_testkit::ChildGuard;

/// Generous safety net for waits; the tests wait on conditions, not on time.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Starts the Watch Together server in this process against `database_url` and
/// `redis_url`, on a free port; it stops when the handle is dropped.
pub async fn start_app(database_url: &str, redis_url: &str) -> watch_together::Running {
    let (db, cache) = (database_url.to_string(), redis_url.to_string());
    let config = watch_together::Config::from_lookup(|name| match name {
        "PORT" => Some("0".into()),
        "BIND_LOCALHOST" => Some("1".into()),
        "LOG_FORMAT" => Some("json".into()),
        "DATABASE_URL" => Some(db.clone()),
        "REDIS_URL" => Some(cache.clone()),
        "DB_TIMEOUT_MS" => Some("500".into()),
        "CACHE_TIMEOUT_MS" => Some("500".into()),
        _ => None,
    })
    .unwrap();
    watch_together::Application::build(config)
        .await
        .expect("the app starts")
        .spawn()
}

/// A running `vigil run` process, killed when dropped.
/// The API token every test daemon runs with (`VIGIL_API_TOKEN`), unless a test
/// sets its own.
pub const TOKEN: &str = "vigil-test-api-token";

pub struct Vigil {
    /// The API's address, read from the "Listening." log line.
    pub addr: SocketAddr,
    /// The process.
    pub child: ChildGuard,
    /// Its log file (stderr).
    pub log: PathBuf,
    /// Holds the config, the state dir and the log.
    pub dir: tempfile::TempDir,
}

impl Vigil {
    /// Writes `probes_yaml` (the `probes:` list) into a config and starts the daemon.
    pub fn start(probes_yaml: &str) -> Vigil {
        Vigil::start_in(
            tempfile::tempdir().unwrap(),
            &format!("probes:\n{probes_yaml}"),
        )
    }

    /// Starts the daemon in `dir` (its state directory is `dir/state`) with `body`
    /// after the listen address; files the config names are relative to `dir`.
    pub fn start_in(dir: tempfile::TempDir, body: &str) -> Vigil {
        Vigil::start_with_env(dir, body, &[])
    }

    /// [`Vigil::start_in`] with extra environment variables.
    pub fn start_with_env(dir: tempfile::TempDir, body: &str, env: &[(&str, &str)]) -> Vigil {
        Vigil::spawn_with_env(dir, body, env).listening()
    }

    /// Starts the daemon as [`Vigil::start_with_env`] does, without waiting for it to
    /// listen.
    pub fn spawn_with_env(dir: tempfile::TempDir, body: &str, env: &[(&str, &str)]) -> Starting {
        let config = dir.path().join("vigil.yaml");
        let mut f = std::fs::File::create(&config).unwrap();
        write!(
            f,
            "listen: 127.0.0.1:0\nstate_dir: state\nenvironment: test\n{body}"
        )
        .unwrap();
        let log = dir.path().join("vigil.log");
        let _ = std::fs::remove_file(&log);
        let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["run", "--log-format", "json", "--config"])
            .arg(&config)
            .env("RUST_LOG", "debug")
            .env("VIGIL_API_TOKEN", TOKEN)
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(dir.path().join("vigil.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting vigil");
        Starting {
            child: ChildGuard(child),
            log,
            dir,
        }
    }
    /// `POST /-/reload` with `token`; the status code and the JSON answer.
    pub async fn reload_with(&self, token: Option<&str>) -> (u16, Value) {
        let mut req = reqwest::Client::new().post(format!("http://{}/-/reload", self.addr));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    /// `POST /-/reload` with the test token.
    pub async fn reload(&self) -> (u16, Value) {
        self.reload_with(Some(TOKEN)).await
    }

    /// GETs `path` and returns the status code and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = reqwest::Client::new()
            .get(format!("http://{}{path}", self.addr))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("vigil answers");
        let code = resp.status().as_u16();
        (code, resp.text().await.unwrap())
    }

    /// The `/status` JSON document and its HTTP status.
    pub async fn status(&self) -> (u16, Value) {
        let (code, body) = self.get("/status").await;
        (code, serde_json::from_str(&body).expect("status is JSON"))
    }

    /// One component of `/status` by name.
    pub async fn component(&self, name: &str) -> Value {
        let (_, status) = self.status().await;
        status["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no component {name} in {status}"))
    }

    /// Polls `/status` until `condition` holds for it.
    pub async fn wait_for(&self, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (_, status) = self.status().await;
            if condition(&status) {
                return status;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "gave up waiting for {what}; last /status: {status:#}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `/api/alerts` as JSON.
    pub async fn alerts(&self) -> Value {
        let (_, body) = self.get("/api/alerts").await;
        serde_json::from_str(&body).expect("alerts are JSON")
    }

    /// Polls `/api/alerts` until `condition` holds for the list.
    pub async fn wait_for_alerts(
        &self,
        what: &str,
        condition: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let v = self.alerts().await;
            let list = v["alerts"].as_array().cloned().unwrap_or_default();
            if condition(&list) {
                return list;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "gave up waiting for {what}; alerts: {v:#}\nlog:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops the daemon with SIGTERM and waits for it; returns the directory for a
    /// restart.
    pub fn stop(mut self) -> tempfile::TempDir {
        let pid = self.child.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        while self.child.0.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < DEADLINE, "vigil did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.dir
    }

    /// Sends SIGTERM and waits for the daemon to exit; its exit status.
    pub async fn sigterm(&mut self) -> std::process::ExitStatus {
        send_signal(&self.child, "-TERM");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < DEADLINE, "vigil did not stop on SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the daemon with SIGKILL (no shutdown at all) and returns the directory
    /// for a restart.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        self.dir
    }

    /// What the daemon wrote on stdout so far (EMF lines).
    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vigil.out")).unwrap_or_default()
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A `vigil run` process started, not yet known to listen.
pub struct Starting {
    /// The process.
    pub child: ChildGuard,
    /// Its log file (stderr).
    pub log: PathBuf,
    /// Holds the config, the state dir and the log.
    pub dir: tempfile::TempDir,
}

impl Starting {
    /// Waits for the "Listening." log line; fails at once if the process ends first.
    pub fn listening(mut self) -> Vigil {
        let start = Instant::now();
        let addr = loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let found = text.lines().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                (v["message"] == "Listening.").then(|| v["addr"].as_str()?.parse().ok())?
            });
            if let Some(a) = found {
                break a;
            }
            if let Some(status) = self.child.0.try_wait().unwrap() {
                panic!("vigil ended ({status}) before it listened:\n{text}");
            }
            assert!(start.elapsed() < DEADLINE, "vigil did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        };
        Vigil {
            addr,
            child: self.child,
            log: self.log,
            dir: self.dir,
        }
    }
}

/// Sends `sig` (`-HUP`, `-TERM`, `-STOP`, …) to a daemon's process with kill(1).
pub fn send_signal(child: &ChildGuard, sig: &str) {
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// The component named `name` in a `/status` document.
pub fn component<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no component {name} in {status}"))
}

/// Writes into `dir` a rule file whose critical alert `alert` always fires, and a
/// routing file sending everything at once to one receiver `oncall` with
/// `integrations` (YAML indented by four spaces), quick retries, and a lease on
/// `lease_redis`.
pub fn write_always_paging(
    dir: &std::path::Path,
    alert: &str,
    integrations: &str,
    lease_redis: &str,
) {
    std::fs::write(
        dir.join("rules.yaml"),
        format!("groups:\n  - name: g\n    rules:\n      - alert: {alert}\n        expr: vector(1)\n        labels:\n          severity: critical\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("routing.yaml"),
        format!(
            "receivers:\n  - name: oncall\n{integrations}route:\n  receiver: oncall\n  group_by: ['...']\n  group_wait: 0s\ndelivery:\n  initial_backoff: 100ms\n  max_backoff: 300ms\n  timeout: 1s\nlease:\n  redis: {lease_redis}\n  ttl: 2s\n  alerts:\n    - ['severity=\"critical\"']\n"
        ),
    )
    .unwrap();
}
