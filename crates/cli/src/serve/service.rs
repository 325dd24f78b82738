//! [`SimControl`]: the `FarmControl` and `FarmControlStream` services over
//! the server's table of environments.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use farm_model::observation::{self, OBS_DIM, OBS_VERSION, Observer};
use farm_model::scenario::Scenario;
use farm_proto::batch::{self, PackedBuilder};
use farm_proto::control::farm_control_server::FarmControl;
use farm_proto::control::farm_control_stream_server::FarmControlStream;
use farm_proto::control::{
    Decision, EnvSpec, ResetRequest, SpecRequest, StepBatchReply, StepBatchRequest, StepReply,
    StepRequest, WatchRequest,
};
use farm_sim::Env;
use tonic::{Request, Response, Status};
use tracing::debug;

use super::batch::{BATCH_CHUNK, BATCH_THREADS, BatchWork, Chunk};
use super::options::{EpisodeConfig, parse_action_space};
use super::slot::{Slot, lock};

/// The environments of a server, by id.
type EnvTable = Mutex<HashMap<String, Arc<Mutex<Slot>>>>;

/// The simulator-backed `FarmControl` service (and `FarmControlStream`,
/// which shares its environments).
#[derive(Debug, Clone)]
pub struct SimControl {
    envs: Arc<EnvTable>,
    /// Permits to step batch work, one per thread, granted first come first
    /// served (tokio's semaphore is fair): of two batches in flight (a client
    /// that splits its environments to decode one reply while the server
    /// steps the next), the first gets every core and is answered first,
    /// instead of both sharing the cores and finishing together.
    batch_permits: Arc<tokio::sync::Semaphore>,
}

impl Default for SimControl {
    fn default() -> Self {
        SimControl {
            envs: Arc::default(),
            batch_permits: Arc::new(tokio::sync::Semaphore::new(BATCH_THREADS)),
        }
    }
}

impl SimControl {
    fn slot(&self, env_id: &str) -> Result<Arc<Mutex<Slot>>, Status> {
        lock(&self.envs)?.get(env_id).cloned().ok_or_else(|| {
            Status::not_found(format!("unknown env_id `{env_id}`: call Reset first"))
        })
    }

    /// One `Step`, inline: one step simulates one control interval
    /// (microseconds; see BENCHMARKS.md "Gymnasium"), less than a hand-off
    /// to a blocking thread and back costs. Batches and resets (workload
    /// generation) still go to the blocking pool.
    fn step_one(&self, req: &StepRequest) -> Result<StepReply, Status> {
        let slot = self.slot(&req.env_id)?;
        lock(&slot)?.step(&req.env_id, req.action, false)
    }
}

/// Run CPU-bound work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("simulation task failed: {e}")))?
}

#[tonic::async_trait]
impl FarmControl for SimControl {
    async fn get_spec(&self, request: Request<SpecRequest>) -> Result<Response<EnvSpec>, Status> {
        let req = request.into_inner();
        let actions = parse_action_space(&req.action_space).ok_or_else(|| {
            Status::invalid_argument(format!(
                "action_space `{}`: expected default, paper, estimates, or a comma list of action meanings",
                req.action_space
            ))
        })?;
        let default =
            Scenario::builtin("paper-4phase").map_err(|e| Status::internal(e.to_string()))?;
        let version = if req.obs_version == 0 {
            OBS_VERSION
        } else {
            req.obs_version
        };
        let bad_version = |e: observation::ObservationError| {
            Status::invalid_argument(format!("obs_version {}: {e}", req.obs_version))
        };
        Ok(Response::new(EnvSpec {
            obs_version: version,
            observation_names: observation::names_of(version)
                .map_err(bad_version)?
                .iter()
                .map(|s| s.to_string())
                .collect(),
            observation_low: observation::low_of(version).map_err(bad_version)?.to_vec(),
            observation_high: observation::high_of(version).map_err(bad_version)?.to_vec(),
            action_meanings: actions.meanings(),
            control_interval_s: default.platform.control_interval_s,
            episode_steps: default.platform.episode_steps,
            backend: "sim".into(),
            server_version: format!("farmctl {}", env!("CARGO_PKG_VERSION")),
            scenarios: Scenario::builtin_names()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            policies: Vec::new(),
        }))
    }

    async fn reset(&self, request: Request<ResetRequest>) -> Result<Response<StepReply>, Status> {
        let req = request.into_inner();
        if req.env_id.is_empty() {
            return Err(Status::invalid_argument(
                "env_id must be a non-empty string",
            ));
        }
        let cfg = EpisodeConfig::from_request(&req)?;
        let env_id = req.env_id.clone();
        let seed = req.seed;
        debug!(env_id, seed, scenarios = cfg.scenarios.len(), "reset");
        let (slot, reply) = blocking(move || {
            let observer = Observer::new(cfg.obs_version)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let env = Env::new(cfg.actions.clone(), cfg.weights)
                .with_observer(observer)
                .with_window(cfg.window)
                .with_events(cfg.events)
                .with_shed_expired(cfg.shed_expired);
            let mut slot = Slot {
                env,
                cfg,
                seed,
                episodes: 0,
            };
            let reply = slot.start(&env_id, seed)?;
            Ok((slot, reply))
        })
        .await?;
        lock(&self.envs)?.insert(req.env_id, Arc::new(Mutex::new(slot)));
        Ok(Response::new(reply))
    }

    async fn step(&self, request: Request<StepRequest>) -> Result<Response<StepReply>, Status> {
        Ok(Response::new(self.step_one(&request.into_inner())?))
    }

    async fn step_batch(
        &self,
        request: Request<StepBatchRequest>,
    ) -> Result<Response<StepBatchReply>, Status> {
        let req = Arc::new(request.into_inner());
        // One pass under the table lock: check the form, refuse duplicate
        // ids (two steps of one env in a batch would race), find the slots.
        let (slots, obs_dim) = {
            let steps = batch::steps(&req).map_err(|e| Status::invalid_argument(e.to_string()))?;
            let envs = lock(&self.envs)?;
            let mut seen = HashSet::with_capacity(steps.len());
            let mut slots = Vec::with_capacity(steps.len());
            let mut obs_dim = None;
            for (env_id, _) in &steps {
                if !seen.insert(*env_id) {
                    return Err(Status::invalid_argument(format!(
                        "env_id `{env_id}` appears twice in one StepBatch"
                    )));
                }
                let slot = envs.get(*env_id).cloned().ok_or_else(|| {
                    Status::not_found(format!("unknown env_id `{env_id}`: call Reset first"))
                })?;
                if req.packed {
                    // Packed rows share one length: refuse environments of
                    // different observation versions in one packed batch.
                    let dim = observation::dim_of(lock(&slot)?.env.obs_version())
                        .map_err(|e| Status::internal(e.to_string()))?;
                    if *obs_dim.get_or_insert(dim) != dim {
                        return Err(Status::invalid_argument(format!(
                            "env_id `{env_id}` has {dim} observation features, other environments \
                             of this packed StepBatch have {}: use one obs_version per packed batch",
                            obs_dim.unwrap_or(dim)
                        )));
                    }
                }
                slots.push(slot);
            }
            (slots, obs_dim.unwrap_or(OBS_DIM))
        };
        let n = slots.len();
        if n == 0 {
            return Ok(Response::new(StepBatchReply {
                replies: Vec::new(),
                packed: req
                    .packed
                    .then(|| PackedBuilder::new(0, OBS_DIM, false).finish()),
            }));
        }
        // Small chunks taken in turn by up to two blocking threads (the
        // machine this targets has two cores; environments are independent,
        // ids are distinct). Taking chunks instead of fixed halves keeps
        // both threads busy when one half has more episode resets, or when
        // one thread is descheduled on a busy machine.
        let work = Arc::new(BatchWork {
            req: Arc::clone(&req),
            slots,
            next: AtomicUsize::new(0),
            obs_dim,
        });
        let run = || {
            let work = Arc::clone(&work);
            let permits = Arc::clone(&self.batch_permits);
            async move {
                let permit = permits
                    .acquire_owned()
                    .await
                    .map_err(|_| Status::internal("batch permits closed"))?;
                blocking(move || {
                    let out = work.run();
                    drop(permit);
                    out
                })
                .await
            }
        };
        let mut done = if n > BATCH_CHUNK {
            let (a, b) = tokio::join!(run(), run());
            let mut a = a?;
            a.extend(b?);
            a
        } else {
            run().await?
        };
        done.sort_unstable_by_key(|(index, _)| *index);
        let reply = if req.packed {
            let mut packed = PackedBuilder::new(0, obs_dim, req.packed_info);
            for (_, chunk) in done {
                if let Chunk::Packed(p) = chunk {
                    packed.append(p);
                }
            }
            StepBatchReply {
                replies: Vec::new(),
                packed: Some(packed.finish()),
            }
        } else {
            let mut replies = Vec::with_capacity(n);
            for (_, chunk) in done {
                if let Chunk::Replies(r) = chunk {
                    replies.extend(r);
                }
            }
            StepBatchReply {
                replies,
                packed: None,
            }
        };
        Ok(Response::new(reply))
    }

    type WatchStream = tonic::codegen::tokio_stream::Empty<Result<Decision, Status>>;

    async fn watch(
        &self,
        _request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented(
            "Watch streams live decisions of managed farms: served by gateway-ext, not by the simulator",
        ))
    }
}

/// Replies of a `StepStream`, in request order.
type StepReplies = std::pin::Pin<
    Box<dyn tonic::codegen::tokio_stream::Stream<Item = Result<StepReply, Status>> + Send>,
>;

#[tonic::async_trait]
impl FarmControlStream for SimControl {
    type StepStreamStream = StepReplies;

    async fn step_stream(
        &self,
        request: Request<tonic::Streaming<StepRequest>>,
    ) -> Result<Response<StepReplies>, Status> {
        use tonic::codegen::tokio_stream::StreamExt;
        let ctl = self.clone();
        // Each request is stepped inline as it arrives (like a unary Step);
        // the first error is sent and ends the stream, so a client never
        // reads a reply that belongs to another request.
        let mut failed = false;
        let replies = request
            .into_inner()
            .map(move |req| ctl.step_one(&req?))
            .take_while(move |r| {
                let go = !failed;
                failed |= r.is_err();
                go
            });
        Ok(Response::new(Box::pin(replies)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::options::tests::req;

    /// Resets `n` environments `{prefix}{i}` with seed `i` (a mix of
    /// scenarios, short episodes so that batches cross episode ends).
    async fn reset_all(ctl: &SimControl, prefix: &str, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..n {
            let id = format!("{prefix}{i}");
            let mut r = req(&[
                ("scenarios", "paper-4phase,bursty,spike"),
                ("randomize", "true"),
                ("episode_steps", "5"),
            ]);
            r.env_id = id.clone();
            r.seed = i as u64;
            ctl.reset(Request::new(r)).await.unwrap();
            ids.push(id);
        }
        ids
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_batches_equal_serial_steps_bit_for_bit() {
        // A packed StepBatch over many chunks, stepped by two threads, and
        // concurrent batches, against the same environments stepped one by
        // one in request order on this thread.
        let n = 5 * BATCH_CHUNK + 7;
        let ctl = SimControl::default();
        let batched = reset_all(&ctl, "b", n).await;
        let serial = reset_all(&ctl, "s", n).await;
        let half = n / 2;
        let mut ended = 0;
        for k in 0..12u32 {
            let actions: Vec<u32> = (0..n as u32).map(|i| (i * 5 + k * 3) % 7).collect();
            let batch = |range: std::ops::Range<usize>| StepBatchRequest {
                env_ids: batched[range.clone()].to_vec(),
                actions: actions[range].to_vec(),
                auto_reset: true,
                packed: true,
                packed_info: true,
                ..Default::default()
            };
            // Odd steps: the batch split in two calls in flight at once.
            let packed = if k % 2 == 0 {
                vec![ctl.step_batch(Request::new(batch(0..n))).await.unwrap()]
            } else {
                let (a, b) = tokio::join!(
                    ctl.step_batch(Request::new(batch(0..half))),
                    ctl.step_batch(Request::new(batch(half..n)))
                );
                vec![a.unwrap(), b.unwrap()]
            };
            let packed: Vec<_> = packed
                .into_iter()
                .map(|r| r.into_inner().packed.unwrap())
                .collect();
            let obs: Vec<f32> = packed.iter().flat_map(|p| p.observations.clone()).collect();
            let rewards: Vec<f64> = packed.iter().flat_map(|p| p.rewards.clone()).collect();
            let info: Vec<f64> = packed.iter().flat_map(|p| p.info.clone()).collect();
            let flags: Vec<(bool, bool)> = packed
                .iter()
                .flat_map(|p| p.terminated.iter().copied().zip(p.truncated.clone()))
                .collect();
            for (i, id) in serial.iter().enumerate() {
                let slot = ctl.slot(id).unwrap();
                let r = lock(&slot).unwrap().step(id, actions[i], true).unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&r.observation), bits(&obs[i * OBS_DIM..][..OBS_DIM]));
                assert_eq!(r.reward.to_bits(), rewards[i].to_bits(), "env {i} step {k}");
                assert_eq!((r.terminated, r.truncated), flags[i]);
                let step_info = r.info.unwrap();
                assert_eq!(step_info.time_s.to_bits(), info[i * 9].to_bits());
                ended += usize::from(r.terminated || r.truncated);
            }
        }
        assert!(ended >= 2 * n, "{ended} episode ends");
    }
}
