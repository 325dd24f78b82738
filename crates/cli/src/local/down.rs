//! `farmctl down`: stop the supervisor (it drains the replicas), kill what
//! it left behind, remove the run-time state.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tracing::warn;

use super::DownArgs;
use super::state::{FarmState, STATE_FILE, alive, clean_state, processes_under};

/// Run `farmctl down`.
pub fn down(a: DownArgs) -> Result<()> {
    let state_dir = std::path::absolute(&a.state).context("state directory")?;
    let path = state_dir.join(STATE_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        let strays = processes_under(&state_dir.join("images"));
        kill_all(&strays);
        println!("no farm is up in {}", state_dir.display());
        return Ok(());
    };
    let st: FarmState =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    let pid = Pid::from_raw(i32::try_from(st.supervisor_pid).context("supervisor pid")?);
    if alive(st.supervisor_pid) {
        println!(
            "stopping the farm (supervisor {}): draining replicas...",
            st.supervisor_pid
        );
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(a.timeout);
        while alive(st.supervisor_pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(st.supervisor_pid) {
            warn!(
                pid = st.supervisor_pid,
                "supervisor did not stop in time; killing its process group"
            );
            println!(
                "the supervisor did not stop within {}s; killing it",
                a.timeout
            );
            let _ = killpg(pid, Signal::SIGKILL);
        }
    }
    // Whatever the supervisor could not stop (it was killed, or crashed).
    let mut leftovers: Vec<u32> = st
        .nats_nodes()
        .iter()
        .map(|n| n.pid)
        .chain(st.gateway_ext.as_ref().map(|g| g.pid))
        .filter(|p| alive(*p))
        .collect();
    leftovers.extend(processes_under(&st.image_store));
    if !leftovers.is_empty() {
        println!("killing leftover processes {leftovers:?}");
        kill_all(&leftovers);
    }
    clean_state(&state_dir);
    println!("farm is down");
    Ok(())
}

fn kill_all(pids: &[u32]) {
    for p in pids {
        if let Ok(raw) = i32::try_from(*p) {
            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
        }
    }
}
