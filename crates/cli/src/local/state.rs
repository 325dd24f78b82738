//! The running farm as `up` left it: the state file the supervisor writes,
//! the processes it names, and the run-time state `down` removes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// Name of the state file inside the state directory.
pub(super) const STATE_FILE: &str = "state.json";

/// A process the supervisor started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Its pid.
    pub pid: u32,
    /// Where it listens.
    pub url: String,
}

/// What a running local farm looks like: `<state>/state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FarmState {
    /// The supervisor (also the process group of nats-server and gateway-ext).
    pub supervisor_pid: u32,
    /// The stack file the farm was started from.
    pub stack_file: PathBuf,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The local image store.
    pub image_store: PathBuf,
    /// nats-server; on a cluster its first node (the one
    /// `nats.openfaas:4222` names).
    pub nats: Endpoint,
    /// Every nats-server, `nats` first (one on a single server). Empty in a
    /// state file written before clusters: see [`FarmState::nats_nodes`].
    #[serde(default)]
    pub nats_nodes: Vec<Endpoint>,
    /// The provider (in the supervisor process).
    pub provider_url: String,
    /// gateway-ext, when running.
    pub gateway_ext: Option<Endpoint>,
    /// Why gateway-ext is not running, when it is not.
    pub gateway_ext_note: String,
}

impl FarmState {
    /// Reads the state of the farm in `state_dir`; a clear error when none is up.
    pub fn load(state_dir: &Path) -> Result<FarmState> {
        let path = state_dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no farm is up in {} (run `farmctl up` first)",
                state_dir.display()
            )
        })?;
        let st: FarmState =
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        if !alive(st.supervisor_pid) {
            bail!(
                "the farm in {} is not running any more (supervisor {} is gone; see {}); run `farmctl down` to clean up",
                state_dir.display(),
                st.supervisor_pid,
                state_dir.join("logs/supervisor.log").display()
            );
        }
        Ok(st)
    }

    /// Every nats-server of the farm, the first being [`FarmState::nats`].
    pub fn nats_nodes(&self) -> &[Endpoint] {
        if self.nats_nodes.is_empty() {
            std::slice::from_ref(&self.nats)
        } else {
            &self.nats_nodes
        }
    }

    /// Every nats-server's URL, comma-separated: the `NATS_URL` of the
    /// farm's functions and of gateway-ext.
    pub fn nats_url(&self) -> String {
        self.nats_nodes()
            .iter()
            .map(|n| n.url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A client of the farm's NATS (any node that answers; it follows the
    /// cluster as nodes go and come).
    pub async fn connect_nats(&self) -> Result<async_nats::Client> {
        let cfg = farm_runtime::config::NatsConfig {
            urls: self.nats_nodes().iter().map(|n| n.url.clone()).collect(),
            name: Some("farmctl".into()),
            ..farm_runtime::config::NatsConfig::plain(&self.nats.url)
        };
        farm_runtime::nats::connect(&cfg)
            .await
            .with_context(|| format!("connecting to nats-server {}", self.nats_url()))
    }

    /// The URL function calls and management go to: gateway-ext when it
    /// runs (as the OpenFaaS gateway would be), else the provider.
    pub fn gateway_url(&self) -> &str {
        self.gateway_ext
            .as_ref()
            .map_or(&self.provider_url, |g| &g.url)
    }
}

/// Whether `pid` is a live (non-zombie) process.
pub fn alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if kill(Pid::from_raw(raw), None).is_err() {
        return false;
    }
    // A zombie still answers signals; its state letter follows the name.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => true,
    }
}

/// Pids of live processes whose executable lies under `dir` (replicas
/// started from the image store).
pub fn processes_under(dir: &Path) -> Vec<u32> {
    let Ok(root) = dir.canonicalize() else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe.starts_with(&root))
        })
        .filter(|pid| alive(*pid))
        .collect()
}

/// Removes the run-time state; the image store and logs stay (the next `up`
/// reuses the builds, the logs explain the last run).
pub(super) fn clean_state(state_dir: &Path) {
    for sub in ["nats", "replicas"] {
        let _ = std::fs::remove_dir_all(state_dir.join(sub));
    }
    let _ = std::fs::remove_file(state_dir.join(STATE_FILE));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX));
    }

    #[test]
    fn a_state_file_from_before_clusters_has_one_nats_node() {
        let old = r#"{"supervisor_pid": 1, "stack_file": "stack.yml", "state_dir": ".farm",
            "image_store": ".farm/images", "nats": {"pid": 7, "url": "nats://127.0.0.1:4222"},
            "provider_url": "http://127.0.0.1:8081", "gateway_ext": null, "gateway_ext_note": ""}"#;
        let st: FarmState = serde_json::from_str(old).unwrap();
        assert_eq!(st.nats_nodes(), std::slice::from_ref(&st.nats));
        assert_eq!(st.nats_url(), "nats://127.0.0.1:4222");

        let node = |pid, port| Endpoint {
            pid,
            url: format!("nats://127.0.0.1:{port}"),
        };
        let cluster = FarmState {
            nats: node(7, 4222),
            nats_nodes: vec![node(7, 4222), node(8, 4223), node(9, 4224)],
            ..st
        };
        assert_eq!(
            cluster.nats_url(),
            "nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"
        );
    }

    #[test]
    fn a_missing_state_says_to_run_up() {
        let dir = tempfile::tempdir().unwrap();
        let e = FarmState::load(dir.path()).unwrap_err();
        let io = e.downcast_ref::<std::io::Error>().map(std::io::Error::kind);
        assert_eq!(io, Some(std::io::ErrorKind::NotFound), "{e:#}");
    }
}
