//! The step API: episodes, truncation, rewards and errors.

use farm_model::action::ActionSpace;
use farm_model::observation::{OBS_DIM, OBS_DIM_V2, Obs, Observer};
use farm_model::reward::RewardWeights;
use farm_model::scenario::Scenario;
use farm_sim::{Env, EnvError};

fn episode(seed: u64, action: usize) -> (Vec<Obs>, Vec<f64>, bool, bool) {
    let scenario = Scenario::builtin("paper-4phase").unwrap();
    let mut env = Env::new(ActionSpace::default(), RewardWeights::default());
    let (obs, info) = env.reset(&scenario, seed).unwrap();
    assert_eq!(info.step, 0);
    assert_eq!(info.time_s, scenario.platform.control_interval_s);
    let mut all = vec![obs];
    let mut rewards = Vec::new();
    loop {
        let out = env.step(action).unwrap();
        all.push(out.obs);
        rewards.push(out.reward);
        assert!(out.reward.is_finite());
        if out.terminated || out.truncated {
            let m = out.info.metrics.expect("metrics on the last step");
            assert_eq!(m.completed + m.unfinished, m.tasks);
            assert_eq!(out.info.step as usize, rewards.len());
            assert!(matches!(env.step(action), Err(EnvError::NotRunning)));
            return (all, rewards, out.terminated, out.truncated);
        }
    }
}

#[test]
fn an_episode_is_episode_steps_long_and_reproducible() {
    let scenario = Scenario::builtin("paper-4phase").unwrap();
    let noop = ActionSpace::default().noop_index().unwrap();
    let (obs, rewards, terminated, truncated) = episode(3, noop);
    // 30 steps of 8 s after the first interval: the run is cut by the limit
    // (tasks are still arriving at 240 s), not finished.
    assert_eq!(rewards.len(), scenario.platform.episode_steps as usize);
    assert!(truncated && !terminated);
    assert!(obs.iter().flatten().all(|x| x.is_finite()));
    let again = episode(3, noop);
    assert_eq!(obs, again.0);
    assert_eq!(rewards, again.1);
    let other = episode(4, noop);
    assert_ne!(obs, other.0);
}

#[test]
fn actions_change_the_desired_count_and_bad_ones_are_refused() {
    let scenario = Scenario::builtin("steady").unwrap();
    let space = ActionSpace::default();
    let mut env = Env::new(space.clone(), RewardWeights::default());
    assert!(matches!(env.step(0), Err(EnvError::NotRunning)));
    env.reset(&scenario, 0).unwrap();
    let before = scenario.platform.initial_replicas;
    // The action with the largest increase raises the desired count.
    let up = (0..space.len())
        .max_by_key(|&i| {
            let s = farm_model::signals::Signals {
                replicas_desired: f64::from(before),
                max_replicas: 1000.0,
                ..Default::default()
            };
            space.apply(i, &s)
        })
        .unwrap();
    let out = env.step(up).unwrap();
    assert!(
        out.info.desired > before,
        "desired {} after the largest increase from {before}",
        out.info.desired
    );
    let err = env.step(space.len()).unwrap_err();
    assert_eq!(
        err,
        EnvError::InvalidAction {
            action: space.len(),
            len: space.len()
        }
    );
}

#[test]
fn observation_v2_extends_v1_and_resets_with_the_episode() {
    let scenario = Scenario::builtin("paper-4phase").unwrap();
    let space = ActionSpace::default();
    let up = space
        .meanings()
        .iter()
        .position(|m| m == "delta:+4")
        .unwrap();
    let mut v1 = Env::new(space.clone(), RewardWeights::default());
    let mut v2 = Env::new(space, RewardWeights::default()).with_observer(Observer::new(2).unwrap());
    assert_eq!((v1.obs_version(), v2.obs_version()), (1, 2));
    let mut first = None;
    for _ in 0..2 {
        let (a, _) = v1.reset(&scenario, 5).unwrap();
        let (b, _) = v2.reset(&scenario, 5).unwrap();
        assert_eq!((a.len(), b.len()), (OBS_DIM, OBS_DIM_V2));
        assert_eq!(a.as_slice(), &b[..OBS_DIM]);
        // A reset starts the history afresh: the same seed, the same vector.
        assert_eq!(*first.get_or_insert(b), b);
        let mut changed = false;
        for _ in 0..5 {
            let (x, y) = (v1.step(up).unwrap(), v2.step(up).unwrap());
            assert_eq!(x.obs.as_slice(), &y.obs[..OBS_DIM]);
            // desired_change_frac sees the +4 the previous step asked for.
            changed |= y.obs[OBS_DIM_V2 - 1] > 0.0;
        }
        assert!(changed);
    }
}
