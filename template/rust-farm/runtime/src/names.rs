//! Names of the JetStream streams, subjects and consumers of one farm.
//!
//! Every process of a farm (emitter, workers, collector, autoscaler) derives
//! its names from the farm name through [`FarmNames`], so they cannot drift.

use std::fmt;

/// Longest accepted farm name: stream names must stay short (they become
/// directory names in the JetStream store).
pub const MAX_FARM_NAME_LEN: usize = 32;

/// Name of the durable pull consumer shared by all worker replicas.
pub const WORKERS_CONSUMER: &str = "workers";

/// Name of the durable consumer the collector reads results with.
pub const COLLECTOR_CONSUMER: &str = "collector";

/// Why a farm name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FarmNameError {
    /// The name is empty.
    #[error("farm name is empty; expected 1-{MAX_FARM_NAME_LEN} characters [a-z0-9-]")]
    Empty,
    /// The name is longer than [`MAX_FARM_NAME_LEN`].
    #[error("farm name {name:?} is {len} characters long; at most {MAX_FARM_NAME_LEN} are allowed")]
    TooLong {
        /// The rejected name.
        name: String,
        /// Its length in characters.
        len: usize,
    },
    /// The name holds a character outside `[a-z0-9-]`.
    #[error(
        "farm name {name:?} contains {ch:?}; only lower-case ASCII letters, digits and '-' are allowed"
    )]
    InvalidChar {
        /// The rejected name.
        name: String,
        /// The first offending character.
        ch: char,
    },
    /// The name does not start with a letter or ends with '-'.
    #[error("farm name {name:?} must start with a letter and must not end with '-'")]
    BadEdge {
        /// The rejected name.
        name: String,
    },
}

/// Validated farm name and every JetStream name derived from it.
///
/// The farm name follows OpenFaaS function names (DNS-1123 labels): lower-case
/// letters, digits and `-`. Stream names upper-case it and map `-` to `_`
/// (stream names may not contain `.`), which is collision-free because `_` is
/// not allowed in a farm name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FarmNames {
    farm: String,
    upper: String,
}

impl FarmNames {
    /// Validates `farm` and derives the names.
    ///
    /// ```
    /// let n = farm_runtime::names::FarmNames::new("thumbs-v2").unwrap();
    /// assert_eq!(n.tasks_stream(), "FARM_THUMBS_V2_TASKS");
    /// assert_eq!(n.tasks_subject(), "farm.thumbs-v2.tasks");
    /// ```
    pub fn new(farm: &str) -> Result<Self, FarmNameError> {
        validate_farm_name(farm)?;
        Ok(Self {
            farm: farm.to_owned(),
            upper: farm.to_ascii_uppercase().replace('-', "_"),
        })
    }

    /// The farm name as given.
    pub fn farm(&self) -> &str {
        &self.farm
    }

    /// `FARM_<F>_TASKS`: the work-queue stream of tasks.
    pub fn tasks_stream(&self) -> String {
        format!("FARM_{}_TASKS", self.upper)
    }

    /// `FARM_<F>_RESULTS`: the stream of task results.
    pub fn results_stream(&self) -> String {
        format!("FARM_{}_RESULTS", self.upper)
    }

    /// `FARM_<F>_DLQ`: the dead-letter stream.
    pub fn dlq_stream(&self) -> String {
        format!("FARM_{}_DLQ", self.upper)
    }

    /// `FARM_<F>_OUTPUT`: the collector's output stream.
    pub fn output_stream(&self) -> String {
        format!("FARM_{}_OUTPUT", self.upper)
    }

    /// `farm.<f>.tasks`: subject the emitter publishes tasks on.
    pub fn tasks_subject(&self) -> String {
        format!("farm.{}.tasks", self.farm)
    }

    /// `farm.<f>.results`: subject workers publish results on.
    pub fn results_subject(&self) -> String {
        format!("farm.{}.results", self.farm)
    }

    /// `farm.<f>.dlq`: subject of dead letters.
    pub fn dlq_subject(&self) -> String {
        format!("farm.{}.dlq", self.farm)
    }

    /// `farm.<f>.output.>`: the subjects of the collector's output stream,
    /// one per task ([`FarmNames::output_task_subject`]). Readers of the
    /// whole output subscribe to or filter on this.
    pub fn output_filter(&self) -> String {
        format!("farm.{}.output.>", self.farm)
    }

    /// `farm.<f>.output.<token>`: the subject of task `task_id`'s one output
    /// entry, with the token of [`output_token`]. A subject per task lets the
    /// OUTPUT stream hold at most one message per subject, so the server
    /// itself refuses a second output of the same task.
    ///
    /// ```
    /// let n = farm_runtime::names::FarmNames::new("demo").unwrap();
    /// assert_eq!(n.output_task_subject("t-1"), "farm.demo.output.t-1");
    /// assert_eq!(n.output_task_subject("a.b"), "farm.demo.output.=YS5i");
    /// ```
    pub fn output_task_subject(&self, task_id: &str) -> String {
        format!("farm.{}.output.{}", self.farm, output_token(task_id))
    }

    /// `farm.<f>.metrics`: core-NATS subject of `MetricsSnapshot`s.
    pub fn metrics_subject(&self) -> String {
        format!("farm.{}.metrics", self.farm)
    }

    /// `workers`: the durable pull consumer of the tasks stream.
    pub fn workers_consumer(&self) -> &'static str {
        WORKERS_CONSUMER
    }

    /// `collector`: the durable consumer of the results stream.
    pub fn collector_consumer(&self) -> &'static str {
        COLLECTOR_CONSUMER
    }
}

impl fmt::Display for FarmNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.farm)
    }
}

/// The subject token naming task `task_id` in the output subjects: the id
/// itself when it is non-empty and only `[A-Za-z0-9_-]`, otherwise `=`
/// followed by the unpadded base64url of its UTF-8 bytes. The raw form never
/// holds `=`, the encoded one always starts with it, so two ids never share a
/// token; and neither form holds `.`, `*`, `>` or whitespace, so the token is
/// one literal subject token whatever the id contains.
///
/// ```
/// use farm_runtime::names::output_token;
/// assert_eq!(output_token("r1f-42_x"), "r1f-42_x");
/// assert_eq!(output_token("a b"), "=YSBi");
/// assert_eq!(output_token(""), "=");
/// ```
pub fn output_token(task_id: &str) -> String {
    let plain = !task_id.is_empty()
        && task_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        task_id.to_owned()
    } else {
        let mut token = String::with_capacity(1 + task_id.len().div_ceil(3) * 4);
        token.push('=');
        push_base64url(&mut token, task_id.as_bytes());
        token
    }
}

/// The base64url alphabet (RFC 4648, section 5).
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Appends the unpadded base64url encoding of `bytes` to `out`. Written out
/// here rather than taken from a crate: this crate is copied into every
/// function's build context and keeps its dependencies few.
fn push_base64url(out: &mut String, bytes: &[u8]) {
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        // 1, 2 or 3 bytes give 2, 3 or 4 characters of 6 bits each.
        for i in 0..=chunk.len() {
            let sextet = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(BASE64URL[sextet as usize]));
        }
    }
}

fn validate_farm_name(name: &str) -> Result<(), FarmNameError> {
    if name.is_empty() {
        return Err(FarmNameError::Empty);
    }
    let len = name.chars().count();
    if len > MAX_FARM_NAME_LEN {
        return Err(FarmNameError::TooLong {
            name: name.to_owned(),
            len,
        });
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(FarmNameError::InvalidChar {
            name: name.to_owned(),
            ch,
        });
    }
    let starts_with_letter = name.starts_with(|c: char| c.is_ascii_lowercase());
    if !starts_with_letter || name.ends_with('-') {
        return Err(FarmNameError::BadEdge {
            name: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_all_names() {
        let n = FarmNames::new("demo").unwrap();
        assert_eq!(n.tasks_stream(), "FARM_DEMO_TASKS");
        assert_eq!(n.results_stream(), "FARM_DEMO_RESULTS");
        assert_eq!(n.dlq_stream(), "FARM_DEMO_DLQ");
        assert_eq!(n.output_stream(), "FARM_DEMO_OUTPUT");
        assert_eq!(n.tasks_subject(), "farm.demo.tasks");
        assert_eq!(n.results_subject(), "farm.demo.results");
        assert_eq!(n.dlq_subject(), "farm.demo.dlq");
        assert_eq!(n.metrics_subject(), "farm.demo.metrics");
        assert_eq!(n.output_filter(), "farm.demo.output.>");
        assert_eq!(n.output_task_subject("t-7"), "farm.demo.output.t-7");
        assert_eq!(n.workers_consumer(), "workers");
        assert_eq!(n.farm(), "demo");
    }

    fn base64url(bytes: &[u8]) -> String {
        let mut s = String::new();
        push_base64url(&mut s, bytes);
        s
    }

    #[test]
    fn base64url_matches_rfc_4648() {
        // RFC 4648 section 10, padding removed.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url(plain.as_bytes()), encoded, "{plain:?}");
        }
        // The two characters where base64url differs from base64 (+ and /).
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url(&[0xff, 0xff, 0xff]), "____");
    }

    #[test]
    fn plain_ids_are_their_own_token() {
        for id in ["t", "t-1", "r18f3a-000042", "A_b-9", "-", "_"] {
            assert_eq!(output_token(id), id);
        }
    }

    #[test]
    fn other_ids_are_encoded_into_one_literal_token() {
        for (id, token) in [
            ("", "="),
            ("a.b", "=YS5i"),
            ("a b", "=YSBi"),
            ("*", "=Kg"),
            (">", "=Pg"),
            ("farm.demo.output.>", "=ZmFybS5kZW1vLm91dHB1dC4-"),
            ("é", "=w6k"),
            ("任务", "=5Lu75Yqh"),
            ("=", "=PQ"),
            ("a\tb", "=YQli"),
        ] {
            assert_eq!(output_token(id), token, "{id:?}");
        }
        for id in ["", "a.b", "a b", "x*", "y>", "é", "a=b", "t\n", "a/b"] {
            let token = output_token(id);
            assert!(token.starts_with('='), "{id:?} -> {token:?}");
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)),
                "{id:?} -> {token:?} is not one literal subject token"
            );
        }
    }

    #[test]
    fn tokens_never_collide() {
        // A plain id that looks like an encoding, and the id it would encode.
        assert_ne!(output_token("YS5i"), output_token("a.b"));
        let ids = [
            "", "=", "==", "a", "a.b", "a_b", "a-b", "YS5i", "=YS5i", "a b", "é", "e", "*", ">",
        ];
        let tokens: std::collections::HashSet<String> =
            ids.iter().map(|id| output_token(id)).collect();
        assert_eq!(tokens.len(), ids.len());
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(FarmNames::new(""), Err(FarmNameError::Empty));
        assert!(matches!(
            FarmNames::new("a.b"),
            Err(FarmNameError::InvalidChar { ch: '.', .. })
        ));
        assert!(matches!(
            FarmNames::new("Demo"),
            Err(FarmNameError::InvalidChar { ch: 'D', .. })
        ));
        assert!(matches!(
            FarmNames::new("a b"),
            Err(FarmNameError::InvalidChar { ch: ' ', .. })
        ));
        assert!(matches!(
            FarmNames::new("a_b"),
            Err(FarmNameError::InvalidChar { ch: '_', .. })
        ));
        assert!(matches!(
            FarmNames::new("a*"),
            Err(FarmNameError::InvalidChar { ch: '*', .. })
        ));
        assert!(matches!(
            FarmNames::new("1abc"),
            Err(FarmNameError::BadEdge { .. })
        ));
        assert!(matches!(
            FarmNames::new("abc-"),
            Err(FarmNameError::BadEdge { .. })
        ));
        let long = "a".repeat(MAX_FARM_NAME_LEN + 1);
        assert!(matches!(
            FarmNames::new(&long),
            Err(FarmNameError::TooLong { len: 33, .. })
        ));
        assert!(FarmNames::new(&"a".repeat(MAX_FARM_NAME_LEN)).is_ok());
    }
}
