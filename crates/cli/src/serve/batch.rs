//! A `StepBatch` cut into chunks that the batch threads take in turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use farm_proto::batch::{self, PackedBuilder};
use farm_proto::control::{StepBatchRequest, StepReply};
use tonic::Status;

use super::slot::{Slot, lock};

/// Environments per unit of work of a `StepBatch`.
pub(super) const BATCH_CHUNK: usize = 32;

/// The results of one chunk of a `StepBatch`, in the form the request asked.
pub(super) enum Chunk {
    Replies(Vec<StepReply>),
    Packed(PackedBuilder),
}

/// A `StepBatch` shared by the threads stepping it.
pub(super) struct BatchWork {
    pub(super) req: Arc<StepBatchRequest>,
    /// The slot of each step, in request order.
    pub(super) slots: Vec<Arc<Mutex<Slot>>>,
    /// The next chunk to take.
    pub(super) next: AtomicUsize,
    /// Observation length of every environment of a packed batch.
    pub(super) obs_dim: usize,
}

impl BatchWork {
    /// Step chunks until none is left; each with its index.
    pub(super) fn run(&self) -> Result<Vec<(usize, Chunk)>, Status> {
        let steps = batch::steps(&self.req).map_err(|e| Status::internal(e.to_string()))?;
        let auto_reset = self.req.auto_reset;
        let mut out = Vec::new();
        loop {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            let first = index.saturating_mul(BATCH_CHUNK);
            if first >= steps.len() {
                return Ok(out);
            }
            let last = (first + BATCH_CHUNK).min(steps.len());
            let pairs = self.slots[first..last].iter().zip(&steps[first..last]);
            let chunk = if self.req.packed {
                let mut packed =
                    PackedBuilder::new(last - first, self.obs_dim, self.req.packed_info);
                for (slot, (env_id, action)) in pairs {
                    lock(slot)?.step_packed(env_id, *action, auto_reset, &mut packed)?;
                }
                Chunk::Packed(packed)
            } else {
                Chunk::Replies(
                    pairs
                        .map(|(slot, (env_id, action))| {
                            lock(slot)?.step(env_id, *action, auto_reset)
                        })
                        .collect::<Result<Vec<_>, Status>>()?,
                )
            };
            out.push((index, chunk));
        }
    }
}

/// Threads stepping `StepBatch` work at once: the cores of the machine this
/// targets (two).
pub(super) const BATCH_THREADS: usize = 2;
