//! One environment of the server: its simulator, its reset's options and
//! the count of episodes it started, which seeds the next auto-reset.

use std::sync::{Mutex, MutexGuard};

use farm_proto::batch::PackedBuilder;
use farm_proto::control::StepReply;
use farm_sim::{Env, EnvError};
use tonic::Status;

use super::options::EpisodeConfig;
use super::reply::{reply, step_info};

/// One environment of the server.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) env: Env,
    pub(super) cfg: EpisodeConfig,
    /// Seed of the last explicit reset.
    pub(super) seed: u64,
    /// Episodes started since that reset.
    pub(super) episodes: u64,
}

impl Slot {
    /// Start the episode with this seed; the reply of its first interval.
    pub(super) fn start(&mut self, env_id: &str, seed: u64) -> Result<StepReply, Status> {
        let scenario = self.cfg.scenario_for(seed);
        let (obs, info) = self.env.reset(&scenario, seed).map_err(env_status)?;
        self.episodes += 1;
        let done = info.metrics.is_some();
        Ok(reply(env_id, &obs, 0.0, done, false, &info))
    }

    pub(super) fn step(
        &mut self,
        env_id: &str,
        action: u32,
        auto_reset: bool,
    ) -> Result<StepReply, Status> {
        let out = self.env.step(action as usize).map_err(env_status)?;
        self.finish(env_id, &out, auto_reset)
    }

    /// One step appended to a packed batch reply: no `StepReply` (and no
    /// allocation) unless the episode ended.
    pub(super) fn step_packed(
        &mut self,
        env_id: &str,
        action: u32,
        auto_reset: bool,
        packed: &mut PackedBuilder,
    ) -> Result<(), Status> {
        let out = self.env.step(action as usize).map_err(env_status)?;
        if out.terminated || out.truncated {
            packed.push_reply(self.finish(env_id, &out, auto_reset)?);
        } else {
            packed.push(
                &out.obs,
                out.reward,
                false,
                false,
                &step_info(&out.info),
                StepReply::default,
            );
        }
        Ok(())
    }

    /// The reply of a step; with `auto_reset`, starts the next episode when
    /// this one ended.
    fn finish(
        &mut self,
        env_id: &str,
        out: &farm_sim::StepOut,
        auto_reset: bool,
    ) -> Result<StepReply, Status> {
        let mut r = reply(
            env_id,
            &out.obs,
            out.reward,
            out.terminated,
            out.truncated,
            &out.info,
        );
        if auto_reset && (out.terminated || out.truncated) {
            let seed = self.seed.wrapping_add(self.episodes);
            let next = self.start(env_id, seed)?;
            r.final_observation = std::mem::replace(&mut r.observation, next.observation);
        }
        Ok(r)
    }
}

fn env_status(e: EnvError) -> Status {
    match e {
        EnvError::InvalidAction { .. } | EnvError::Sim(_) => {
            Status::invalid_argument(e.to_string())
        }
        EnvError::NotRunning => Status::failed_precondition(e.to_string()),
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, Status> {
    m.lock()
        .map_err(|_| Status::internal("an environment lock was poisoned by a panic"))
}
