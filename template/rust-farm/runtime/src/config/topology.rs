//! The JetStream topology keys (`FARM_TASKS_*`, `FARM_DUPLICATE_WINDOW`,
//! `FARM_RESULTS_MAX_AGE`, `FARM_DLQ_MAX_AGE`, `FARM_STREAM_REPLICAS`,
//! `FARM_ACK_WAIT`, `FARM_MAX_DELIVER`, `FARM_MAX_ACK_PENDING`), which every
//! process of one farm shares.

use std::collections::HashMap;
use std::time::Duration;

use super::{ConfigErrors, Parser};

/// JetStream topology settings (see [`crate::topology::ensure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyConfig {
    /// Task stream message limit, -1 for none.
    pub tasks_max_msgs: i64,
    /// Task stream byte limit, -1 for none.
    pub tasks_max_bytes: i64,
    /// De-duplication window of the task and result streams.
    pub duplicate_window: Duration,
    /// Maximum age of results.
    pub results_max_age: Duration,
    /// Maximum age of dead letters.
    pub dlq_max_age: Duration,
    /// Stream replicas asked for (`FARM_STREAM_REPLICAS`); `None` lets
    /// [`crate::replicas::for_new_stream`] choose from the cluster.
    pub replicas: Option<usize>,
    /// Consumer ack wait.
    pub ack_wait: Duration,
    /// Consumer max deliveries; the worker dead-letters a task at this count.
    pub max_deliver: u32,
    /// Consumer max ack pending over all replicas.
    pub max_ack_pending: i64,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        Self {
            tasks_max_msgs: -1,
            tasks_max_bytes: -1,
            duplicate_window: Duration::from_secs(120),
            results_max_age: Duration::from_secs(24 * 3600),
            dlq_max_age: Duration::from_secs(7 * 24 * 3600),
            replicas: None,
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_ack_pending: 10_000,
        }
    }
}

impl TopologyConfig {
    /// Parses only the topology keys (for the emitter, collector and tools).
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, ConfigErrors> {
        let mut p = Parser::new(map);
        let t = p.topology();
        p.finish(t)
    }
}

impl Parser<'_> {
    pub(super) fn topology(&mut self) -> TopologyConfig {
        let d = TopologyConfig::default();
        let ms = Duration::from_millis;
        let h = |n: u64| Duration::from_secs(n * 3600);
        TopologyConfig {
            tasks_max_msgs: self.int("FARM_TASKS_MAX_MSGS", d.tasks_max_msgs, -1, i64::MAX),
            tasks_max_bytes: self.int("FARM_TASKS_MAX_BYTES", d.tasks_max_bytes, -1, i64::MAX),
            duplicate_window: self.duration(
                "FARM_DUPLICATE_WINDOW",
                d.duplicate_window,
                ms(100),
                h(24 * 7),
            ),
            results_max_age: self.duration(
                "FARM_RESULTS_MAX_AGE",
                d.results_max_age,
                Duration::from_secs(1),
                h(24 * 365),
            ),
            dlq_max_age: self.duration(
                "FARM_DLQ_MAX_AGE",
                d.dlq_max_age,
                Duration::from_secs(1),
                h(24 * 365),
            ),
            replicas: self
                .get("FARM_STREAM_REPLICAS")
                .is_some()
                .then(|| self.int("FARM_STREAM_REPLICAS", 1, 1, 5) as usize),
            ack_wait: self.duration("FARM_ACK_WAIT", d.ack_wait, ms(100), h(12)),
            max_deliver: self.int("FARM_MAX_DELIVER", i64::from(d.max_deliver), 1, 1000) as u32,
            max_ack_pending: self.int("FARM_MAX_ACK_PENDING", d.max_ack_pending, 1, 1_000_000),
        }
    }
}
