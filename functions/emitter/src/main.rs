//! The emitter binary: parse the configuration from the environment (exit 64
//! listing every problem), bind the HTTP port, run until SIGTERM or SIGINT.

use std::process::ExitCode;

use emitter::config::EmitterConfig;
use farm_runtime::config::env_map;

#[tokio::main]
async fn main() -> ExitCode {
    let cfg = match EmitterConfig::from_map(&env_map()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("emitter: {e}");
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
    match emitter::run(cfg, listener, farm_runtime::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "emitter failed");
            ExitCode::FAILURE
        }
    }
}
