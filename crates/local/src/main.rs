//! `farm-local`: runs the local OpenFaaS-compatible provider on
//! `127.0.0.1:$port` until SIGINT or SIGTERM, then drains every replica.
//! Configuration comes from the environment (see `farm_local::config`).

use farm_local::{Config, Provider};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    if json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let vars = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let config = match Config::from_pairs(vars) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("farm-local: {e}");
            std::process::exit(64);
        }
    };
    let port = config.port;
    let provider = match Provider::new(config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("farm-local: {e}");
            std::process::exit(64);
        }
    };
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("farm-local: cannot bind 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    let shutdown = async {
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        tracing::info!("shutdown requested");
    };
    if let Err(e) = provider.run(listener, shutdown).await {
        eprintln!("farm-local: {e}");
        std::process::exit(1);
    }
}
