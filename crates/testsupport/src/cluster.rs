//! [`NatsCluster`]: real nats-servers on 127.0.0.1 joined by cluster routes
//! into one JetStream cluster, each with its own file store, for fault
//! tests (kill, pause, restart a node or all of them).

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{READY_TIMEOUT, TestSupportError, io_err, nats_server_binary, stable_port, tail};

/// How long the cluster (or a restarted node) gets to report healthy: a
/// restarted node must also catch up its streams.
pub const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One server of a [`NatsCluster`].
#[derive(Debug)]
struct Node {
    name: String,
    port: u16,
    route_port: u16,
    monitor_port: u16,
    child: Option<Child>,
    paused: bool,
}

/// A JetStream cluster of real nats-servers on 127.0.0.1, named `n1..nN`,
/// with fixed ports (stable across restarts) and a file store per node in a
/// temporary directory; every server is killed and the stores deleted on
/// drop.
///
/// ```no_run
/// let mut c = farm_testsupport::NatsCluster::start(3).unwrap();
/// println!("NATS_URL={}", c.urls());
/// c.kill(0); // n1 crashes
/// c.start_again(0).unwrap(); // and comes back with its store
/// ```
#[derive(Debug)]
pub struct NatsCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    name: String,
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// Starts `size` servers and waits until every one is healthy
    /// (JetStream meta leader known, `/healthz` answers 200).
    pub fn start(size: usize) -> Result<Self, TestSupportError> {
        let bin = nats_server_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("farm-nats-cluster-")
            .tempdir()
            .map_err(io_err("create nats cluster temp dir"))?;
        let mut nodes = Vec::with_capacity(size);
        for i in 1..=size {
            let name = format!("n{i}");
            fs::create_dir_all(dir.path().join(&name).join("store"))
                .map_err(io_err("create node store"))?;
            nodes.push(Node {
                name,
                port: stable_port()?,
                route_port: stable_port()?,
                monitor_port: stable_port()?,
                child: None,
                paused: false,
            });
        }
        let mut c = Self {
            bin,
            dir,
            name: "farm".to_owned(),
            nodes,
        };
        for i in 0..size {
            c.spawn(i)?;
        }
        c.wait_healthy()?;
        Ok(c)
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.nodes[i].name)
    }

    fn spawn(&mut self, i: usize) -> Result<(), TestSupportError> {
        let routes = self
            .nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.route_port))
            .collect::<Vec<_>>()
            .join(",");
        let node = &self.nodes[i];
        let dir = self.node_dir(i);
        let child = Command::new(&self.bin)
            .arg("-js")
            .args(["-a", "127.0.0.1"])
            .args(["-p", &node.port.to_string()])
            .args(["-m", &node.monitor_port.to_string()])
            .args(["-n", &node.name])
            .args(["--cluster_name", &self.name])
            .arg("--cluster")
            .arg(format!("nats://127.0.0.1:{}", node.route_port))
            .args(["--routes", &routes])
            .arg("-sd")
            .arg(dir.join("store"))
            .arg("-l")
            .arg(dir.join("nats-server.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io_err(format!(
                "spawn {} as {}",
                self.bin.display(),
                node.name
            )))?;
        self.nodes[i].child = Some(child);
        self.nodes[i].paused = false;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if TcpStream::connect(("127.0.0.1", self.nodes[i].port)).is_ok() {
                return Ok(());
            }
            self.check_alive(i)?;
            if Instant::now() > deadline {
                return Err(self.not_ready(i, READY_TIMEOUT));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn check_alive(&mut self, i: usize) -> Result<(), TestSupportError> {
        if let Some(Ok(Some(status))) = self.nodes[i].child.as_mut().map(Child::try_wait) {
            return Err(TestSupportError::NotReady {
                what: format!("nats-server {} (exited with {status})", self.nodes[i].name),
                timeout: READY_TIMEOUT,
                log: self.log_tail(i),
            });
        }
        Ok(())
    }

    fn not_ready(&self, i: usize, timeout: Duration) -> TestSupportError {
        TestSupportError::NotReady {
            what: format!("nats-server {}", self.nodes[i].name),
            timeout,
            log: self.log_tail(i),
        }
    }

    /// Number of servers.
    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// The cluster's name (`cluster` in the servers' INFO).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Server name of node `i` (`n{i+1}`).
    pub fn node_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// `nats://127.0.0.1:PORT` of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// Every node's URL, comma-separated: a `NATS_URL` for the farm's
    /// components.
    pub fn urls(&self) -> String {
        (0..self.size())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every node's address, for `async_nats::connect` (which takes one URL
    /// per string, not a comma list).
    pub fn server_addrs(&self) -> Vec<async_nats::ServerAddr> {
        (0..self.size())
            .filter_map(|i| self.url(i).parse().ok())
            .collect()
    }

    /// Node `i`'s log file.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("nats-server.log")
    }

    /// The last 4 KiB of node `i`'s log.
    pub fn log_tail(&self, i: usize) -> String {
        tail(&self.log_path(i), 4096)
    }

    /// Every node's log tail, for failure messages.
    pub fn logs(&self) -> String {
        (0..self.size())
            .map(|i| {
                format!(
                    "--- nats-server {} ---\n{}\n",
                    self.nodes[i].name,
                    self.log_tail(i)
                )
            })
            .collect()
    }

    /// Whether node `i` is running (paused counts as running).
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i]
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills node `i` with SIGKILL (a crash), keeping its store and ports.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.nodes[i].paused = false;
    }

    /// Stops node `i` with SIGTERM (a clean shutdown), waiting up to
    /// [`READY_TIMEOUT`] before killing it.
    pub fn stop(&mut self, i: usize) -> Result<(), TestSupportError> {
        self.resume(i)?;
        self.signal(i, nix::sys::signal::Signal::SIGTERM)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while self.is_running(i) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill(i);
        Ok(())
    }

    /// Freezes node `i` with SIGSTOP: its sockets stay open but it answers
    /// nothing, like a server cut off by a network partition.
    pub fn pause(&mut self, i: usize) -> Result<(), TestSupportError> {
        self.signal(i, nix::sys::signal::Signal::SIGSTOP)?;
        self.nodes[i].paused = true;
        Ok(())
    }

    /// Thaws a node frozen by [`NatsCluster::pause`] (SIGCONT).
    pub fn resume(&mut self, i: usize) -> Result<(), TestSupportError> {
        if self.nodes[i].paused {
            self.signal(i, nix::sys::signal::Signal::SIGCONT)?;
            self.nodes[i].paused = false;
        }
        Ok(())
    }

    fn signal(&self, i: usize, sig: nix::sys::signal::Signal) -> Result<(), TestSupportError> {
        let Some(c) = &self.nodes[i].child else {
            return Ok(());
        };
        let pid = nix::unistd::Pid::from_raw(i32::try_from(c.id()).unwrap_or(i32::MAX));
        nix::sys::signal::kill(pid, sig).map_err(|e| TestSupportError::Io {
            what: format!("signal {sig} to nats-server {}", self.nodes[i].name),
            source: std::io::Error::from(e),
        })
    }

    /// Starts node `i` again after [`NatsCluster::kill`] or
    /// [`NatsCluster::stop`], on its ports and store, and waits until it is
    /// healthy (caught up with the cluster).
    pub fn start_again(&mut self, i: usize) -> Result<(), TestSupportError> {
        if self.nodes[i].child.is_none() {
            self.spawn(i)?;
        }
        self.wait_node_healthy(i, CLUSTER_READY_TIMEOUT)
    }

    /// Kills node `i` and starts it again with the same store.
    pub fn restart(&mut self, i: usize) -> Result<(), TestSupportError> {
        self.kill(i);
        self.start_again(i)
    }

    /// Kills every node, then starts them all again with their stores.
    pub fn restart_all(&mut self) -> Result<(), TestSupportError> {
        for i in 0..self.size() {
            self.kill(i);
        }
        for i in 0..self.size() {
            self.spawn(i)?;
        }
        self.wait_healthy()
    }

    /// Waits until every running node answers `/healthz` with 200.
    pub fn wait_healthy(&mut self) -> Result<(), TestSupportError> {
        for i in 0..self.size() {
            if self.nodes[i].child.is_some() && !self.nodes[i].paused {
                self.wait_node_healthy(i, CLUSTER_READY_TIMEOUT)?;
            }
        }
        Ok(())
    }

    fn wait_node_healthy(&mut self, i: usize, timeout: Duration) -> Result<(), TestSupportError> {
        let deadline = Instant::now() + timeout;
        loop {
            if http_status(self.nodes[i].monitor_port, "/healthz") == Some(200) {
                return Ok(());
            }
            self.check_alive(i)?;
            if Instant::now() > deadline {
                return Err(self.not_ready(i, timeout));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server name of `stream`'s current leader, from the JetStream
    /// stream info (`cluster.leader`) as seen through node `via`; `None`
    /// while there is none (an election) or the node does not answer.
    pub async fn stream_leader(&self, via: usize, stream: &str) -> Option<String> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(self.url(via))
            .await
            .ok()?;
        let js = async_nats::jetstream::new(client.clone());
        let info = tokio::time::timeout(Duration::from_secs(3), async {
            js.get_stream(stream).await.ok()?.info().await.ok().cloned()
        })
        .await
        .ok()
        .flatten();
        drop(client);
        info?.cluster?.leader.filter(|l| !l.is_empty())
    }

    /// Waits up to `timeout` for `stream` to have a leader (asking every
    /// running, unpaused node in turn) for which `accept` holds; returns
    /// its node index.
    pub async fn wait_stream_leader(
        &self,
        stream: &str,
        timeout: Duration,
        accept: impl Fn(usize) -> bool,
    ) -> Result<usize, TestSupportError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            for via in 0..self.size() {
                if self.nodes[via].child.is_none() || self.nodes[via].paused {
                    continue;
                }
                if let Some(i) = self
                    .stream_leader(via, stream)
                    .await
                    .and_then(|l| self.index_of(&l))
                    && accept(i)
                {
                    return Ok(i);
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(TestSupportError::Timeout {
                    what: format!("a leader of stream {stream}"),
                    timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// The status code of `GET path` on a local monitoring port; `None` if the
/// server does not answer within a second.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
