//! The emitter binary: parse the configuration from the environment (exit 64
//! listing every problem), bind the HTTP port, run until SIGTERM or SIGINT.

use std::process::ExitCode;

use emitter::config::EmitterConfig;
use farm_runtime::config::env_map;

#[tokio::main]
async fn main() -> ExitCode {
    let cfg = EmitterConfig::from_map(&env_map());
    farm_runtime::service_main("emitter", cfg, |c| &c.farm, |cfg, listener, stop| async move {
        emitter::run(cfg, listener, stop).await.map_err(Into::into)
    })
    .await
}
