//! The bounded set of task ids already written to the output.
//!
//! JetStream delivers results at least once (a worker that dies after
//! publishing its result but before acking the task makes the task run
//! again), so the collector must recognise a second result for a task it has
//! already output. Memory is bounded: the set remembers the most recent
//! `capacity` ids and forgets the oldest first. A duplicate older than that is
//! still caught by the OUTPUT stream's own de-duplication (the collector
//! publishes each output with `Nats-Msg-Id` = task id) as long as it arrives
//! within the stream's duplicate window; the set exists so that duplicates
//! arriving later than the window, or after a collector restart (it is
//! rebuilt from the tail of OUTPUT), are caught too.

use std::collections::{HashSet, VecDeque};

/// Remembers the last `capacity` distinct ids, oldest forgotten first.
#[derive(Debug, Clone)]
pub struct IdSet {
    capacity: usize,
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl IdSet {
    /// An empty set holding at most `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    /// Remembers `id`; returns false if it was already there. Forgets the
    /// oldest id when full.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(id.to_string());
        self.order.push_back(id.to_string());
        true
    }

    /// Number of remembered ids.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The configured bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_rejects_repeats() {
        let mut s = IdSet::new(3);
        assert!(s.insert("a"));
        assert!(!s.insert("a"));
        assert!(s.contains("a"));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn forgets_oldest_when_full() {
        let mut s = IdSet::new(2);
        assert!(s.insert("a"));
        assert!(s.insert("b"));
        assert!(s.insert("c"));
        assert!(!s.contains("a"));
        assert!(s.contains("b") && s.contains("c"));
        assert_eq!(s.len(), 2);
        // A forgotten id is accepted again: the OUTPUT stream's duplicate
        // window is what catches it then.
        assert!(s.insert("a"));
        assert!(!s.contains("b"));
    }
}
