//! Throw-away servers and misbehaving peers for Vigil's integration tests.
//!
//! Every test that needs PostgreSQL or Redis — and above all every test that kills,
//! freezes or restarts one — starts its own instance here, on a free port of
//! 127.0.0.1, and never touches the machine's shared services.
//!
//! - [`Postgres`]: `initdb` + `pg_ctl` in a temporary directory (run as the `postgres`
//!   user when the tests run as root, because PostgreSQL refuses to run as root).
//! - [`Redis`]: `redis-server` with no persistence.
//! - [`HangingListener`]: a TCP listener that accepts connections and never answers,
//!   the way a hung dependency looks from the outside.
//! - [`wait_until`]: poll a condition until it holds, instead of sleeping.
//! - [`Tmpfs`] and [`fill`]: a small filesystem of its own, and filling it to the last
//!   byte, for what a full disk does to the state directory.
//! - [`Moto`] (with [`SnsMessage`] and [`moto_server_bin`]): a `moto_server` on a free
//!   port, the local AWS; the SNS messages it received are read back.
//! - [`CwAdapter`] (with [`CwCall`]): `scripts/cw-adapter.py` in front of Moto, turning
//!   CloudWatch's CBOR protocol into moto's, every call recorded.
//! - [`Peer`] (with [`Behaviour`] and [`PeerRequest`]): an HTTP server that answers, or
//!   misbehaves on demand (slow, garbage, closing, huge, hanging), for the fault suite.
//! - [`ChildGuard`]: a child process killed when dropped.
//! - [`free_port`], [`postgres_bin_dir`] and [`http`]: a free port of 127.0.0.1, the
//!   directory holding `initdb` and `pg_ctl`, and a minimal HTTP/1.0 exchange.
//!
//! Each fixture stops what it started, by PID, when it is dropped — also when the test
//! panics — and never stops a process it did not start.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How long a fixture may take to start before the test fails with an explanation.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A tmpfs of a given size mounted at a directory, unmounted when dropped. Tests
/// run as root (as CI does), which `mount` needs.
pub struct Tmpfs {
    /// Where it is mounted.
    pub path: PathBuf,
    /// The directory made for it, when it was not given one.
    _dir: Option<tempfile::TempDir>,
}

impl Tmpfs {
    /// A tmpfs of `size` (`4m`) at a new temporary directory.
    pub fn new(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut fs = Tmpfs::mount(dir.path(), size);
        fs._dir = Some(dir);
        fs
    }

    /// A tmpfs of `size` at `at`, created if missing.
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("the mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("mount runs")
            .success();
        assert!(
            ok,
            "mount -t tmpfs at {} failed (it needs root)",
            at.display()
        );
        Tmpfs {
            path: at.to_path_buf(),
            _dir: None,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the filesystem holding `dir` to the last byte with one file, `dir/filler`,
/// and returns its path (remove it to free the space).
pub fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("the filler file");
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    while f.write_all(&[0]).is_ok() {}
    let _ = f.sync_all();
    path
}

/// Returns a TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 to find a free port")
}

/// Polls `condition` every 20 ms until it returns true, and panics with `what` if it
/// has not after `deadline`. The deadline is a safety net for a broken build, not a
/// measurement: pick it generously.
pub fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < deadline,
            "gave up waiting for {what} after {deadline:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` (a name such as `KILL`, `STOP`, `CONT`) to `pid` with kill(1).
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The directory holding `initdb` and `pg_ctl`: `$PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian keeps them off `PATH`).
pub fn postgres_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: /usr/lib/postgresql is missing (scripts/test.sh installs it)")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("no /usr/lib/postgresql/<version>/bin/initdb found")
}

/// A PostgreSQL server of the test's own, in a temporary directory.
pub struct Postgres {
    /// Holds the data directory, the socket directory and the log; removed on drop.
    dir: tempfile::TempDir,
    /// Where the server listens; stays the same across [`Postgres::restart`].
    port: u16,
    /// The binaries of the installed PostgreSQL.
    bin: PathBuf,
    /// Whether commands must run as the `postgres` user (the tests run as root).
    as_postgres_user: bool,
    /// PIDs frozen with [`Postgres::freeze`], to thaw before stopping.
    frozen: Vec<u32>,
}

impl Postgres {
    /// Initialises and starts a new cluster on a free port, trust authentication,
    /// and waits until it accepts connections.
    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("vigil-pg-")
            .tempdir()
            .expect("creating a temporary directory");
        let as_postgres_user = running_as_root();
        let pg = Postgres {
            port: free_port(),
            bin: postgres_bin_dir(),
            as_postgres_user,
            frozen: Vec::new(),
            dir,
        };
        std::fs::create_dir(pg.data_dir()).expect("creating the data directory");
        std::fs::create_dir(pg.socket_dir()).expect("creating the socket directory");
        if as_postgres_user {
            run(Command::new("chmod").arg("0755").arg(pg.dir.path()));
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(pg.dir.path()));
        }
        let mut initdb = pg.command("initdb");
        initdb.arg("-D").arg(pg.data_dir());
        initdb.args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
        run(&mut initdb);
        pg.pg_ctl_start();
        pg
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn command(&self, binary: &str) -> Command {
        let path = self.bin.join(binary);
        let mut cmd = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.stdout(Stdio::null());
        cmd
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
            self.port,
            self.socket_dir().display()
        );
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl.arg("-D").arg(self.data_dir());
        pg_ctl.arg("-l").arg(self.dir.path().join("postgres.log"));
        pg_ctl.args(["-w", "-t", "60", "-o", &options, "start"]);
        run(&mut pg_ctl);
        wait_for_port(self.port, "PostgreSQL");
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for the `postgres` database as the `postgres` user.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The postmaster's PID, from `postmaster.pid`, while the server runs.
    pub fn pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`), as a crash would.
    pub fn stop(&mut self) {
        self.thaw();
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .stderr(Stdio::null())
            .status();
    }

    /// Starts the stopped server again on the same port.
    pub fn restart(&mut self) {
        self.pg_ctl_start();
    }

    /// Freezes the postmaster and every backend with SIGSTOP: connections stay open
    /// and nothing answers, as with a hung database. Undone by [`Postgres::thaw`].
    pub fn freeze(&mut self) {
        let Some(postmaster) = self.pid() else { return };
        let mut pids = vec![postmaster];
        pids.extend(children_of(postmaster));
        for &pid in &pids {
            signal(pid, "STOP");
        }
        self.frozen = pids;
    }

    /// Lets frozen processes run again.
    pub fn thaw(&mut self) {
        for pid in self.frozen.drain(..) {
            signal(pid, "CONT");
        }
    }

    /// Makes TCP connections authenticate as RDS's do: `postgres` gets `password`
    /// and every connection over 127.0.0.1 must give it (SCRAM-SHA-256); the
    /// socket stays trusted, for the test's own administration. Called again, it
    /// changes the password as a rotation does: connections already open stay open,
    /// only new ones need the new password.
    pub fn require_password(&self, password: &str) {
        let quoted = password.replace('\'', "''");
        self.psql(&format!("ALTER ROLE postgres PASSWORD '{quoted}'"));
        std::fs::write(
            self.data_dir().join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        .expect("writing pg_hba.conf");
        let mut reload = self.command("pg_ctl");
        reload.arg("-D").arg(self.data_dir()).args(["-s", "reload"]);
        run(&mut reload);
        // The reload is a signal: wait until a connection without the password is refused.
        let url = format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        );
        wait_until(
            "pg_hba.conf to be reloaded",
            Duration::from_secs(30),
            || {
                !self
                    .command("psql")
                    .args([url.as_str(), "-w", "-tAc", "SELECT 1"])
                    .env("PGPASSWORD", "")
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            },
        );
    }

    /// Runs one statement as `postgres` over the socket.
    pub fn psql(&self, statement: &str) {
        let mut psql = self.command("psql");
        psql.arg("-h")
            .arg(self.socket_dir())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-qc", statement]);
        run(&mut psql);
    }

    /// The server's log so far, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// The data directory path, for tests that inspect it.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        if let Some(pid) = self.pid() {
            signal(pid, "KILL");
        }
    }
}

/// PIDs whose parent is `parent`, read from `/proc`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // Field 4 is the parent PID; field 2 (the name) may hold spaces.
                    let after = &stat[stat.rfind(')')? + 2..];
                    after.split(' ').nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// A `redis-server` of the test's own, without persistence.
pub struct Redis {
    /// Where the server listens; stays the same across [`Redis::restart`].
    port: u16,
    /// The running server, if it runs.
    child: Option<Child>,
    /// The server's working directory.
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts a server on a free port and waits until it answers PING.
    pub fn start() -> Redis {
        let mut redis = Redis {
            port: free_port(),
            child: None,
            dir: tempfile::Builder::new()
                .prefix("vigil-redis-")
                .tempdir()
                .expect("creating a temporary directory"),
        };
        redis.restart();
        redis
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for database 0.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server with SIGKILL and waits for it to be gone.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// Starts the server (again) on the same port and waits until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server (scripts/test.sh installs it)");
        self.child = Some(child);
        let port = self.port;
        wait_until("redis-server to answer PING", START_DEADLINE, || {
            redis_ping(port)
        });
    }

    /// Sends a raw command line (inline protocol) and returns the first reply line.
    pub fn command(&self, line: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connecting to Redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("setting a read timeout");
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("writing to Redis");
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).trim_end().to_string()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn redis_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

fn wait_for_port(port: u16, what: &str) {
    wait_until(&format!("{what} on port {port}"), START_DEADLINE, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

fn run(cmd: &mut Command) {
    let output = cmd
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A TCP listener that accepts every connection and never sends a byte: what a hung
/// database, cache or HTTP server looks like to a client.
pub struct HangingListener {
    /// The address to point a client at.
    addr: SocketAddr,
    /// Tells the accept thread to stop.
    stop: Arc<AtomicBool>,
    /// The accept thread, which also holds the accepted connections open.
    thread: Option<thread::JoinHandle<()>>,
}

impl HangingListener {
    /// Binds 127.0.0.1 on a free port and starts accepting.
    pub fn start() -> HangingListener {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a hanging listener");
        listener
            .set_nonblocking(true)
            .expect("making the listener non-blocking");
        let addr = listener
            .local_addr()
            .expect("reading the listener's address");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        HangingListener {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HangingListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A child process that is killed when the guard is dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_restarts_on_the_same_port() {
        let mut redis = Redis::start();
        assert_eq!(redis.command("PING"), "+PONG");
        redis.kill();
        assert!(!redis_ping(redis.port()));
        redis.restart();
        assert_eq!(redis.command("SET k v"), "+OK");
    }

    #[test]
    fn postgres_starts_stops_and_restarts() {
        let mut pg = Postgres::start();
        let port = pg.port();
        assert!(pg.pid().is_some(), "no postmaster.pid: {}", pg.log());
        pg.stop();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        pg.restart();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    }

    #[test]
    fn hanging_listener_accepts_and_never_answers() {
        let hung = HangingListener::start();
        let mut stream = TcpStream::connect(hung.addr()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        stream.write_all(b"PING\r\n").unwrap();
        let mut buf = [0u8; 8];
        assert!(stream.read(&mut buf).is_err(), "the listener answered");
    }
}

/// A `moto_server` (PyPI `moto[server]`, installed into `.venv/` by
/// `scripts/test.sh`) on a free port: the local AWS. SNS messages published to it are
/// read back from `/moto-api/data.json`.
pub struct Moto {
    /// Where it listens; stays the same across [`Moto::restart`].
    port: u16,
    /// The running server, if it runs.
    child: Option<Child>,
}

/// One SNS message as moto recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct SnsMessage {
    /// The Subject.
    pub subject: String,
    /// The Message.
    pub message: String,
    /// The message attributes' JSON (`{"name": {"Type": …, "Value": …}}`).
    pub attributes: String,
}

/// The `moto_server` executable: `$MOTO_SERVER`, or the one in the workspace's venv.
pub fn moto_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server")
}

/// A minimal HTTP/1.0 exchange with 127.0.0.1:`port`: the status and the body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Percent-encodes a form value.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Moto {
    /// Starts moto on a free port and waits until it answers.
    pub fn start() -> Moto {
        let mut m = Moto {
            port: free_port(),
            child: None,
        };
        m.restart();
        m
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The endpoint URL for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server (its state is lost).
    pub fn stop(&mut self) {
        kill_child(&mut self.child);
    }

    /// Starts the server (again) on the same port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let bin = moto_server_bin();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} failed ({e}); scripts/test.sh installs moto[server] into .venv",
                    bin.display()
                )
            });
        self.child = Some(child);
        let port = self.port;
        wait_until("moto_server to answer", START_DEADLINE, || {
            matches!(http(port, "GET", "/moto-api/", &[], ""), Some((200, _)))
        });
    }

    /// Calls an awsQuery action of SNS in `region`; returns the body.
    pub fn sns(&self, region: &str, params: &[(&str, &str)]) -> String {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/sns/aws4_request, SignedHeaders=host, Signature=x"
        );
        let body: Vec<String> = params
            .iter()
            .chain([("Version", "2010-03-31")].iter())
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect();
        let (status, text) = http(
            self.port,
            "POST",
            "/",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            &body.join("&"),
        )
        .expect("moto answers");
        assert_eq!(status, 200, "SNS {params:?} failed: {text}");
        text
    }

    /// Creates an SNS topic in `region` and returns its ARN.
    pub fn create_topic(&self, region: &str, name: &str) -> String {
        self.sns(region, &[("Action", "CreateTopic"), ("Name", name)]);
        format!("arn:aws:sns:{region}:123456789012:{name}")
    }

    /// The messages published to `topic_arn`, oldest first (empty when moto is
    /// down or the topic does not exist).
    pub fn messages(&self, topic_arn: &str) -> Vec<SnsMessage> {
        let Some((200, body)) = http(self.port, "GET", "/moto-api/data.json", &[], "") else {
            return Vec::new();
        };
        parse_sns_messages(&body, topic_arn)
    }
}

/// Finds `topic_arn`'s `sent_notifications` in moto's `data.json`; each is
/// `[id, message, subject, attributes, group]`.
fn parse_sns_messages(body: &str, topic_arn: &str) -> Vec<SnsMessage> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in v["sns"]["Topic"].as_array().into_iter().flatten() {
        if t["arn"] != topic_arn {
            continue;
        }
        for n in t["sent_notifications"].as_array().into_iter().flatten() {
            let s = |i: usize| n[i].as_str().unwrap_or("").to_string();
            out.push(SnsMessage {
                message: s(1),
                subject: s(2),
                attributes: n[3].to_string(),
            });
        }
    }
    out
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kills `child` with SIGKILL, if it runs, and waits for it.
fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// `scripts/cw-adapter.py` in front of a [`Moto`]: CloudWatch's CBOR protocol (the
/// only one the newest SDK speaks) turned into the JSON protocol moto takes, with
/// every CBOR call recorded (`/_adapter/calls`). Everything else passes through.
pub struct CwAdapter {
    /// Where it listens; stays the same across [`CwAdapter::restart`].
    port: u16,
    /// moto's URL.
    upstream: String,
    /// The running adapter, if it runs.
    child: Option<Child>,
}

/// One call the adapter saw.
#[derive(Debug, Clone, PartialEq)]
pub struct CwCall {
    /// The operation (`PutMetricData`).
    pub operation: String,
    /// Bytes as received (gzipped or not).
    pub wire_bytes: usize,
    /// Bytes after gunzip.
    pub body_bytes: usize,
    /// `Content-Encoding`, if any.
    pub content_encoding: Option<String>,
    /// The answer's status.
    pub status: u16,
    /// Datums in a PutMetricData call.
    pub datums: Option<usize>,
}

impl CwAdapter {
    /// Starts the adapter in front of `moto` on a free port.
    pub fn start(moto: &Moto) -> CwAdapter {
        let mut a = CwAdapter {
            port: free_port(),
            upstream: moto.endpoint(),
            child: None,
        };
        a.restart();
        a
    }

    /// The endpoint URL for `AWS_ENDPOINT_URL_CLOUDWATCH`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the adapter: CloudWatch is unreachable.
    pub fn stop(&mut self) {
        kill_child(&mut self.child);
    }

    /// Starts the adapter (again) on the same port and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let python = moto_server_bin().with_file_name("python");
        let child = Command::new(&python)
            .arg(root.join("scripts/cw-adapter.py"))
            .args([
                "--port",
                &self.port.to_string(),
                "--upstream",
                &self.upstream,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} failed ({e}); scripts/test.sh installs the venv",
                    python.display()
                )
            });
        self.child = Some(child);
        let port = self.port;
        wait_until("the CloudWatch adapter to answer", START_DEADLINE, || {
            matches!(
                http(port, "GET", "/_adapter/calls", &[], ""),
                Some((200, _))
            )
        });
    }

    /// The CBOR calls seen since the start or the last [`CwAdapter::reset`].
    pub fn calls(&self) -> Vec<CwCall> {
        let Some((200, body)) = http(self.port, "GET", "/_adapter/calls", &[], "") else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v.as_array()
            .into_iter()
            .flatten()
            .map(|c| CwCall {
                operation: c["operation"].as_str().unwrap_or("").to_string(),
                wire_bytes: c["wire_bytes"].as_u64().unwrap_or(0) as usize,
                body_bytes: c["body_bytes"].as_u64().unwrap_or(0) as usize,
                content_encoding: c["content_encoding"].as_str().map(str::to_string),
                status: c["status"].as_u64().unwrap_or(0) as u16,
                datums: c["datums"].as_u64().map(|d| d as usize),
            })
            .collect()
    }

    /// Forgets the calls seen so far.
    pub fn reset(&self) {
        let _ = http(self.port, "POST", "/_adapter/reset", &[], "");
    }
}

impl Drop for CwAdapter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How a [`Peer`] answers each HTTP request: the misbehaviours of the fault suite.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// A complete answer: status, extra header lines (`Name: value`), body.
    Answer(u16, Vec<String>, Vec<u8>),
    /// The answer, after a delay (past a client's timeout: slow).
    Slow(Duration, u16, Vec<u8>),
    /// These bytes, whatever they are, then the connection is closed. Sent after
    /// the first bytes the client writes (any protocol's), or after half a second
    /// when the client waits to be spoken to first.
    Garbage(Vec<u8>),
    /// Reads what the client sends first, then closes without a word: a server that
    /// hangs up mid-handshake.
    Close,
    /// 200 with a chunked body repeating `line` up to `total` bytes (stopping early
    /// when the client hangs up): a page too large to hold.
    Huge {
        /// Bytes to send in all.
        total: u64,
        /// What the body repeats.
        line: Vec<u8>,
    },
    /// Reads the request, then never answers and never closes.
    Hang,
}

/// A request a [`Peer`] received.
#[derive(Debug, Clone)]
pub struct PeerRequest {
    /// The request line and headers, as sent.
    pub head: String,
    /// The body.
    pub body: Vec<u8>,
}

/// An HTTP server on 127.0.0.1 that answers every request with one [`Behaviour`]
/// (which can be changed while it runs), recording the requests and how many body
/// bytes it managed to send.
pub struct Peer {
    /// Where it listens.
    addr: SocketAddr,
    /// How it answers.
    behaviour: Arc<std::sync::Mutex<Behaviour>>,
    /// What it received.
    requests: Arc<std::sync::Mutex<Vec<PeerRequest>>>,
    /// Body bytes written, over every connection.
    sent: Arc<std::sync::atomic::AtomicU64>,
    /// Tells the threads to stop.
    stop: Arc<AtomicBool>,
}

impl Peer {
    /// Starts answering with `behaviour`.
    pub fn start(behaviour: Behaviour) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a peer");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("the peer's address");
        let peer = Peer {
            addr,
            behaviour: Arc::new(std::sync::Mutex::new(behaviour)),
            requests: Arc::default(),
            sent: Arc::default(),
            stop: Arc::default(),
        };
        let (behaviour, requests, sent, stop) = (
            peer.behaviour.clone(),
            peer.requests.clone(),
            peer.sent.clone(),
            peer.stop.clone(),
        );
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let b = behaviour.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        let (requests, sent, stop) = (requests.clone(), sent.clone(), stop.clone());
                        thread::spawn(move || serve(stream, b, &requests, &sent, &stop));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        peer
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers from now on with `behaviour`.
    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap_or_else(|e| e.into_inner()) = behaviour;
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<PeerRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Body bytes sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn read_request(stream: &mut TcpStream) -> Option<PeerRequest> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut byte).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&byte[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut byte).ok().filter(|&n| n > 0)?;
        body.extend_from_slice(&byte[..n]);
    }
    Some(PeerRequest { head, body })
}

fn serve(
    mut stream: TcpStream,
    behaviour: Behaviour,
    requests: &std::sync::Mutex<Vec<PeerRequest>>,
    sent: &std::sync::atomic::AtomicU64,
    stop: &AtomicBool,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    if matches!(behaviour, Behaviour::Garbage(_) | Behaviour::Close) {
        // Whatever the protocol: the client's first bytes, then the answer.
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut first = [0u8; 4096];
        let n = stream.read(&mut first).unwrap_or(0);
        requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(PeerRequest {
                head: String::from_utf8_lossy(&first[..n]).to_string(),
                body: Vec::new(),
            });
        if let Behaviour::Garbage(bytes) = behaviour {
            let _ = stream.write_all(&bytes);
        }
        return;
    }
    // One request per connection; keep-alive clients open another.
    let Some(request) = read_request(&mut stream) else {
        return;
    };
    requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(request);
    let answer = |stream: &mut TcpStream, status: u16, headers: &[String], body: &[u8]| {
        let mut head = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for h in headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        if stream.write_all(head.as_bytes()).is_ok() && stream.write_all(body).is_ok() {
            sent.fetch_add(body.len() as u64, Ordering::Relaxed);
        }
    };
    match behaviour {
        Behaviour::Answer(status, headers, body) => answer(&mut stream, status, &headers, &body),
        Behaviour::Slow(delay, status, body) => {
            let until = std::time::Instant::now() + delay;
            while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(10));
            }
            answer(&mut stream, status, &[], &body)
        }
        Behaviour::Garbage(_) | Behaviour::Close => {}
        Behaviour::Huge { total, line } => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            let mut chunk = Vec::new();
            while chunk.len() < 64 << 10 {
                chunk.extend_from_slice(&line);
            }
            let mut left = total;
            while left > 0 && !stop.load(Ordering::Relaxed) {
                let n = (chunk.len() as u64).min(left) as usize;
                let framed = [format!("{n:x}\r\n").as_bytes(), &chunk[..n], b"\r\n"].concat();
                if stream.write_all(&framed).is_err() {
                    return;
                }
                sent.fetch_add(n as u64, Ordering::Relaxed);
                left -= n as u64;
            }
            let _ = stream.write_all(b"0\r\n\r\n");
        }
        Behaviour::Hang => {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
