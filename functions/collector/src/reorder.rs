//! Putting results back in `seq` order when ordering is on.
//!
//! Workers finish tasks out of order. With ordering on, the collector holds a
//! result whose `seq` is ahead of the next expected one until the missing
//! ones arrive. The buffer is bounded, and a missing `seq` must not stall the
//! output forever (a task rejected by a full stream after its `seq` was
//! assigned, or a task that went to the dead-letter stream, never produces a
//! result), so the gap at the head is skipped when either
//!
//! - the buffer holds `capacity` results, or
//! - no result has been released for `gap_timeout` while results wait.
//!
//! A result whose `seq` is behind the head (its gap was skipped) is released
//! at once and counted as late. Time is passed in by the caller (a duration
//! since any fixed origin), so this type owns no clock.

use std::collections::BTreeMap;
use std::time::Duration;

/// The reorder buffer. `T` is whatever the caller must keep until the result
/// is output (the decoded result and its JetStream message, to ack later).
#[derive(Debug)]
pub struct Reorder<T> {
    next: u64,
    buf: BTreeMap<u64, Vec<T>>,
    held: usize,
    capacity: usize,
    gap_timeout: Duration,
    stalled_since: Option<Duration>,
    late: u64,
    skipped: u64,
}

impl<T> Reorder<T> {
    /// A buffer expecting `next` first, holding at most `capacity` results
    /// (at least 1).
    pub fn new(next: u64, capacity: usize, gap_timeout: Duration) -> Self {
        Self {
            next,
            buf: BTreeMap::new(),
            held: 0,
            capacity: capacity.max(1),
            gap_timeout,
            stalled_since: None,
            late: 0,
            skipped: 0,
        }
    }

    /// Takes a result; returns the results now releasable, in output order.
    pub fn push(&mut self, seq: u64, item: T, now: Duration) -> Vec<T> {
        if seq < self.next {
            self.late += 1;
            return vec![item];
        }
        self.buf.entry(seq).or_default().push(item);
        self.held += 1;
        let mut out = self.drain(now);
        while self.held >= self.capacity {
            self.skip_gap();
            out.extend(self.drain(now));
        }
        if self.held > 0 && self.stalled_since.is_none() {
            self.stalled_since = Some(now);
        }
        out
    }

    /// Releases what the gap timeout allows at time `now`.
    pub fn poll(&mut self, now: Duration) -> Vec<T> {
        match self.stalled_since {
            Some(since) if now.saturating_sub(since) >= self.gap_timeout && self.held > 0 => {
                self.skip_gap();
                let out = self.drain(now);
                if self.held > 0 {
                    self.stalled_since = Some(now);
                }
                out
            }
            _ => Vec::new(),
        }
    }

    /// Moves the head past the gap to the smallest buffered `seq`.
    fn skip_gap(&mut self) {
        if let Some((&first, _)) = self.buf.first_key_value()
            && first > self.next
        {
            self.skipped += first - self.next;
            self.next = first;
        }
    }

    fn drain(&mut self, now: Duration) -> Vec<T> {
        let mut out = Vec::new();
        while let Some(items) = self.buf.remove(&self.next) {
            self.held -= items.len();
            out.extend(items);
            self.next += 1;
        }
        if !out.is_empty() {
            // Progress: whatever still waits starts a fresh gap timeout.
            self.stalled_since = (self.held > 0).then_some(now);
        }
        out
    }

    /// The next `seq` the output expects.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Results waiting in the buffer.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Results released behind the head (after their gap was skipped).
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Sequence numbers skipped without a result.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Duration = Duration::ZERO;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn releases_in_seq_order() {
        let mut r = Reorder::new(1, 10, ms(100));
        assert!(r.push(3, "c", T0).is_empty());
        assert!(r.push(2, "b", T0).is_empty());
        assert_eq!(r.push(1, "a", T0), vec!["a", "b", "c"]);
        assert_eq!(r.next_seq(), 4);
        assert_eq!(r.held(), 0);
        assert_eq!(r.push(4, "d", T0), vec!["d"]);
    }

    #[test]
    fn skips_a_gap_after_timeout() {
        let mut r = Reorder::new(1, 10, ms(100));
        assert!(r.push(2, "b", ms(0)).is_empty());
        assert!(r.poll(ms(50)).is_empty());
        assert_eq!(r.poll(ms(100)), vec!["b"]);
        assert_eq!(r.skipped(), 1);
        // The missing one shows up late: released at once, counted.
        assert_eq!(r.push(1, "a", ms(120)), vec!["a"]);
        assert_eq!(r.late(), 1);
    }

    #[test]
    fn skips_a_gap_when_full() {
        let mut r = Reorder::new(1, 3, ms(1000));
        assert!(r.push(2, 2, T0).is_empty());
        assert!(r.push(3, 3, T0).is_empty());
        assert_eq!(r.push(5, 5, T0), vec![2, 3]);
        assert_eq!(r.held(), 1);
        assert_eq!(r.next_seq(), 4);
        assert_eq!(r.skipped(), 1);
    }

    #[test]
    fn progress_restarts_the_gap_timer() {
        let mut r = Reorder::new(1, 10, ms(100));
        assert!(r.push(3, "c", ms(0)).is_empty());
        assert_eq!(r.push(1, "a", ms(90)), vec!["a"]);
        // Gap at 2 has only waited 10 ms since the last progress.
        assert!(r.poll(ms(100)).is_empty());
        assert_eq!(r.poll(ms(190)), vec!["c"]);
    }

    #[test]
    fn equal_seqs_are_all_released() {
        let mut r = Reorder::new(1, 10, ms(100));
        assert!(r.push(2, "x", T0).is_empty());
        assert!(r.push(2, "y", T0).is_empty());
        assert_eq!(r.push(1, "a", T0), vec!["a", "x", "y"]);
    }
}
