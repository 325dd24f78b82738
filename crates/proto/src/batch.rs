//! Both forms of a `StepBatch`: the request's per-step or columnar list of
//! actions, and the reply's per-step `StepReply`s or flat `PackedSteps`.
//!
//! Shared by every `FarmControl` server (the simulator and gateway-ext) so
//! the packed layout is defined once.

use crate::control::{PackedSteps, StepBatchReply, StepBatchRequest, StepInfo, StepReply};

/// The per-step info fields of [`PackedSteps::info`], in row order.
pub const INFO_FIELDS: [&str; 9] = [
    "time_s",
    "desired",
    "ready",
    "starting",
    "backlog",
    "in_flight",
    "window_qos",
    "arrivals",
    "completions",
];

/// Why a `StepBatchRequest` is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Both `steps` and the columnar `env_ids`/`actions` were given.
    #[error("a StepBatch uses either `steps` or `env_ids` + `actions`, not both")]
    BothForms,
    /// The columnar lists differ in length.
    #[error(
        "StepBatch has {env_ids} env_ids but {actions} actions: expected one action per env_id"
    )]
    LengthMismatch {
        /// Number of `env_ids`.
        env_ids: usize,
        /// Number of `actions`.
        actions: usize,
    },
}

/// The `(env_id, action)` pairs of a request, in order, whichever form it
/// uses.
pub fn steps(req: &StepBatchRequest) -> Result<Vec<(&str, u32)>, BatchError> {
    if req.env_ids.is_empty() && req.actions.is_empty() {
        return Ok(req
            .steps
            .iter()
            .map(|s| (s.env_id.as_str(), s.action))
            .collect());
    }
    if !req.steps.is_empty() {
        return Err(BatchError::BothForms);
    }
    if req.env_ids.len() != req.actions.len() {
        return Err(BatchError::LengthMismatch {
            env_ids: req.env_ids.len(),
            actions: req.actions.len(),
        });
    }
    Ok(req
        .env_ids
        .iter()
        .map(String::as_str)
        .zip(req.actions.iter().copied())
        .collect())
}

/// One row of [`PackedSteps::info`] (see [`INFO_FIELDS`]).
pub fn info_row(info: &StepInfo) -> [f64; 9] {
    [
        info.time_s,
        f64::from(info.desired),
        f64::from(info.ready),
        f64::from(info.starting),
        info.backlog,
        info.in_flight,
        info.window_qos.unwrap_or(f64::NAN),
        info.arrivals,
        info.completions,
    ]
}

/// Builds a [`PackedSteps`] one step at a time, without a `StepReply` per
/// step (only ended episodes keep theirs).
#[derive(Debug, Clone)]
pub struct PackedBuilder {
    out: PackedSteps,
    with_info: bool,
    len: u32,
}

impl PackedBuilder {
    /// An empty builder for about `capacity` steps of observations of
    /// `obs_dim` values; `with_info` fills the info rows.
    pub fn new(capacity: usize, obs_dim: usize, with_info: bool) -> PackedBuilder {
        let info_len = if with_info {
            capacity * INFO_FIELDS.len()
        } else {
            0
        };
        PackedBuilder {
            out: PackedSteps {
                obs_dim: u32::try_from(obs_dim).unwrap_or(u32::MAX),
                observations: Vec::with_capacity(capacity * obs_dim),
                rewards: Vec::with_capacity(capacity),
                terminated: Vec::with_capacity(capacity),
                truncated: Vec::with_capacity(capacity),
                info: Vec::with_capacity(info_len),
                ended: Vec::new(),
                ended_replies: Vec::new(),
            },
            with_info,
            len: 0,
        }
    }

    /// Append one step. `ended` is called for the complete reply only when
    /// the episode ended (terminated or truncated), so a server builds a
    /// `StepReply` just for those.
    pub fn push(
        &mut self,
        observation: &[f32],
        reward: f64,
        terminated: bool,
        truncated: bool,
        info: &StepInfo,
        ended: impl FnOnce() -> StepReply,
    ) {
        self.out.observations.extend_from_slice(observation);
        self.out.rewards.push(reward);
        self.out.terminated.push(terminated);
        self.out.truncated.push(truncated);
        if self.with_info {
            self.out.info.extend_from_slice(&info_row(info));
        }
        if terminated || truncated {
            self.out.ended.push(self.len);
            self.out.ended_replies.push(ended());
        }
        self.len += 1;
    }

    /// Append a complete reply (kept whole in `ended_replies` if its
    /// episode ended).
    pub fn push_reply(&mut self, reply: StepReply) {
        let info = reply.info.unwrap_or_default();
        let observation = reply.observation.clone();
        let (reward, terminated, truncated) = (reply.reward, reply.terminated, reply.truncated);
        self.push(&observation, reward, terminated, truncated, &info, || reply);
    }

    /// Append the steps of another builder (the next steps in request order).
    pub fn append(&mut self, other: PackedBuilder) {
        let offset = self.len;
        let o = other.out;
        self.out.observations.extend(o.observations);
        self.out.rewards.extend(o.rewards);
        self.out.terminated.extend(o.terminated);
        self.out.truncated.extend(o.truncated);
        self.out.info.extend(o.info);
        self.out
            .ended
            .extend(o.ended.into_iter().map(|i| i + offset));
        self.out.ended_replies.extend(o.ended_replies);
        self.len += other.len;
    }

    /// Steps appended so far.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// No step appended yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The finished arrays.
    pub fn finish(self) -> PackedSteps {
        self.out
    }
}

/// The reply of a batch whose steps produced `replies` (in request order):
/// packed when the request asked for it, else the replies themselves. For
/// servers that build a `StepReply` per step anyway (gateway-ext).
pub fn reply(req_packed: bool, req_packed_info: bool, replies: Vec<StepReply>) -> StepBatchReply {
    if !req_packed {
        return StepBatchReply {
            replies,
            packed: None,
        };
    }
    let dim = replies.first().map_or(0, |r| r.observation.len());
    let mut b = PackedBuilder::new(replies.len(), dim, req_packed_info);
    for r in replies {
        b.push_reply(r);
    }
    StepBatchReply {
        replies: Vec::new(),
        packed: Some(b.finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{RunSummary, StepRequest};

    fn step_reply(i: u32, done: bool) -> StepReply {
        StepReply {
            env_id: format!("e{i}"),
            observation: vec![i as f32, 0.25, -1.5],
            reward: -0.1 * f64::from(i),
            terminated: false,
            truncated: done,
            info: Some(StepInfo {
                time_s: 8.0 * f64::from(i),
                desired: i,
                ready: 2,
                starting: 1,
                backlog: 3.5,
                in_flight: 2.0,
                window_qos: i.is_multiple_of(2).then_some(0.75),
                arrivals: 10.0,
                completions: 9.0,
                summary: done.then(|| RunSummary {
                    tasks: 7,
                    ..Default::default()
                }),
            }),
            final_observation: if done { vec![9.0, 9.0, 9.0] } else { vec![] },
        }
    }

    #[test]
    fn both_request_forms_give_the_same_steps() {
        let rows = StepBatchRequest {
            steps: vec![
                StepRequest {
                    env_id: "a".into(),
                    action: 1,
                },
                StepRequest {
                    env_id: "b".into(),
                    action: 2,
                },
            ],
            ..Default::default()
        };
        let cols = StepBatchRequest {
            env_ids: vec!["a".into(), "b".into()],
            actions: vec![1, 2],
            ..Default::default()
        };
        assert_eq!(steps(&rows).unwrap(), steps(&cols).unwrap());
        assert!(steps(&StepBatchRequest::default()).unwrap().is_empty());
    }

    #[test]
    fn malformed_requests_are_refused() {
        let mixed = StepBatchRequest {
            steps: vec![StepRequest::default()],
            env_ids: vec!["a".into()],
            actions: vec![1],
            ..Default::default()
        };
        assert_eq!(steps(&mixed), Err(BatchError::BothForms));
        let short = StepBatchRequest {
            env_ids: vec!["a".into(), "b".into()],
            actions: vec![1],
            ..Default::default()
        };
        assert_eq!(
            steps(&short),
            Err(BatchError::LengthMismatch {
                env_ids: 2,
                actions: 1
            })
        );
    }

    #[test]
    fn packed_reply_carries_the_replies_values() {
        let replies: Vec<StepReply> = (0..5).map(|i| step_reply(i, i == 3)).collect();
        let plain = reply(false, true, replies.clone());
        assert_eq!(plain.replies, replies);
        assert!(plain.packed.is_none());
        let packed = reply(true, true, replies.clone());
        assert!(packed.replies.is_empty());
        let p = packed.packed.unwrap();
        assert_eq!(p.obs_dim, 3);
        for (i, r) in replies.iter().enumerate() {
            assert_eq!(p.observations[i * 3..(i + 1) * 3], r.observation[..]);
            assert_eq!(p.rewards[i].to_bits(), r.reward.to_bits());
            assert_eq!(p.truncated[i], r.truncated);
            assert_eq!(p.terminated[i], r.terminated);
            let row = &p.info[i * 9..(i + 1) * 9];
            let want = info_row(r.info.as_ref().unwrap());
            for (a, b) in row.iter().zip(want) {
                assert_eq!(a.to_bits(), b.to_bits());
            }
        }
        assert!(p.info[9 + 6].is_nan(), "absent window_qos is NaN");
        assert_eq!(p.ended, vec![3]);
        assert_eq!(p.ended_replies, vec![replies[3].clone()]);
        let no_info = reply(true, false, replies).packed.unwrap();
        assert!(no_info.info.is_empty());
    }

    #[test]
    fn append_offsets_ended_indices() {
        let mut a = PackedBuilder::new(2, 3, false);
        a.push_reply(step_reply(0, true));
        a.push_reply(step_reply(1, false));
        let mut b = PackedBuilder::new(2, 3, false);
        b.push_reply(step_reply(2, false));
        b.push_reply(step_reply(3, true));
        a.append(b);
        assert_eq!(a.len(), 4);
        let p = a.finish();
        assert_eq!(p.ended, vec![0, 3]);
        assert_eq!(p.rewards.len(), 4);
        assert_eq!(p.observations.len(), 12);
    }
}
