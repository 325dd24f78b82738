//! Helpers of the tests that start local farms: farmctl with the test's
//! nats-server, commands that must succeed, cleanup on failure, and the
//! processes a farm leaves.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use farm_testsupport::alive;

pub fn farmctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_farmctl"));
    c.env(
        "NATS_SERVER",
        farm_testsupport::nats_server_binary().expect("nats-server >= 2.10 (run scripts/setup.sh)"),
    );
    c.env_remove("RUST_LOG");
    c
}

pub fn run(mut c: Command, what: &str) -> Output {
    let t0 = std::time::Instant::now();
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    eprintln!("{what}: {:.1}s", t0.elapsed().as_secs_f64());
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `farmctl up` of `stack` in `state` on free ports, without gateway-ext,
/// building with the `dev` profile (the workspace's debug artifacts).
pub fn up(stack: &Path, state: &Path) -> Command {
    let mut c = farmctl();
    c.arg("up")
        .arg("-f")
        .arg(stack)
        .arg("--state")
        .arg(state)
        .args([
            "--nats-port",
            "0",
            "--provider-port",
            "0",
            "--gateway-port",
            "0",
        ])
        .args(["--gateway-ext", "off", "--cargo-profile", "dev"]);
    c
}

/// Brings the farm down even when an assertion fails half-way.
pub struct Down(pub PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = farmctl().arg("down").arg("--state").arg(&self.0).output();
    }
}

/// Live processes whose executable lies under `dir`.
pub fn processes_under(dir: &Path) -> Vec<u64> {
    let root = dir.canonicalize().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe.starts_with(&root))
        })
        .filter(|pid| alive(*pid))
        .collect()
}
