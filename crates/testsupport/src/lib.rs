//! Test support for rust-farm integration tests: real servers, real
//! processes, cleaned up in `Drop`.
//!
//! - [`NatsServer`]: a real `nats-server -js` on a dynamic 127.0.0.1 port
//!   with a temporary store; [`NatsServer::restart`] keeps store and port.
//! - [`NatsCluster`]: a JetStream cluster of real nats-servers (`n1..nN`)
//!   joined by routes, a store per node; kill, pause (SIGSTOP), resume,
//!   restart one node or all, and find a stream's leader.
//! - [`bin_path`]: a workspace binary in `target/<profile>/`.
//! - [`ChildGuard`]: a child process that is killed when dropped, with its
//!   output captured to a file for failure messages.
//! - [`alive`]: whether a process runs (a zombie does not).
//! - [`wait_until`] / [`eventually`]: bounded polling.
//!
//! ```no_run
//! let nats = farm_testsupport::NatsServer::start().unwrap();
//! println!("connect to {}", nats.url());
//! // dropped: server killed, store deleted
//! ```
//!
//! The `nats-server` binary is taken from `$NATS_SERVER`, else
//! `<workspace>/.venv/bin/nats-server` (installed by scripts/setup.sh), else
//! `PATH`; versions older than 2.10 are refused.

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

mod cluster;
pub use cluster::{CLUSTER_READY_TIMEOUT, NatsCluster};

/// Oldest accepted nats-server.
pub const MIN_NATS_VERSION: (u64, u64, u64) = (2, 10, 0);

/// How long a server or process gets to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Errors of the test harness.
#[derive(Debug, thiserror::Error)]
pub enum TestSupportError {
    /// No nats-server binary was found.
    #[error(
        "nats-server not found (looked at {searched:?}); run scripts/setup.sh or set NATS_SERVER"
    )]
    NatsServerNotFound {
        /// The places looked at.
        searched: Vec<String>,
    },
    /// The nats-server binary is older than 2.10.
    #[error(
        "{path} is nats-server {version}; rust-farm tests need >= 2.10 (Debian's package is too old; use scripts/setup.sh)"
    )]
    NatsServerTooOld {
        /// The binary.
        path: PathBuf,
        /// Its version.
        version: String,
    },
    /// The version output could not be understood.
    #[error("cannot read the version of {path}: {output:?}")]
    NatsServerVersion {
        /// The binary.
        path: PathBuf,
        /// What it printed.
        output: String,
    },
    /// A workspace binary is missing.
    #[error("binary {path} does not exist; run `cargo build --workspace --bins` first")]
    BinaryMissing {
        /// The expected path.
        path: PathBuf,
    },
    /// A process did not become ready in time.
    #[error("{what} not ready after {timeout:?}; log tail:\n{log}")]
    NotReady {
        /// What was waited for.
        what: String,
        /// The bound.
        timeout: Duration,
        /// The end of its log.
        log: String,
    },
    /// A condition did not become true in time.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The bound.
        timeout: Duration,
    },
    /// An I/O error (spawning, temp dirs).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestSupportError {
    let what = what.into();
    move |source| TestSupportError::Io { what, source }
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .and_then(Path::parent)
        .map_or_else(|| here.to_path_buf(), Path::to_path_buf)
}

/// The target directory of the running test (`target/<profile>`), derived
/// from the test executable (`target/<profile>/deps/NAME-HASH`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().ok();
    if let Some(deps) = exe.as_deref().and_then(Path::parent) {
        if deps.file_name().is_some_and(|n| n == "deps")
            && let Some(p) = deps.parent()
        {
            return p.to_path_buf();
        }
        return deps.to_path_buf();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    target.join("debug")
}

/// Path of the workspace binary `name` in `target/<profile>/`.
pub fn bin_path(name: &str) -> Result<PathBuf, TestSupportError> {
    let path = profile_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(TestSupportError::BinaryMissing { path })
    }
}

/// A free TCP port on 127.0.0.1 (bound then released; another process may
/// take it in between, which is why [`NatsServer`] asks the server instead).
pub fn free_port() -> Result<u16, TestSupportError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io_err("bind 127.0.0.1:0"))?;
    Ok(l.local_addr().map_err(io_err("local_addr"))?.port())
}

/// A free loopback port below the kernel's ephemeral range, for a server
/// that must get the same port again when it restarts: a port from
/// [`free_port`] is an ephemeral one, which any outgoing connection (a
/// client, another node's route) may take as its local port while the
/// server is down, so the restarted server fails with "address already in
/// use". Ports below the range are only ever taken by an explicit bind.
pub fn stable_port() -> Result<u16, TestSupportError> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = ephemeral_low();
    let (first, span) = (10_000u32, u32::from(low.max(10_001)) - 10_000);
    // Spread over the range by process and call, so concurrent test
    // binaries rarely try the same ports; the bind check settles the rest.
    let salt = std::process::id().wrapping_mul(2_654_435_761);
    for _ in 0..span.min(4096) {
        let k = NEXT.fetch_add(7919, Ordering::Relaxed);
        let port = first + salt.wrapping_add(k) % span;
        let port = u16::try_from(port).unwrap_or(10_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    free_port()
}

/// First port of the kernel's ephemeral range (Linux default 32768).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768)
}

/// Locates nats-server and checks its version.
pub fn nats_server_binary() -> Result<PathBuf, TestSupportError> {
    let mut searched = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(workspace_root().join(".venv/bin/nats-server"));
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            candidates.push(dir.join("nats-server"));
        }
    }
    for c in candidates {
        if c.is_file() {
            check_nats_version(&c)?;
            return Ok(c);
        }
        searched.push(c.display().to_string());
    }
    Err(TestSupportError::NatsServerNotFound { searched })
}

fn check_nats_version(path: &Path) -> Result<(), TestSupportError> {
    let out = Command::new(path)
        .arg("--version")
        .output()
        .map_err(io_err(format!("run {} --version", path.display())))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let version = text
        .split_whitespace()
        .find_map(|w| {
            let w = w.trim_start_matches('v');
            w.chars()
                .next()
                .filter(char::is_ascii_digit)
                .map(|_| w.to_owned())
        })
        .ok_or_else(|| TestSupportError::NatsServerVersion {
            path: path.to_path_buf(),
            output: text.clone(),
        })?;
    let parsed = parse_version(&version).ok_or_else(|| TestSupportError::NatsServerVersion {
        path: path.to_path_buf(),
        output: text.clone(),
    })?;
    if parsed < MIN_NATS_VERSION {
        return Err(TestSupportError::NatsServerTooOld {
            path: path.to_path_buf(),
            version,
        });
    }
    Ok(())
}

/// Parses `MAJOR.MINOR[.PATCH][-pre]`.
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.trim().trim_start_matches('v').split(['-', '+']).next()?;
    let mut it = core.split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    let patch = it.next().map_or(Some(0), |p| p.parse().ok())?;
    Some((major, minor, patch))
}

/// Options of a test nats-server.
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// Fixed port; `None` lets the server pick one.
    pub port: Option<u16>,
    /// Require this token.
    pub token: Option<String>,
    /// Require this user and password.
    pub user_password: Option<(String, String)>,
}

/// A real nats-server with JetStream on 127.0.0.1, killed and its store
/// deleted on drop.
#[derive(Debug)]
pub struct NatsServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    opts: NatsOptions,
    port: u16,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server on a free port.
    pub fn start() -> Result<Self, TestSupportError> {
        Self::start_with(NatsOptions::default())
    }

    /// Starts a server with `opts`.
    pub fn start_with(opts: NatsOptions) -> Result<Self, TestSupportError> {
        let bin = nats_server_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("farm-nats-")
            .tempdir()
            .map_err(io_err("create nats temp dir"))?;
        for sub in ["store", "ports"] {
            fs::create_dir_all(dir.path().join(sub)).map_err(io_err("create nats dirs"))?;
        }
        let mut s = Self {
            bin,
            dir,
            port: opts.port.unwrap_or(0),
            opts,
            child: None,
        };
        s.spawn()?;
        Ok(s)
    }

    fn spawn(&mut self) -> Result<(), TestSupportError> {
        let ports_dir = self.dir.path().join("ports");
        // Stale ports files of a previous run would be mistaken for ours.
        if let Ok(rd) = fs::read_dir(&ports_dir) {
            for e in rd.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        let log = self.log_path();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-js")
            .arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(if self.port == 0 {
                "-1".to_owned()
            } else {
                self.port.to_string()
            })
            .arg("-sd")
            .arg(self.dir.path().join("store"))
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(t) = &self.opts.token {
            cmd.arg("--auth").arg(t);
        }
        if let Some((u, p)) = &self.opts.user_password {
            cmd.arg("--user").arg(u).arg("--pass").arg(p);
        }
        let child = cmd
            .spawn()
            .map_err(io_err(format!("spawn {}", self.bin.display())))?;
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        // The ports file is written once the listeners are up.
        let ports_file = ports_dir.join(format!("nats-server_{pid}.ports"));
        loop {
            if let Some(port) = read_port(&ports_file) {
                self.port = port;
                if TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], port)),
                    Duration::from_millis(200),
                )
                .is_ok()
                    && self.log_tail().contains("Server is ready")
                {
                    return Ok(());
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(TestSupportError::NotReady {
                    what: format!("nats-server (exited with {status})"),
                    timeout: READY_TIMEOUT,
                    log: self.log_tail(),
                });
            }
            if Instant::now() > deadline {
                return Err(TestSupportError::NotReady {
                    what: "nats-server".into(),
                    timeout: READY_TIMEOUT,
                    log: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's port (stable across [`NatsServer::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// The last 4 KiB of the server log.
    pub fn log_tail(&self) -> String {
        tail(&self.log_path(), 4096)
    }

    /// Kills the server (SIGKILL, like a crash), keeping store and port.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server and starts it again on the same port and store.
    pub fn restart(&mut self) -> Result<(), TestSupportError> {
        self.stop();
        self.spawn()
    }

    /// Starts the server again after [`NatsServer::stop`].
    pub fn start_again(&mut self) -> Result<(), TestSupportError> {
        if self.child.is_none() {
            self.spawn()?;
        }
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_port(ports_file: &Path) -> Option<u16> {
    let text = fs::read_to_string(ports_file).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let url = v.get("nats")?.get(0)?.as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

fn tail(path: &Path, max: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    if s.len() > max {
        let mut start = s.len() - max;
        while !s.is_char_boundary(start) {
            start += 1;
        }
        s = s[start..].to_owned();
    }
    s
}

/// A child process killed (SIGKILL) on drop, with stdout and stderr captured
/// in a temporary log file.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    log: tempfile::NamedTempFile,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `cmd` with its output redirected to a log file.
    pub fn spawn(name: impl Into<String>, mut cmd: Command) -> Result<Self, TestSupportError> {
        let name = name.into();
        let log = tempfile::Builder::new()
            .prefix(&format!("farm-{name}-"))
            .suffix(".log")
            .tempfile()
            .map_err(io_err("create child log"))?;
        let out = log.reopen().map_err(io_err("open child log"))?;
        let err = log.reopen().map_err(io_err("open child log"))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io_err(format!("spawn {name}")))?;
        Ok(Self {
            name,
            child: Some(child),
            log,
            status: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal (e.g. `nix::sys::signal::Signal::SIGTERM`).
    pub fn signal(&self, sig: nix::sys::signal::Signal) -> Result<(), TestSupportError> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
        nix::sys::signal::kill(pid, sig).map_err(|e| TestSupportError::Io {
            what: format!("signal {sig} to {}", self.name),
            source: std::io::Error::from(e),
        })
    }

    /// SIGTERM.
    pub fn terminate(&self) -> Result<(), TestSupportError> {
        self.signal(nix::sys::signal::Signal::SIGTERM)
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            self.status = c.wait().ok();
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus, TestSupportError> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.child.as_mut()
                && let Some(s) = c.try_wait().map_err(io_err("wait child"))?
            {
                self.status = Some(s);
                return Ok(s);
            }
            if Instant::now() > deadline {
                return Err(TestSupportError::NotReady {
                    what: format!("exit of {}", self.name),
                    timeout,
                    log: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        tail(self.log.path(), usize::MAX)
    }

    /// The last 8 KiB of the output.
    pub fn log_tail(&self) -> String {
        tail(self.log.path(), 8192)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// Whether process `pid` is running: it exists and is not a zombie (state
/// Z: it has exited, its parent just has not reaped it).
pub fn alive(pid: u64) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised name.
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

/// Polls `cond` every `every` until it holds or `timeout` passes.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<(), TestSupportError> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(TestSupportError::Timeout {
                what: what.to_owned(),
                timeout,
            });
        }
        std::thread::sleep(every);
    }
}

/// Async version of [`wait_until`]: polls `f` until it yields `Some`.
pub async fn eventually<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: F,
) -> Result<T, TestSupportError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(TestSupportError::Timeout {
                what: what.to_owned(),
                timeout,
            });
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("v2.15.1"), Some((2, 15, 1)));
        assert_eq!(parse_version("2.10"), Some((2, 10, 0)));
        assert_eq!(parse_version("2.11.0-RC.1"), Some((2, 11, 0)));
        assert!(parse_version("2.9.25").unwrap() < MIN_NATS_VERSION);
        assert_eq!(parse_version("x"), None);
    }

    #[test]
    fn server_starts_restarts_and_cleans_up() {
        let mut s = NatsServer::start().unwrap();
        let port = s.port();
        assert_ne!(port, 0);
        let store = s.store_dir();
        TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.restart().unwrap();
        assert_eq!(s.port(), port);
        TcpStream::connect(("127.0.0.1", port)).unwrap();
        drop(s);
        assert!(!store.exists());
        wait_until(
            "port closed",
            Duration::from_secs(5),
            Duration::from_millis(20),
            || TcpStream::connect(("127.0.0.1", port)).is_err(),
        )
        .unwrap();
    }

    /// Stable ports are bindable, below the ephemeral range, and successive
    /// calls give different ports.
    #[test]
    fn stable_ports_are_free_and_not_ephemeral() {
        let low = ephemeral_low();
        let ports: Vec<u16> = (0..6).map(|_| stable_port().unwrap()).collect();
        for &p in &ports {
            assert!((10_000..low).contains(&p), "{p} (ephemeral from {low})");
            assert!(std::net::TcpListener::bind(("127.0.0.1", p)).is_ok(), "{p}");
        }
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
    }

    #[test]
    fn missing_binary_has_a_hint() {
        let e = bin_path("no-such-binary-here").unwrap_err();
        assert!(matches!(e, TestSupportError::BinaryMissing { .. }));
        assert!(e.to_string().contains("cargo build --workspace --bins"));
    }

    #[test]
    fn child_guard_kills_on_drop() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut g = ChildGuard::spawn("sleep", cmd).unwrap();
        assert!(g.is_running());
        let pid = g.pid().unwrap();
        drop(g);
        // The pid is reaped, so signal 0 fails.
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok();
        assert!(!alive);
    }
}
