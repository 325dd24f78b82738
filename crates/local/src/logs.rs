//! Replica output for `GET /system/logs`: every line a replica writes on
//! stdout or stderr, kept in a bounded buffer per function and broadcast to
//! followers.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use tokio::sync::broadcast;

use crate::clock::format_rfc3339;
use crate::types::LogMessage;

/// Lines kept per function; older lines are dropped first.
pub const LINES_PER_FUNCTION: usize = 10_000;

/// One captured line.
#[derive(Debug, Clone)]
pub struct LogRecord {
    /// When the provider read it.
    pub at: SystemTime,
    /// The line as served.
    pub message: LogMessage,
}

/// Per-function line buffers plus a broadcast of new lines.
#[derive(Debug)]
pub struct LogStore {
    buffers: Mutex<HashMap<String, VecDeque<LogRecord>>>,
    tx: broadcast::Sender<LogRecord>,
    namespace: String,
}

impl LogStore {
    /// An empty store whose lines carry `namespace`.
    pub fn new(namespace: &str) -> Self {
        let (tx, _) = broadcast::channel(4096);
        LogStore {
            buffers: Mutex::new(HashMap::new()),
            tx,
            namespace: namespace.to_string(),
        }
    }

    /// Records one line of `instance` of function `name`.
    pub fn push(&self, name: &str, instance: &str, text: String) {
        let at = SystemTime::now();
        let rec = LogRecord {
            at,
            message: LogMessage {
                name: name.to_string(),
                namespace: self.namespace.clone(),
                instance: instance.to_string(),
                timestamp: format_rfc3339(at),
                text,
            },
        };
        let mut buffers = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        let buf = buffers.entry(name.to_string()).or_default();
        if buf.len() == LINES_PER_FUNCTION {
            buf.pop_front();
        }
        buf.push_back(rec.clone());
        // Sent under the lock so a follower that snapshotted under the same
        // lock sees every line exactly once. No receiver is not an error.
        let _ = self.tx.send(rec);
    }

    /// Whether any line of `name` was ever recorded (and not dropped).
    pub fn has(&self, name: &str) -> bool {
        self.buffers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(name)
    }

    /// The stored lines of `name` newer than `since`, the last `tail` of them
    /// (`None` = all), plus a receiver of lines recorded afterwards.
    pub fn query(
        &self,
        name: &str,
        since: Option<SystemTime>,
        tail: Option<usize>,
    ) -> (Vec<LogMessage>, broadcast::Receiver<LogRecord>) {
        let buffers = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.tx.subscribe();
        let lines: Vec<LogMessage> = buffers
            .get(name)
            .map(|b| {
                b.iter()
                    .filter(|r| since.is_none_or(|s| r.at >= s))
                    .map(|r| r.message.clone())
                    .collect()
            })
            .unwrap_or_default();
        let skip = tail.map_or(0, |t| lines.len().saturating_sub(t));
        (lines.into_iter().skip(skip).collect(), rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_since_and_follow() {
        let s = LogStore::new("ns");
        for i in 0..5 {
            s.push("f", "f-1", format!("line {i}"));
        }
        s.push("g", "g-1", "other".into());
        let (all, _) = s.query("f", None, None);
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].namespace, "ns");
        let (last2, mut rx) = s.query("f", None, Some(2));
        assert_eq!(
            last2.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
            ["line 3", "line 4"]
        );
        s.push("f", "f-2", "new".into());
        assert_eq!(rx.try_recv().unwrap().message.text, "new");
        let (none, _) = s.query(
            "f",
            Some(SystemTime::now() + std::time::Duration::from_secs(5)),
            None,
        );
        assert!(none.is_empty());
        assert!(s.has("g") && !s.has("h"));
    }

    #[test]
    fn buffer_is_bounded() {
        let s = LogStore::new("ns");
        for i in 0..LINES_PER_FUNCTION + 3 {
            s.push("f", "f-1", i.to_string());
        }
        let (all, _) = s.query("f", None, None);
        assert_eq!(all.len(), LINES_PER_FUNCTION);
        assert_eq!(all[0].text, "3");
    }
}
