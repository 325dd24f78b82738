//! How many copies of each farm stream JetStream keeps
//! (`FARM_STREAM_REPLICAS`), checked against the NATS deployment the farm
//! is connected to.
//!
//! Unset, a new stream gets 1 replica on a single server and
//! `min(3, cluster size)` on a cluster; set, the value must fit the
//! deployment, or the stream is refused with [`ReplicasError`] naming the
//! value and the cluster size. An existing stream is never re-sized: with
//! the key unset its replica count is taken as it is, with the key set a
//! different count is a conflict ([`crate::topology::check_stream`]).
//!
//! The deployment is read from the server's INFO ([`ClusterShape::of`]):
//! `cluster` is the cluster's name (absent on a single server) and
//! `connect_urls` lists the client address of every server the cluster
//! advertises, this one included (absent with `no_advertise`, when the size
//! is unknown and only the server can refuse a count).
//!
//! ```
//! use farm_runtime::replicas::{ClusterShape, for_new_stream};
//! let cluster = ClusterShape { cluster: Some("c1".into()), servers: Some(3) };
//! assert_eq!(for_new_stream(None, &cluster).unwrap(), 3);
//! assert_eq!(for_new_stream(None, &ClusterShape::single()).unwrap(), 1);
//! assert!(for_new_stream(Some(5), &cluster).is_err());
//! ```

use std::collections::BTreeSet;

use async_nats::jetstream::ErrorCode;

/// Replicas of a new stream on a cluster when `FARM_STREAM_REPLICAS` is
/// unset: survives the loss of one server, the usual JetStream choice.
pub const CLUSTER_DEFAULT: usize = 3;

/// The NATS deployment as one connection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterShape {
    /// The cluster's name; `None` on a single server.
    pub cluster: Option<String>,
    /// Servers in the cluster (1 on a single server); `None` when the
    /// cluster does not advertise its servers.
    pub servers: Option<usize>,
}

impl ClusterShape {
    /// A single, non-clustered server.
    pub fn single() -> Self {
        Self {
            cluster: None,
            servers: Some(1),
        }
    }

    /// The shape announced in a server's INFO.
    pub fn of(info: &async_nats::ServerInfo) -> Self {
        match &info.cluster {
            None => Self::single(),
            Some(name) => {
                let urls: BTreeSet<&str> = info.connect_urls.iter().map(String::as_str).collect();
                Self {
                    cluster: Some(name.clone()),
                    servers: (!urls.is_empty()).then_some(urls.len()),
                }
            }
        }
    }
}

/// Why a stream cannot have the replicas asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicasError {
    /// More than one replica on a single server.
    #[error(
        "FARM_STREAM_REPLICAS={requested}, but NATS is a single server (no JetStream cluster), which keeps 1 copy of a stream; set FARM_STREAM_REPLICAS=1 or leave it unset"
    )]
    NotClustered {
        /// The value asked for.
        requested: usize,
    },
    /// More replicas than the cluster has servers.
    #[error(
        "FARM_STREAM_REPLICAS={requested}, but the NATS cluster {cluster} has {servers} server(s); set FARM_STREAM_REPLICAS to at most {servers} or leave it unset (min(3, cluster size))"
    )]
    TooMany {
        /// The value asked for.
        requested: usize,
        /// The cluster's name.
        cluster: String,
        /// Its servers.
        servers: usize,
    },
    /// The cluster refused to place the replicas (servers down, or fewer
    /// servers than it advertises).
    #[error(
        "the NATS cluster {cluster} cannot place {replicas} replica(s) of stream {stream} (FARM_STREAM_REPLICAS={}; {} server(s) advertised): {message}",
        .requested.map_or_else(|| "unset".to_owned(), |r| r.to_string()),
        .servers.map_or_else(|| "unknown".to_owned(), |s| s.to_string())
    )]
    Unplaceable {
        /// The stream.
        stream: String,
        /// The replicas tried.
        replicas: usize,
        /// `FARM_STREAM_REPLICAS`, if set.
        requested: Option<usize>,
        /// The cluster's name.
        cluster: String,
        /// Its advertised servers, if known.
        servers: Option<usize>,
        /// The server's error text.
        message: String,
    },
}

/// The replicas of a new stream: `requested` (`FARM_STREAM_REPLICAS`) checked
/// against `shape`, or the default for it when unset.
pub fn for_new_stream(
    requested: Option<usize>,
    shape: &ClusterShape,
) -> Result<usize, ReplicasError> {
    let Some(cluster) = &shape.cluster else {
        return match requested {
            None | Some(1) => Ok(1),
            Some(requested) => Err(ReplicasError::NotClustered { requested }),
        };
    };
    match (requested, shape.servers) {
        (None, Some(servers)) => Ok(CLUSTER_DEFAULT.min(servers)),
        (None, None) => Ok(CLUSTER_DEFAULT),
        (Some(requested), Some(servers)) if requested > servers => Err(ReplicasError::TooMany {
            requested,
            cluster: cluster.clone(),
            servers,
        }),
        (Some(requested), _) => Ok(requested),
    }
}

/// Translates the server's refusal to create `stream` with `replicas`
/// copies into a [`ReplicasError`]; `None` for errors of other causes.
pub fn refusal(
    code: ErrorCode,
    message: &str,
    stream: &str,
    replicas: usize,
    requested: Option<usize>,
    shape: &ClusterShape,
) -> Option<ReplicasError> {
    if code == ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED {
        return Some(ReplicasError::NotClustered {
            requested: replicas,
        });
    }
    if replicas > 1
        && (code == ErrorCode::INSUFFICIENT_RESOURCES || code == ErrorCode::CLUSTER_NO_PEERS)
    {
        return Some(ReplicasError::Unplaceable {
            stream: stream.to_owned(),
            replicas,
            requested,
            cluster: shape.cluster.clone().unwrap_or_else(|| "?".to_owned()),
            servers: shape.servers,
            message: message.to_owned(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(servers: Option<usize>) -> ClusterShape {
        ClusterShape {
            cluster: Some("c".into()),
            servers,
        }
    }

    #[test]
    fn unset_is_one_on_a_server_and_up_to_three_on_a_cluster() {
        assert_eq!(for_new_stream(None, &ClusterShape::single()), Ok(1));
        assert_eq!(for_new_stream(None, &cluster(Some(1))), Ok(1));
        assert_eq!(for_new_stream(None, &cluster(Some(2))), Ok(2));
        assert_eq!(for_new_stream(None, &cluster(Some(3))), Ok(3));
        assert_eq!(for_new_stream(None, &cluster(Some(5))), Ok(3));
        assert_eq!(for_new_stream(None, &cluster(None)), Ok(3));
    }

    #[test]
    fn a_set_value_must_fit() {
        assert_eq!(for_new_stream(Some(1), &ClusterShape::single()), Ok(1));
        assert_eq!(
            for_new_stream(Some(3), &ClusterShape::single()),
            Err(ReplicasError::NotClustered { requested: 3 })
        );
        assert_eq!(for_new_stream(Some(5), &cluster(Some(5))), Ok(5));
        assert_eq!(for_new_stream(Some(1), &cluster(Some(3))), Ok(1));
        assert_eq!(
            for_new_stream(Some(5), &cluster(Some(3))),
            Err(ReplicasError::TooMany {
                requested: 5,
                cluster: "c".into(),
                servers: 3
            })
        );
        // Unknown size: the server decides.
        assert_eq!(for_new_stream(Some(5), &cluster(None)), Ok(5));
    }

    #[test]
    fn errors_name_the_key_the_value_and_the_size() {
        let e = for_new_stream(Some(5), &cluster(Some(3))).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("FARM_STREAM_REPLICAS=5"), "{text}");
        assert!(text.contains("3 server"), "{text}");
    }

    #[test]
    fn server_refusals_are_mapped() {
        let single = ClusterShape::single();
        assert_eq!(
            refusal(
                ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED,
                "replicas > 1 not supported in non-clustered mode",
                "S",
                3,
                Some(3),
                &single,
            ),
            Some(ReplicasError::NotClustered { requested: 3 })
        );
        let e = refusal(
            ErrorCode::INSUFFICIENT_RESOURCES,
            "insufficient resources",
            "S",
            3,
            None,
            &cluster(Some(2)),
        );
        assert!(matches!(
            e,
            Some(ReplicasError::Unplaceable { replicas: 3, .. })
        ));
        assert_eq!(
            refusal(ErrorCode::STREAM_NAME_EXIST, "x", "S", 3, None, &single),
            None
        );
    }

    #[test]
    fn shape_from_info() {
        let mut info = async_nats::ServerInfo::default();
        assert_eq!(ClusterShape::of(&info), ClusterShape::single());
        info.cluster = Some("c".into());
        assert_eq!(ClusterShape::of(&info), cluster(None));
        info.connect_urls = vec![
            "127.0.0.1:1".into(),
            "127.0.0.1:2".into(),
            "127.0.0.1:1".into(),
        ];
        assert_eq!(ClusterShape::of(&info), cluster(Some(2)));
    }
}
