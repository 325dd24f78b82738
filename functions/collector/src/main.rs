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
    let cfg = CollectorConfig::from_map(&env_map());
    farm_runtime::service_main(
        "collector",
        cfg,
        |c| &c.farm,
        |cfg, listener, stop| async move {
            collector::run(cfg, listener, stop)
                .await
                .map_err(Into::into)
        },
    )
    .await
}
