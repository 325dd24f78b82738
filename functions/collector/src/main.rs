//! The collector binary: parse the configuration from the environment (exit
//! 64 listing every problem), bind the HTTP port, run until SIGTERM/SIGINT.

use std::process::ExitCode;

use collector::config::CollectorConfig;
use farm_runtime::config::env_map;

// One thread: the collecting loop is sequential by design (one consumer,
// outputs in order), and on a multi-threaded runtime every result would cross
// threads twice (the NATS connection task wakes the loop, the loop wakes the
// connection task to send), each cross-thread wake-up a scheduler round trip
// that adds latency and CPU. The HTTP server and the snapshot ticker are
// light enough to share the thread.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cfg = match CollectorConfig::from_map(&env_map()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("collector: {e}");
            return ExitCode::from(farm_runtime::EXIT_CONFIG);
        }
    };
    farm_runtime::telemetry::init(cfg.farm.log_format);
    let addr = (cfg.farm.http.addr, cfg.farm.http.port);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, ?addr, "cannot bind");
            return ExitCode::FAILURE;
        }
    };
    match collector::run(cfg, listener, farm_runtime::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "collector failed");
            ExitCode::FAILURE
        }
    }
}
