//! `FarmControl` served live: the spec of a farm, `Reset`/`Step` for farms
//! in `external` mode (an action is applied at the next control tick; the
//! reply carries the observation and reward of the tick after it), and
//! `Watch` streaming every decision.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use farm_model::action::ActionSpace;
use farm_model::observation::{OBS_VERSION, high, low, names};
use farm_model::reward::{RewardWeights, reward};
use farm_proto::control::farm_control_server::{FarmControl, FarmControlServer};
use farm_proto::control::{
    Decision, EnvSpec, ResetRequest, SpecRequest, StepBatchReply, StepBatchRequest, StepInfo,
    StepReply, StepRequest, WatchRequest,
};
use futures::Stream;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::farm::{DecisionRecord, FarmError, FarmHandle, TickEvent};
use crate::manager::Manager;

/// The live `FarmControl` service.
pub struct ControlService {
    manager: Arc<Manager>,
    weights: RewardWeights,
    stop: CancellationToken,
}

impl ControlService {
    /// A service over `manager`'s farms; `Watch` streams end when `stop` fires
    /// (so a graceful shutdown does not wait for watchers forever).
    pub fn new(manager: Arc<Manager>, stop: CancellationToken) -> Self {
        Self {
            manager,
            weights: RewardWeights::default(),
            stop,
        }
    }

    /// As a tonic server.
    pub fn into_server(self) -> FarmControlServer<Self> {
        FarmControlServer::new(self)
    }

    fn farm(&self, name: &str) -> Result<Arc<FarmHandle>, Status> {
        self.manager.farm(name).ok_or_else(|| {
            let known: Vec<String> = self
                .manager
                .farms()
                .iter()
                .map(|f| f.spec().farm.clone())
                .collect();
            Status::not_found(format!("no managed farm {name:?} (managed: {known:?})"))
        })
    }

    fn reply(&self, farm: &str, rec: &DecisionRecord, reward: f64) -> StepReply {
        let s = &rec.signals;
        StepReply {
            env_id: farm.to_owned(),
            observation: rec.observation.clone(),
            reward,
            terminated: false,
            truncated: false,
            info: Some(StepInfo {
                time_s: rec.at_us as f64 / 1e6,
                desired: rec.desired,
                ready: s.replicas_ready.max(0.0) as u32,
                starting: s.replicas_starting.max(0.0) as u32,
                backlog: s.backlog,
                in_flight: s.in_flight,
                window_qos: s.window_qos(),
                arrivals: s.arrivals,
                completions: s.completions,
                summary: None,
            }),
            final_observation: Vec::new(),
        }
    }

    async fn step_one(&self, req: StepRequest) -> Result<StepReply, Status> {
        let farm = self.farm(&req.env_id)?;
        let mut ticks = farm.subscribe_ticks();
        farm.set_pending_action(req.action).map_err(farm_status)?;
        let limit = farm.spec().interval * 3 + Duration::from_secs(5);
        // The tick that consumes the action, then the tick after it.
        let applied = wait_tick(&mut ticks, limit, |e| e.record.external_action).await?;
        let next = wait_tick(&mut ticks, limit, |_| true).await?;
        // The reward of the step that moved the desired count from
        // `previous` to `desired`, read at the tick after it.
        let reward = reward(
            &self.weights,
            &next.record.signals,
            applied.record.previous,
            applied.record.desired,
        );
        Ok(self.reply(&req.env_id, &next.record, reward))
    }
}

fn farm_status(e: FarmError) -> Status {
    match e {
        FarmError::Stopped(_) => Status::unavailable(e.to_string()),
        FarmError::NotExternal(..) => Status::failed_precondition(e.to_string()),
        FarmError::BadAction { .. } => Status::invalid_argument(e.to_string()),
    }
}

async fn wait_tick(
    rx: &mut broadcast::Receiver<TickEvent>,
    limit: Duration,
    want: impl Fn(&TickEvent) -> bool,
) -> Result<TickEvent, Status> {
    let fut = async {
        loop {
            match rx.recv().await {
                Ok(e) if want(&e) => return Ok(e),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(Status::unavailable("farm loop stopped"));
                }
            }
        }
    };
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| Status::deadline_exceeded(format!("no control tick within {limit:?}")))?
}

type DecisionStream = Pin<Box<dyn Stream<Item = Result<Decision, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl FarmControl for ControlService {
    async fn get_spec(&self, request: Request<SpecRequest>) -> Result<Response<EnvSpec>, Status> {
        let req = request.into_inner();
        let (space, interval) = if req.farm.is_empty() {
            let space = if req.action_space == "paper" {
                ActionSpace::paper()
            } else {
                ActionSpace::default()
            };
            (space, 0.0)
        } else {
            let f = self.farm(&req.farm)?;
            let space = f.action_space().cloned().unwrap_or_default();
            // On the run's clock, as the policy sees it (time scale).
            (space, f.spec().interval.as_secs_f64() * f.spec().time_scale)
        };
        Ok(Response::new(EnvSpec {
            obs_version: OBS_VERSION,
            observation_names: names().iter().map(|s| (*s).to_owned()).collect(),
            observation_low: low().to_vec(),
            observation_high: high().to_vec(),
            action_meanings: space.meanings(),
            control_interval_s: interval,
            episode_steps: 0,
            backend: "live".into(),
            server_version: format!("gateway-ext {}", env!("CARGO_PKG_VERSION")),
            scenarios: self
                .manager
                .farms()
                .iter()
                .map(|f| f.spec().farm.clone())
                .collect(),
            policies: farm_policy::builtin_names()
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }))
    }

    async fn reset(&self, request: Request<ResetRequest>) -> Result<Response<StepReply>, Status> {
        let req = request.into_inner();
        let farm = self.farm(&req.env_id)?;
        if farm.action_space().is_none() {
            return Err(farm_status(FarmError::NotExternal(
                req.env_id.clone(),
                farm.spec().policy.to_string(),
            )));
        }
        // The episode starts from the next tick's observation.
        let mut ticks = farm.subscribe_ticks();
        let limit = farm.spec().interval * 2 + Duration::from_secs(5);
        let e = wait_tick(&mut ticks, limit, |_| true).await?;
        Ok(Response::new(self.reply(&req.env_id, &e.record, 0.0)))
    }

    async fn step(&self, request: Request<StepRequest>) -> Result<Response<StepReply>, Status> {
        self.step_one(request.into_inner()).await.map(Response::new)
    }

    async fn step_batch(
        &self,
        request: Request<StepBatchRequest>,
    ) -> Result<Response<StepBatchReply>, Status> {
        let req = request.into_inner();
        let steps =
            farm_proto::batch::steps(&req).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let replies = futures::future::try_join_all(steps.into_iter().map(|(env_id, action)| {
            self.step_one(StepRequest {
                env_id: env_id.to_owned(),
                action,
            })
        }))
        .await?;
        Ok(Response::new(farm_proto::batch::reply(
            req.packed,
            req.packed_info,
            replies,
        )))
    }

    type WatchStream = DecisionStream;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let farm = request.into_inner().farm;
        if !farm.is_empty() {
            self.farm(&farm)?;
        }
        let rx = self.manager.deps().decisions.subscribe();
        let stop = self.stop.clone();
        let stream = futures::stream::unfold((rx, farm, stop), |(mut rx, farm, stop)| async move {
            loop {
                let next = tokio::select! {
                    r = rx.recv() => r,
                    () = stop.cancelled() => return None,
                };
                match next {
                    Ok(d) if farm.is_empty() || d.farm == farm => {
                        return Some((Ok(d.to_proto()), (rx, farm, stop)));
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        return Some((
                            Err(Status::data_loss(format!(
                                "watcher too slow: {n} decisions skipped"
                            ))),
                            (rx, farm, stop),
                        ));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
