//! The `gateway-ext` binary: configuration from the environment, then
//! [`gateway_ext::Service`] until SIGTERM/SIGINT.

use std::process::ExitCode;

use gateway_ext::config::{Config, LogFormat};
use gateway_ext::{EXIT_CONFIG, StartError};
use tracing::{error, info};

fn main() -> ExitCode {
    let mut env = farm_runtime::config::env_map();
    if let Err(e) = gateway_ext::config::apply_args(&mut env, std::env::args().skip(1)) {
        eprintln!("{e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let mut cfg = match Config::from_map(&env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(e) = cfg.load_farms_file() {
        eprintln!("{e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match cfg.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        LogFormat::Plain => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let http = match tokio::net::TcpListener::bind(cfg.http_addr).await {
            Ok(l) => l,
            Err(e) => {
                error!(addr = %cfg.http_addr, error = %e, "cannot listen");
                return ExitCode::FAILURE;
            }
        };
        let grpc = match cfg.grpc_addr {
            None => None,
            Some(a) => match tokio::net::TcpListener::bind(a).await {
                Ok(l) => Some(l),
                Err(e) => {
                    error!(addr = %a, error = %e, "cannot listen");
                    return ExitCode::FAILURE;
                }
            },
        };
        match gateway_ext::run(cfg, http, grpc, farm_runtime::shutdown_signal()).await {
            Ok(()) => {
                info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e @ (StartError::Policy { .. } | StartError::AuthSecret { .. })) => {
                error!(error = %e, "cannot start");
                eprintln!("gateway-ext: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
            Err(e) => {
                error!(error = %e, "stopped with an error");
                ExitCode::FAILURE
            }
        }
    })
}
