//! Log output of the foreground commands.

/// Logs to stderr (stdout carries the commands' tables and addresses), at
/// `RUST_LOG`'s levels or else warnings only. A second call keeps the first
/// subscriber.
pub fn log_to_stderr() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
