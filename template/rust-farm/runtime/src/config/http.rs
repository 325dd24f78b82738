//! The HTTP server keys of a worker replica (`FARM_HTTP_ADDR`,
//! `FARM_HTTP_PORT`): the upstream of-watchdog forwards to.

use std::net::IpAddr;

use super::{ConfigError, Parser};

/// HTTP server settings (the of-watchdog upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// Bind address.
    pub addr: IpAddr,
    /// Port, 0 for any free port.
    pub port: u16,
}

impl Parser<'_> {
    pub(super) fn http(&mut self) -> HttpConfig {
        let addr = match self.get("FARM_HTTP_ADDR") {
            None => IpAddr::from([127, 0, 0, 1]),
            Some(raw) => match raw.parse::<IpAddr>() {
                Ok(a) => a,
                Err(_) => {
                    self.errors.push(ConfigError::InvalidAddr {
                        key: "FARM_HTTP_ADDR",
                        value: raw.to_owned(),
                    });
                    IpAddr::from([127, 0, 0, 1])
                }
            },
        };
        let port = self.int("FARM_HTTP_PORT", 3000, 0, 65535) as u16;
        HttpConfig { addr, port }
    }
}
