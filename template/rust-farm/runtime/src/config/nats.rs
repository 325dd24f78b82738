//! The NATS connection settings (`NATS_*` keys, see the table in
//! [`crate::config`]): servers, authentication and TLS.

use std::fmt;

use super::*;

/// A secret given inline or as a file to read at connect time.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The value itself.
    Inline(String),
    /// A file holding the value (trailing whitespace is trimmed).
    File(PathBuf),
}

impl fmt::Debug for Secret {
    // Never print secret values into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Inline(<redacted>)"),
            Secret::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

/// How to authenticate to NATS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NatsAuth {
    /// No authentication.
    #[default]
    None,
    /// Token authentication.
    Token(Secret),
    /// A NATS credentials (`.creds`) file.
    CredsFile(PathBuf),
    /// User and password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: Secret,
    },
}

/// TLS settings of the NATS connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
    /// CA certificates (PEM) to trust in addition to none; the server's chain
    /// must verify against them.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Refuse a plain-text connection.
    pub required: bool,
}

/// Everything needed to connect to NATS (see [`crate::nats::connect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// Server URLs, at least one.
    pub urls: Vec<String>,
    /// Authentication.
    pub auth: NatsAuth,
    /// TLS.
    pub tls: TlsConfig,
    /// Connection name shown by the server (`connz`).
    pub name: Option<String>,
}

impl NatsConfig {
    /// A plain connection to `url` with no authentication, for tests and tools.
    pub fn plain(url: impl Into<String>) -> Self {
        Self {
            urls: vec![url.into()],
            auth: NatsAuth::None,
            tls: TlsConfig::default(),
            name: None,
        }
    }

    /// Parses only the `NATS_*` keys (for the emitter, collector and tools).
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, ConfigErrors> {
        let mut p = Parser::new(map);
        let nats = p.nats();
        p.finish(nats)
    }
}

impl Parser<'_> {
    pub(super) fn nats(&mut self) -> NatsConfig {
        let raw = self.get("NATS_URL").unwrap_or("nats://127.0.0.1:4222");
        let mut urls = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse::<async_nats::ServerAddr>() {
                Ok(_) => urls.push(part.to_owned()),
                Err(e) => self.errors.push(ConfigError::InvalidUrl {
                    value: part.to_owned(),
                    reason: e.to_string(),
                }),
            }
        }
        if urls.is_empty()
            && !self
                .errors
                .iter()
                .any(|e| matches!(e, ConfigError::InvalidUrl { .. }))
        {
            self.errors.push(ConfigError::InvalidUrl {
                value: raw.to_owned(),
                reason: "no server address".to_owned(),
            });
        }

        let auth = self.auth();
        let ca_file = self.get("NATS_TLS_CA").map(PathBuf::from);
        let cert = self.get("NATS_TLS_CERT").map(PathBuf::from);
        let key = self.get("NATS_TLS_KEY").map(PathBuf::from);
        let client_cert = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (Some(_), None) => {
                self.errors.push(ConfigError::Incomplete {
                    key: "NATS_TLS_CERT",
                    requires: "NATS_TLS_KEY",
                });
                None
            }
            (None, Some(_)) => {
                self.errors.push(ConfigError::Incomplete {
                    key: "NATS_TLS_KEY",
                    requires: "NATS_TLS_CERT",
                });
                None
            }
            (None, None) => None,
        };
        let implied = ca_file.is_some()
            || client_cert.is_some()
            || urls.iter().any(|u| u.starts_with("tls://"));
        let required = self.boolean("NATS_TLS_REQUIRED").unwrap_or(implied);
        NatsConfig {
            urls,
            auth,
            tls: TlsConfig {
                ca_file,
                client_cert,
                required,
            },
            name: None,
        }
    }

    fn auth(&mut self) -> NatsAuth {
        let token = self.get("NATS_TOKEN");
        let token_file = self.get("NATS_TOKEN_FILE");
        let creds = self.get("NATS_CREDS");
        let user = self.get("NATS_USER");
        let password = self.get("NATS_PASSWORD");
        let password_file = self.get("NATS_PASSWORD_FILE");

        let mut set = Vec::new();
        for (key, v) in [
            ("NATS_TOKEN", token),
            ("NATS_TOKEN_FILE", token_file),
            ("NATS_CREDS", creds),
            ("NATS_USER", user),
        ] {
            if v.is_some() {
                set.push(key);
            }
        }
        if set.len() > 1 {
            self.errors.push(ConfigError::ConflictingAuth { keys: set });
            return NatsAuth::None;
        }
        if password.is_some() && password_file.is_some() {
            self.errors.push(ConfigError::ConflictingAuth {
                keys: vec!["NATS_PASSWORD", "NATS_PASSWORD_FILE"],
            });
            return NatsAuth::None;
        }
        let password = password
            .map(|p| Secret::Inline(p.to_owned()))
            .or_else(|| password_file.map(|p| Secret::File(PathBuf::from(p))));
        if user.is_none() && password.is_some() {
            let key = if password_file.is_some() {
                "NATS_PASSWORD_FILE"
            } else {
                "NATS_PASSWORD"
            };
            self.errors.push(ConfigError::Incomplete {
                key,
                requires: "NATS_USER",
            });
            return NatsAuth::None;
        }
        if let Some(t) = token {
            NatsAuth::Token(Secret::Inline(t.to_owned()))
        } else if let Some(f) = token_file {
            NatsAuth::Token(Secret::File(PathBuf::from(f)))
        } else if let Some(c) = creds {
            NatsAuth::CredsFile(PathBuf::from(c))
        } else if let Some(u) = user {
            match password {
                Some(password) => NatsAuth::UserPassword {
                    user: u.to_owned(),
                    password,
                },
                None => {
                    self.errors.push(ConfigError::Incomplete {
                        key: "NATS_USER",
                        requires: "NATS_PASSWORD",
                    });
                    NatsAuth::None
                }
            }
        } else {
            NatsAuth::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::map;

    #[test]
    fn auth_variants() {
        let base = |extra: &[(&str, &str)]| {
            let mut m = map(&[("FARM_NAME", "f")]);
            m.extend(map(extra));
            Config::from_map(&m)
        };
        assert_eq!(
            base(&[("NATS_TOKEN", "s3cret")]).unwrap().nats.auth,
            NatsAuth::Token(Secret::Inline("s3cret".into()))
        );
        assert_eq!(
            base(&[("NATS_TOKEN_FILE", "/t")]).unwrap().nats.auth,
            NatsAuth::Token(Secret::File("/t".into()))
        );
        assert_eq!(
            base(&[("NATS_CREDS", "/c")]).unwrap().nats.auth,
            NatsAuth::CredsFile("/c".into())
        );
        assert_eq!(
            base(&[("NATS_USER", "u")]).unwrap_err().0,
            vec![ConfigError::Incomplete {
                key: "NATS_USER",
                requires: "NATS_PASSWORD"
            }]
        );
        assert_eq!(
            base(&[("NATS_PASSWORD", "p")]).unwrap_err().0,
            vec![ConfigError::Incomplete {
                key: "NATS_PASSWORD",
                requires: "NATS_USER"
            }]
        );
        assert!(!format!("{:?}", Secret::Inline("s3cret".into())).contains("s3cret"));
    }
}
