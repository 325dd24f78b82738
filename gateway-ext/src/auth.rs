//! Basic auth on `/system/*`, as the OpenFaaS gateway does it: credentials
//! from the secret files `basic-auth-user` and `basic-auth-password` under
//! the secret mount path, a constant-time comparison, and on failure 401
//! with `WWW-Authenticate: Basic realm="Restricted"`.

use std::path::Path;

use crate::manager::StartError;

/// Name of the user secret file.
pub const USER_FILE: &str = "basic-auth-user";
/// Name of the password secret file.
pub const PASSWORD_FILE: &str = "basic-auth-password";
/// The challenge header value of a 401.
pub const CHALLENGE: &str = "Basic realm=\"Restricted\"";

/// The expected credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads both files under `dir` (trailing whitespace trimmed, as the gateway does).
    // StartError is large but only ever built once, at startup.
    #[allow(clippy::result_large_err)]
    pub fn load(dir: &Path) -> Result<Credentials, StartError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .map(|s| s.trim().to_owned())
                .map_err(|e| StartError::AuthSecret {
                    path,
                    message: e.to_string(),
                })
        };
        Ok(Credentials {
            user: read(USER_FILE)?,
            password: read(PASSWORD_FILE)?,
        })
    }

    /// The `Authorization` header value for these credentials.
    pub fn header_value(&self) -> String {
        format!(
            "Basic {}",
            base64_encode(format!("{}:{}", self.user, self.password).as_bytes())
        )
    }

    /// Whether an `Authorization` header value carries these credentials.
    pub fn accepts(&self, header: Option<&str>) -> bool {
        let Some(h) = header else { return false };
        let Some(b64) = h
            .strip_prefix("Basic ")
            .or_else(|| h.strip_prefix("basic "))
        else {
            return false;
        };
        let Some(raw) = base64_decode(b64.trim()) else {
            return false;
        };
        let Some(colon) = raw.iter().position(|b| *b == b':') else {
            return false;
        };
        let (user, pass) = (&raw[..colon], &raw[colon + 1..]);
        // Both compared in full, so timing does not reveal which one differed.
        let u = ct_eq(user, self.user.as_bytes());
        let p = ct_eq(pass, self.password.as_bytes());
        u & p
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(input: &[u8]) -> String {
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
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 (padding optional); `None` on any invalid character.
pub fn base64_decode(input: &str) -> Option<Vec<u8>> {
    let s = input.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "admin:secret", "user:p@ss:w0rd"] {
            assert_eq!(
                base64_decode(&base64_encode(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
        assert_eq!(base64_encode(b"admin:admin"), "YWRtaW46YWRtaW4=");
        assert!(base64_decode("!!").is_none());
    }

    #[test]
    fn accepts_only_the_right_credentials() {
        let c = Credentials {
            user: "admin".into(),
            password: "p:w".into(),
        };
        assert!(c.accepts(Some(&c.header_value())));
        assert!(!c.accepts(None));
        assert!(!c.accepts(Some("Bearer x")));
        assert!(!c.accepts(Some(&format!("Basic {}", base64_encode(b"admin:pw")))));
        assert!(!c.accepts(Some(&format!("Basic {}", base64_encode(b"root:p:w")))));
        assert!(!c.accepts(Some("Basic %%%")));
    }

    #[test]
    fn loads_secret_files() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            Credentials::load(d.path()),
            Err(StartError::AuthSecret { .. })
        ));
        std::fs::write(d.path().join(USER_FILE), "admin\n").unwrap();
        std::fs::write(d.path().join(PASSWORD_FILE), "pw\n").unwrap();
        let c = Credentials::load(d.path()).unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("admin", "pw"));
    }
}
