//! Optional HTTP basic auth on `/system/*`, as the OpenFaaS gateway and
//! providers do: the credentials are the files `basic-auth-user` and
//! `basic-auth-password` under the secret mount path (trailing whitespace
//! trimmed); a request without them gets 401 and a `WWW-Authenticate`
//! challenge.

use std::path::Path;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ProviderError;

/// File name of the user under the secret mount path.
pub const USER_FILE: &str = "basic-auth-user";
/// File name of the password under the secret mount path.
pub const PASSWORD_FILE: &str = "basic-auth-password";

/// Expected credentials, kept as the `Authorization` value they produce.
#[derive(Clone)]
pub struct Credentials {
    expected: String,
}

impl std::fmt::Debug for Credentials {
    // Never print credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

impl Credentials {
    /// Credentials from a user and a password.
    pub fn new(user: &str, password: &str) -> Self {
        Credentials {
            expected: base64(format!("{user}:{password}").as_bytes()),
        }
    }

    /// Reads the credential files under `secret_mount_path`.
    pub fn read(secret_mount_path: &Path) -> Result<Self, ProviderError> {
        let read = |name: &str| {
            let path = secret_mount_path.join(name);
            std::fs::read_to_string(&path)
                .map(|s| s.trim_end().to_string())
                .map_err(|source| ProviderError::Credentials { path, source })
        };
        Ok(Credentials::new(&read(USER_FILE)?, &read(PASSWORD_FILE)?))
    }

    /// Whether the request headers carry these credentials.
    pub fn check(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some((scheme, token)) = value.trim().split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("basic")
            && constant_time_eq(token.trim().as_bytes(), self.expected.as_bytes())
    }
}

/// The 401 answer with its challenge.
pub fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"Restricted\"")],
        "invalid credentials\n",
    )
        .into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Length is not secret (the encoding length follows the credentials'),
    // the content is: compare every byte regardless of where they differ.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn base64_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }

    #[test]
    fn checks_header() {
        let c = Credentials::new("admin", "s3cret");
        let mut h = HeaderMap::new();
        assert!(!c.check(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YWRtaW46czNjcmV0"),
        );
        assert!(c.check(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("basic YWRtaW46czNjcmV0"),
        );
        assert!(c.check(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YWRtaW46d3Jvbmc="),
        );
        assert!(!c.check(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer YWRtaW46czNjcmV0"),
        );
        assert!(!c.check(&h));
        assert!(!format!("{c:?}").contains("YWRt"));
    }

    #[test]
    fn reads_files_and_reports_missing_ones() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            Credentials::read(tmp.path()),
            Err(ProviderError::Credentials { .. })
        ));
        std::fs::write(tmp.path().join(USER_FILE), "admin\n").unwrap();
        std::fs::write(tmp.path().join(PASSWORD_FILE), "s3cret\n").unwrap();
        let c = Credentials::read(tmp.path()).unwrap();
        assert_eq!(c.expected, "YWRtaW46czNjcmV0");
    }
}
