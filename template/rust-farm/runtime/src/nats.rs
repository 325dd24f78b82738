//! Connecting to NATS: authentication, TLS, and the server version check.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions};

use tracing::warn;

use crate::config::{NatsAuth, NatsConfig, Secret};

/// Oldest nats-server the farm accepts: the work-queue and consumer features
/// it relies on (e.g. nak with delay, consumer metadata) need 2.10.
pub const MIN_SERVER_VERSION: (u64, u64, u64) = (2, 10, 0);

/// Why a connection could not be made or was refused.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// A secret file (token or password) could not be read.
    #[error("cannot read {what} file {path}: {source}")]
    SecretFile {
        /// Which secret.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The credentials file could not be read or parsed.
    #[error("cannot load NATS credentials file {path}: {source}")]
    CredsFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A TLS file (CA, certificate or key) does not exist.
    #[error("TLS file {path} does not exist ({what})")]
    TlsFile {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The connection failed (unreachable, auth rejected, TLS error, ...).
    #[error("cannot connect to NATS at {urls}: {source}")]
    Connect {
        /// The URLs tried.
        urls: String,
        /// The client error.
        #[source]
        source: async_nats::ConnectError,
    },
    /// The server is older than [`MIN_SERVER_VERSION`].
    #[error(
        "nats-server {found} is too old: rust-farm needs nats-server >= 2.10.0 with JetStream (upgrade the server)"
    )]
    ServerTooOld {
        /// The version the server reported.
        found: String,
    },
    /// The server's version string does not parse.
    #[error("nats-server reported an unparseable version {found:?}; expected MAJOR.MINOR.PATCH")]
    BadServerVersion {
        /// The version the server reported.
        found: String,
    },
    /// The server has JetStream disabled.
    #[error("nats-server at {urls} does not have JetStream enabled (start it with -js)")]
    NoJetStream {
        /// The URLs tried.
        urls: String,
    },
}

impl NatsError {
    /// Whether retrying the same connection later may succeed (the server
    /// may still be starting); configuration and version errors are final.
    pub fn is_transient(&self) -> bool {
        match self {
            NatsError::Connect { source, .. } => matches!(
                source.kind(),
                async_nats::ConnectErrorKind::Io
                    | async_nats::ConnectErrorKind::TimedOut
                    | async_nats::ConnectErrorKind::ServerParse
            ),
            _ => false,
        }
    }
}

/// Checks a server version string (`2.10.22`, `2.11.0-RC.1`) against
/// [`MIN_SERVER_VERSION`]. Pure, so it is unit-tested without an old server.
pub fn check_server_version(version: &str) -> Result<(), NatsError> {
    let parsed = parse_version(version).ok_or_else(|| NatsError::BadServerVersion {
        found: version.to_owned(),
    })?;
    if parsed < MIN_SERVER_VERSION {
        return Err(NatsError::ServerTooOld {
            found: version.to_owned(),
        });
    }
    Ok(())
}

fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let v = v.trim().trim_start_matches('v');
    // Drop pre-release / build suffixes: "2.11.0-RC.1" -> "2.11.0".
    let core = v.split(['-', '+']).next()?;
    let mut it = core.split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    let patch = it.next().map_or(Some(0), |p| p.parse().ok())?;
    if it.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}

fn read_secret(what: &'static str, s: &Secret) -> Result<String, NatsError> {
    match s {
        Secret::Inline(v) => Ok(v.clone()),
        Secret::File(path) => std::fs::read_to_string(path)
            .map(|v| v.trim_end().to_owned())
            .map_err(|source| NatsError::SecretFile {
                what,
                path: path.clone(),
                source,
            }),
    }
}

/// Builds the client options for `cfg` (reads secret files, checks TLS files).
pub async fn connect_options(cfg: &NatsConfig) -> Result<ConnectOptions, NatsError> {
    let mut opts = match &cfg.auth {
        NatsAuth::None => ConnectOptions::new(),
        NatsAuth::Token(t) => ConnectOptions::with_token(read_secret("token", t)?),
        NatsAuth::CredsFile(path) => ConnectOptions::with_credentials_file(path.clone())
            .await
            .map_err(|source| NatsError::CredsFile {
                path: path.clone(),
                source,
            })?,
        NatsAuth::UserPassword { user, password } => {
            ConnectOptions::with_user_and_password(user.clone(), read_secret("password", password)?)
        }
    };
    if let Some(ca) = &cfg.tls.ca_file {
        if !ca.exists() {
            return Err(NatsError::TlsFile {
                what: "NATS_TLS_CA",
                path: ca.clone(),
            });
        }
        opts = opts.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &cfg.tls.client_cert {
        for (what, p) in [("NATS_TLS_CERT", cert), ("NATS_TLS_KEY", key)] {
            if !p.exists() {
                return Err(NatsError::TlsFile {
                    what,
                    path: p.clone(),
                });
            }
        }
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    if cfg.tls.required {
        opts = opts.require_tls(true);
    }
    if let Some(name) = &cfg.name {
        opts = opts.name(name.clone());
    }
    // Reconnect forever: a worker outlives nats-server restarts; JetStream
    // redelivers whatever was in flight.
    Ok(opts.max_reconnects(None))
}

/// [`connect`], retrying while the failure is transient (the server not up
/// yet) with a backoff from 100 ms to 2 s; gives up after `patience`
/// (`None`: never, for a caller that stops the wait another way).
pub async fn connect_retrying(
    cfg: &NatsConfig,
    patience: Option<Duration>,
) -> Result<Client, NatsError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match connect(cfg).await {
            Ok(c) => return Ok(c),
            Err(e) if e.is_transient() && patience.is_none_or(|p| start.elapsed() + delay < p) => {
                warn!(error = %e, retry_in = ?delay, "NATS not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Connects to NATS and refuses servers older than 2.10 or without JetStream.
///
/// The client is returned only after the server's INFO was received, so the
/// version check is made against the real server.
pub async fn connect(cfg: &NatsConfig) -> Result<Client, NatsError> {
    let opts = connect_options(cfg).await?;
    let urls = cfg.urls.join(",");
    let addrs: Vec<async_nats::ServerAddr> =
        cfg.urls.iter().filter_map(|u| u.parse().ok()).collect();
    let client = opts
        .connect(addrs)
        .await
        .map_err(|source| NatsError::Connect {
            urls: urls.clone(),
            source,
        })?;
    let info = client.server_info();
    if let Err(e) = check_server_version(&info.version) {
        // Nothing was published yet; closing is best effort.
        let _ = client.drain().await;
        return Err(e);
    }
    if !info.jetstream {
        let _ = client.drain().await;
        return Err(NatsError::NoJetStream { urls });
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_2_10_and_newer() {
        for v in [
            "2.10.0",
            "2.10.22",
            "2.11.0-RC.1",
            "2.15.1",
            "3.0.0",
            "v2.12.3",
        ] {
            assert!(check_server_version(v).is_ok(), "{v}");
        }
    }

    #[test]
    fn refuses_older_than_2_10() {
        for v in ["2.9.25", "2.2.0", "1.4.1", "2.9.99-beta"] {
            assert!(
                matches!(check_server_version(v), Err(NatsError::ServerTooOld { .. })),
                "{v}"
            );
        }
    }

    #[test]
    fn refuses_garbage_versions() {
        for v in ["", "two", "2", "2.x.1", "2.10.1.4"] {
            assert!(
                matches!(
                    check_server_version(v),
                    Err(NatsError::BadServerVersion { .. })
                ),
                "{v}"
            );
        }
    }

    #[tokio::test]
    async fn missing_files_are_typed_errors() {
        let mut cfg = NatsConfig::plain("nats://127.0.0.1:1");
        cfg.auth = NatsAuth::Token(Secret::File("/nonexistent/token".into()));
        assert!(matches!(
            connect_options(&cfg).await,
            Err(NatsError::SecretFile { what: "token", .. })
        ));
        cfg.auth = NatsAuth::CredsFile("/nonexistent/x.creds".into());
        assert!(matches!(
            connect_options(&cfg).await,
            Err(NatsError::CredsFile { .. })
        ));
        cfg.auth = NatsAuth::None;
        cfg.tls.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(matches!(
            connect_options(&cfg).await,
            Err(NatsError::TlsFile {
                what: "NATS_TLS_CA",
                ..
            })
        ));
    }
}
