//! Test support shared by the black-box tests: a real `nats-server` per test, and waiting on
//! conditions instead of sleeping.
//!
//! Why a real server: every authkeys role talks over NATS (commands by request/reply, events by
//! JetStream), and the properties we care about — de-duplication by `Nats-Msg-Id`, durable
//! consumers, surviving a broker restart — are the server's behaviour, not something a mock
//! would reproduce. So each test spawns its own `nats-server` on a free loopback port with its
//! own temporary JetStream store: tests run in parallel without sharing streams, and a `Drop`
//! guard kills the server even when the test panics.
//!
//! - [`NatsServer`]: start, stop (SIGTERM), `kill -9`, and restart on the same port and store,
//!   for outage and crash tests.
//! - [`wait_until`] / [`wait_until_async`]: poll a condition against a deadline; a test never
//!   sleeps to let something happen.
//! - [`unique_name`]: stream, consumer and subject tokens that cannot collide.
//! - [`env_or`]: a knob from the environment, with its default.
//! - [`OidcIssuer`] (module [`oidc`]): a real OIDC issuer on loopback (discovery and a JWKS over
//!   http, ES256 tokens signed in the test), for workload identity federation end to end.
//! - [`browser::Browser`]: a headless Chromium driven over WebDriver (the admin console's tests).
//!
//! The `nats-server` binary comes from `NATS_SERVER`, else `<workspace>/.tools/nats-server`, which
//! `make tools` installs (pinned version). Every address used here is in 127.0.0.0/8.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rustix::process::{Pid, Signal, kill_process};

pub mod browser;
pub mod cluster;
pub mod oidc;

pub use cluster::NatsCluster;
pub use oidc::OidcIssuer;

/// How long a server may take from spawn to accepting client connections.
const START_WAIT_MS_MAX: u64 = 10_000;
/// How long a SIGTERM'd server may take to exit before it gets SIGKILL.
const STOP_WAIT_MS_MAX: u64 = 5_000;
/// How long `restart` keeps retrying when the old port is briefly taken.
const RESTART_WAIT_MS_MAX: u64 = 10_000;
/// Attempts at a fresh free port when another process grabs ours between probe and bind.
const START_ATTEMPTS_MAX: u32 = 5;
/// Poll interval of every wait in this crate.
const POLL_MS: u64 = 20;
/// How much of the server log an error message quotes.
const LOG_TAIL_BYTES_MAX: u64 = 4_096;

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A `nats-server` with JetStream owned by one test: loopback only, its own temporary store,
/// killed on drop.
///
/// The methods block the calling thread (at most the named deadlines); that is fine in a
/// `#[tokio::test]`, where nothing else needs the runtime while the server starts or stops.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    /// Holds `store/` (the JetStream store dir) and `nats-server.log`; removed on drop.
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// A config file (`-c`), e.g. the authorization block of `authkeys admin nats-config`.
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts a server on a free loopback port with a fresh store, and returns once it accepts
    /// connections.
    pub fn start() -> anyhow::Result<NatsServer> {
        Self::start_inner(None)
    }

    /// [`start`](Self::start) with a config file (`-c`); the listen address, port, JetStream
    /// and store still come from the command line.
    pub fn start_with_config(config: &std::path::Path) -> anyhow::Result<NatsServer> {
        Self::start_inner(Some(config.to_owned()))
    }

    fn start_inner(config: Option<PathBuf>) -> anyhow::Result<NatsServer> {
        let binary = binary_path()?;
        let dir = tempfile::Builder::new()
            .prefix("authkeys-nats-")
            .tempdir()
            .context("create temp dir for nats-server")?;
        std::fs::create_dir(dir.path().join("store")).context("create JetStream store dir")?;

        let mut server = NatsServer {
            binary,
            port: 0,
            dir,
            child: None,
            config,
        };
        // The probed port can be taken by someone else before nats-server binds it; then the
        // server exits at once and we try another port.
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS_MAX {
            server.port = free_port()?;
            match server.spawn_and_wait_ready() {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("START_ATTEMPTS_MAX > 0 so the loop ran"))
            .context(format!("start nats-server ({START_ATTEMPTS_MAX} attempts)"))
    }

    /// The client URL, e.g. `nats://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("nats://{LOOPBACK}:{}", self.port)
    }

    /// The client port; stays the same across [`restart`](Self::restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store dir (`-sd`); stays the same across [`restart`](Self::restart), so
    /// streams survive it.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The server's combined stdout/stderr, appended to across restarts; worth reading when a
    /// test fails.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// Whether a server process is currently up (between start and stop/kill9).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Graceful stop: SIGTERM, so JetStream flushes and closes its store; SIGKILL if it has not
    /// exited within `STOP_WAIT_MS_MAX`. Does nothing if already stopped.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // The child is not reaped until `wait` below, so its pid cannot have been reused.
        if let Err(e) = kill_process(Pid::from_child(&child), Signal::TERM) {
            // ESRCH cannot happen for an unreaped child; anything else, fall back to SIGKILL.
            child
                .kill()
                .context("SIGKILL nats-server after failed SIGTERM")?;
            child.wait().context("reap nats-server")?;
            return Err(e).context("SIGTERM nats-server");
        }
        let deadline = Instant::now() + Duration::from_millis(STOP_WAIT_MS_MAX);
        loop {
            if child.try_wait().context("poll nats-server exit")?.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                child
                    .kill()
                    .context("SIGKILL nats-server after SIGTERM timed out")?;
                child.wait().context("reap nats-server")?;
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
    }

    /// Crash: SIGKILL, no chance to flush. For crash-recovery tests. Does nothing if already
    /// stopped.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        child.kill().context("SIGKILL nats-server")?;
        child.wait().context("reap nats-server")?;
        Ok(())
    }

    /// Stops the server (gracefully, if it is running) and starts it again on the same port
    /// with the same store, so clients reconnect to the same URL and find their streams. Retries
    /// for up to `RESTART_WAIT_MS_MAX` while the port is briefly busy.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        let deadline = Instant::now() + Duration::from_millis(RESTART_WAIT_MS_MAX);
        loop {
            if port_is_free(self.port) {
                match self.spawn_and_wait_ready() {
                    Ok(()) => return Ok(()),
                    // Someone took the port between our probe and the server's bind: retry.
                    Err(_) if !port_is_free(self.port) && Instant::now() < deadline => {}
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("restart nats-server on port {}", self.port));
                    }
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "restart nats-server: port {} still busy after {RESTART_WAIT_MS_MAX} ms",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
    }

    /// Spawns the server on `self.port` with the store dir and waits until it speaks NATS on
    /// that port. On failure the process is gone and the error quotes the server log.
    fn spawn_and_wait_ready(&mut self) -> anyhow::Result<()> {
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = log.try_clone().context("clone log file handle")?;
        let mut command = Command::new(&self.binary);
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        let child = command
            .arg("-a")
            .arg(LOOPBACK.to_string())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-js")
            .arg("-sd")
            .arg(self.store_dir())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawn {}", self.binary.display()))?;
        self.child = Some(child);

        match self.wait_ready() {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = self.kill9();
                Err(e.context(format!(
                    "nats-server on port {} not ready; its log ({}) says:\n{}",
                    self.port,
                    log_path.display(),
                    log_tail(&log_path, log_start)
                )))
            }
        }
    }

    /// Polls until the server accepts a connection and greets it with `INFO`, which tells our
    /// server apart from another process that took the port. JetStream is up by then:
    /// nats-server opens the client port last.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let addr = SocketAddr::from((LOOPBACK, self.port));
        let deadline = Instant::now() + Duration::from_millis(START_WAIT_MS_MAX);
        loop {
            let child = self
                .child
                .as_mut()
                .expect("wait_ready is only called right after spawning");
            if let Some(status) = child.try_wait().context("poll nats-server")? {
                self.child = None;
                bail!("nats-server exited during startup ({status})");
            }
            if greets_with_info(addr) {
                // A foreign listener could have answered; ours would then have failed to bind
                // and exited, which this catches in all but the narrowest race.
                if let Some(status) = child.try_wait().context("poll nats-server")? {
                    self.child = None;
                    bail!("nats-server exited during startup ({status})");
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("nats-server did not accept connections within {START_WAIT_MS_MAX} ms");
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL by pid, then reap, so no server outlives its test (or its temp dir).
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `condition` every 20 ms until it holds, or fails once `wait_max` has passed.
///
/// Tests wait on an observable condition with a deadline, never on a sleep. The deadline is
/// wall-clock time, so this stays bounded under a paused tokio clock; between polls it yields to
/// the runtime, so in-runtime tasks make progress.
pub async fn wait_until<F>(wait_max: Duration, mut condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> bool,
{
    wait_until_async(wait_max, async || condition()).await
}

/// [`wait_until`] for a condition that must itself do IO, e.g. query a projection over NATS:
/// `wait_until_async(wait_max, async || view_has_key(&client, &id).await)`.
pub async fn wait_until_async<F>(wait_max: Duration, mut condition: F) -> anyhow::Result<()>
where
    F: AsyncFnMut() -> bool,
{
    let deadline = Instant::now() + wait_max;
    loop {
        if condition().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("condition not met within {wait_max:?}");
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}

/// A name no other test in any process will pick: `<prefix>_<pid>_<counter>_<nanos>`. Letters,
/// digits and underscores only, so it is valid as a stream name, a consumer name and a subject
/// token.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// A NATS client of `url` whose requests wait at most `wait_ms` for an answer.
pub async fn nats_client(url: &str, wait_ms: u64) -> anyhow::Result<async_nats::Client> {
    Ok(async_nats::ConnectOptions::new()
        .request_timeout(Some(Duration::from_millis(wait_ms)))
        .connect(url)
        .await?)
}

/// The environment variable `name` parsed as a `T`, or `default` when it is unset or does not
/// parse: how benchmarks and long tests take their knobs (`AUTHKEYS_BENCH_SECONDS=30`).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `NATS_SERVER` if set, else the pinned binary that `make tools` installs.
fn binary_path() -> anyhow::Result<PathBuf> {
    let (path, origin) = match std::env::var_os("NATS_SERVER") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), "NATS_SERVER"),
        _ => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("the tests crate sits in the workspace root");
            (root.join(".tools/nats-server"), "the pinned default")
        }
    };
    if !path.is_file() {
        bail!(
            "nats-server not found at {} ({origin}): run `make tools` at the workspace root, \
             or set NATS_SERVER to a nats-server binary",
            path.display()
        );
    }
    Ok(path)
}

/// A port the kernel just handed out on loopback, released again for the server to bind.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((LOOPBACK, 0)).context("bind 127.0.0.1:0 to find a port")?;
    let port = listener.local_addr().context("read probe port")?.port();
    Ok(port)
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind((LOOPBACK, port)).is_ok()
}

/// Whether something on `addr` accepts a connection and sends a NATS `INFO` line.
fn greets_with_info(addr: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(POLL_MS * 5)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_millis(1_000)))
        .is_err()
    {
        return false;
    }
    // INFO carries server metadata and can run to a few KiB; bound the read anyway.
    let mut line = String::new();
    let read = BufReader::new(stream.take(64 * 1024)).read_line(&mut line);
    read.is_ok() && line.starts_with("INFO ")
}

/// The part of the log written since `from`, at most `LOG_TAIL_BYTES_MAX` of its end.
fn log_tail(path: &Path, from: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return "<log unreadable>".to_owned();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = from.max(len.saturating_sub(LOG_TAIL_BYTES_MAX));
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return "<log unreadable>".to_owned();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
