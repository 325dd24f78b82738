//! A reset's options (the table in `serve`'s module docs): parsed and checked into the
//! [`EpisodeConfig`] every episode of one environment starts from.

use farm_model::action::ActionSpace;
use farm_model::cadence::BacklogJump;
use farm_model::observation::{self, OBS_VERSION};
use farm_model::reward::RewardWeights;
use farm_model::scenario::{Scenario, ScenarioError, stream_rng};
use farm_proto::control::ResetRequest;
use farm_runtime::config::parse_bool;
use rand::Rng;
use tonic::Status;

use super::randomize::{Randomization, Range, randomize};

/// Random stream choosing an episode's scenario from a list ("scenmix").
const MIX_STREAM: u64 = 0x0073_6365_6e6d_6978;
/// Stream of the per-episode draw of the decision interval (`interval` option).
const INTERVAL_STREAM: u64 = 0x0069_6e74_6572_7661;

/// Why a reset's options were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptionError {
    /// The key is not a known option.
    #[error("unknown option `{key}` (known: {known})", known = KNOWN_OPTIONS.join(", "))]
    Unknown {
        /// The key given.
        key: String,
    },
    /// The value does not parse or is out of range.
    #[error("option `{key}` = `{value}`: expected {expected}")]
    BadValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
}

const KNOWN_OPTIONS: &[&str] = &[
    "action_space",
    "scenarios",
    "randomize",
    "randomize.rate",
    "randomize.service",
    "randomize.shape",
    "randomize.startup",
    "episode_steps",
    "obs_version",
    "interval",
    "window",
    "events",
    "reward.qos",
    "reward.cost",
    "reward.backlog",
    "reward.churn",
];

/// Everything a reset fixes for the episodes of one environment.
#[derive(Debug, Clone)]
pub struct EpisodeConfig {
    /// Scenarios an episode draws from (one = always that one).
    pub scenarios: Vec<Scenario>,
    /// Domain randomisation, when enabled.
    pub randomize: Option<Randomization>,
    /// Action space.
    pub actions: ActionSpace,
    /// Reward weights.
    pub weights: RewardWeights,
    /// Override of the episode length in steps.
    pub episode_steps: Option<u32>,
    /// Observation layout version (1, 2 or 3).
    pub obs_version: u32,
    /// Decision intervals an episode draws from (empty = the scenario's).
    pub intervals: Vec<f64>,
    /// Sliding window of the signals, seconds.
    pub window: Option<f64>,
    /// Early decisions on a backlog jump.
    pub events: Option<BacklogJump>,
    /// Shed tasks past their deadline unstarted (option `shed_expired`).
    pub shed_expired: bool,
}

impl EpisodeConfig {
    /// Parse a reset's scenario fields and options.
    pub fn from_request(req: &ResetRequest) -> Result<EpisodeConfig, Status> {
        let invalid = |e: OptionError| Status::invalid_argument(e.to_string());
        let scenario_err = |e: ScenarioError| Status::invalid_argument(e.to_string());
        let mut scenarios = Vec::new();
        if let Some(list) = req.options.get("scenarios") {
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                scenarios.push(Scenario::builtin(name).map_err(scenario_err)?);
            }
            if scenarios.is_empty() {
                return Err(invalid(OptionError::BadValue {
                    key: "scenarios".into(),
                    value: list.clone(),
                    expected: "a comma list of built-in scenario names",
                }));
            }
        } else if !req.scenario_yaml.trim().is_empty() {
            scenarios.push(Scenario::from_yaml(&req.scenario_yaml).map_err(scenario_err)?);
        } else {
            let name = if req.scenario.is_empty() {
                "paper-4phase"
            } else {
                req.scenario.as_str()
            };
            scenarios.push(Scenario::builtin(name).map_err(scenario_err)?);
        }
        let mut cfg = EpisodeConfig {
            scenarios,
            randomize: None,
            actions: ActionSpace::default(),
            weights: RewardWeights::default(),
            episode_steps: None,
            obs_version: OBS_VERSION,
            intervals: Vec::new(),
            window: None,
            events: None,
            shed_expired: false,
        };
        let mut ranges = Randomization::default();
        let mut randomize = false;
        for (key, value) in &req.options {
            let bad = |expected: &'static str| OptionError::BadValue {
                key: key.clone(),
                value: value.clone(),
                expected,
            };
            let weight = |v: &str| -> Result<f64, OptionError> {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|w| w.is_finite() && *w >= 0.0)
                    .ok_or_else(|| bad("a non-negative number"))
            };
            match key.as_str() {
                "scenarios" => {}
                "action_space" => {
                    cfg.actions = parse_action_space(value).ok_or_else(|| {
                        invalid(bad(
                            "default, paper, estimates, or a comma list of action meanings",
                        ))
                    })?
                }
                "randomize" => {
                    randomize = match value.trim() {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" | "" => false,
                        _ => return Err(invalid(bad("true or false"))),
                    }
                }
                "randomize.rate" => {
                    ranges.rate = parse_range(value).ok_or_else(|| invalid(bad(RANGE_EXPECTED)))?
                }
                "randomize.service" => {
                    ranges.service =
                        parse_range(value).ok_or_else(|| invalid(bad(RANGE_EXPECTED)))?
                }
                "randomize.shape" => {
                    ranges.shape = parse_range(value).ok_or_else(|| invalid(bad(RANGE_EXPECTED)))?
                }
                "randomize.startup" => {
                    ranges.startup =
                        parse_range(value).ok_or_else(|| invalid(bad(RANGE_EXPECTED)))?
                }
                "episode_steps" => {
                    let n = value
                        .trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| invalid(bad("an integer >= 1")))?;
                    cfg.episode_steps = Some(n);
                }
                "obs_version" => {
                    cfg.obs_version = value
                        .trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|v| observation::dim_of(*v).is_ok())
                        .ok_or_else(|| invalid(bad("1, 2 or 3")))?;
                }
                "interval" => {
                    let seconds = |v: &str| {
                        v.trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|x| x.is_finite() && *x > 0.0)
                    };
                    cfg.intervals = value
                        .split(',')
                        .map(seconds)
                        .collect::<Option<Vec<f64>>>()
                        .ok_or_else(|| invalid(bad("a comma list of positive seconds")))?;
                }
                "window" => {
                    cfg.window = Some(
                        value
                            .trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|x| x.is_finite() && *x > 0.0)
                            .ok_or_else(|| invalid(bad("a positive number of seconds")))?,
                    );
                }
                "events" => {
                    cfg.events = BacklogJump::parse(value)
                        .map_err(|e| Status::invalid_argument(format!("option events: {e}")))?;
                }
                "shed_expired" => {
                    cfg.shed_expired =
                        parse_bool(value).ok_or_else(|| invalid(bad("true or false")))?;
                }
                "reward.qos" => cfg.weights.qos = weight(value).map_err(invalid)?,
                "reward.cost" => cfg.weights.cost = weight(value).map_err(invalid)?,
                "reward.backlog" => cfg.weights.backlog = weight(value).map_err(invalid)?,
                "reward.churn" => cfg.weights.churn = weight(value).map_err(invalid)?,
                _ => return Err(invalid(OptionError::Unknown { key: key.clone() })),
            }
        }
        if randomize {
            cfg.randomize = Some(ranges);
        }
        Ok(cfg)
    }

    /// The scenario of the episode started with `seed`: drawn from the list,
    /// randomised when enabled, with the episode length override applied.
    pub fn scenario_for(&self, seed: u64) -> Scenario {
        let index = if self.scenarios.len() > 1 {
            stream_rng(seed, MIX_STREAM).random_range(0..self.scenarios.len())
        } else {
            0
        };
        let mut s = self.scenarios[index].clone();
        if let Some(r) = &self.randomize {
            randomize(&mut s, r, seed);
        }
        if !self.intervals.is_empty() {
            let k = stream_rng(seed, INTERVAL_STREAM).random_range(0..self.intervals.len());
            let dt = self.intervals[k];
            s.platform.episode_steps = (s.platform.episode_s() / dt).round().max(1.0) as u32;
            s.platform.control_interval_s = dt;
        }
        if let Some(n) = self.episode_steps {
            s.platform.episode_steps = n;
        }
        s
    }
}

const RANGE_EXPECTED: &str = "`lo,hi` with 0 < lo <= hi <= 10";

fn parse_range(text: &str) -> Option<Range> {
    let (lo, hi) = text.split_once(',')?;
    let lo: f64 = lo.trim().parse().ok()?;
    let hi: f64 = hi.trim().parse().ok()?;
    (lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi && hi <= 10.0)
        .then_some(Range { lo, hi })
}

pub(super) fn parse_action_space(text: &str) -> Option<ActionSpace> {
    match text.trim() {
        "" | "default" => Some(ActionSpace::default()),
        "paper" => Some(ActionSpace::paper()),
        "estimates" => Some(ActionSpace::with_estimates()),
        list => {
            let meanings: Vec<String> = list.split(',').map(|m| m.trim().to_string()).collect();
            ActionSpace::from_meanings(&meanings).ok()
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::HashSet;

    use farm_model::scenario::Arrivals;

    use super::*;

    /// A reset of env `e` with seed 1 on `paper-4phase` and these options.
    pub fn req(options: &[(&str, &str)]) -> ResetRequest {
        ResetRequest {
            env_id: "e".into(),
            seed: 1,
            scenario: "paper-4phase".into(),
            scenario_yaml: String::new(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn unknown_option_is_refused() {
        let e = EpisodeConfig::from_request(&req(&[("randomise", "true")])).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("randomise"), "{}", e.message());
    }

    #[test]
    fn obs_version_option_is_parsed_and_checked() {
        let cfg = EpisodeConfig::from_request(&req(&[])).unwrap();
        assert_eq!(cfg.obs_version, 1);
        let cfg = EpisodeConfig::from_request(&req(&[("obs_version", "2")])).unwrap();
        assert_eq!(cfg.obs_version, 2);
        let cfg = EpisodeConfig::from_request(&req(&[("obs_version", "3")])).unwrap();
        assert_eq!(cfg.obs_version, 3);
        for v in ["0", "4", "v2", ""] {
            let e = EpisodeConfig::from_request(&req(&[("obs_version", v)])).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{v}");
        }
    }

    /// `shed_expired` is off unless asked, and a value that is not a
    /// boolean is refused naming the option.
    #[test]
    fn shed_expired_option_is_a_boolean() {
        assert!(!EpisodeConfig::from_request(&req(&[])).unwrap().shed_expired);
        let on = EpisodeConfig::from_request(&req(&[("shed_expired", "true")])).unwrap();
        assert!(on.shed_expired);
        let e = EpisodeConfig::from_request(&req(&[("shed_expired", "maybe")])).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("shed_expired"), "{}", e.message());
    }

    #[test]
    fn cadence_options_draw_an_interval_and_keep_the_episode_length() {
        let cfg =
            EpisodeConfig::from_request(&req(&[("interval", "1, 2,8"), ("window", "8")])).unwrap();
        assert_eq!(cfg.intervals, [1.0, 2.0, 8.0]);
        assert_eq!(cfg.window, Some(8.0));
        assert_eq!(cfg.events, None);
        let on = EpisodeConfig::from_request(&req(&[("events", "gap=2")])).unwrap();
        assert_eq!(on.events.map(|t| t.min_gap_s), Some(2.0));
        let base = EpisodeConfig::from_request(&req(&[]))
            .unwrap()
            .scenario_for(3);
        let mut seen = HashSet::new();
        for seed in 0..64 {
            let s = cfg.scenario_for(seed);
            assert_eq!(s, cfg.scenario_for(seed));
            let dt = s.platform.control_interval_s;
            assert!([1.0, 2.0, 8.0].contains(&dt), "{dt}");
            assert!((s.platform.episode_s() - base.platform.episode_s()).abs() < 1e-9);
            seen.insert(dt.to_bits());
        }
        assert_eq!(seen.len(), 3);
        for (k, v) in [
            ("interval", "0"),
            ("interval", "2,x"),
            ("interval", ""),
            ("window", "-1"),
            ("events", "sometimes"),
            ("events", "share=0"),
        ] {
            let e = EpisodeConfig::from_request(&req(&[(k, v)])).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{k}={v}");
        }
    }

    #[test]
    fn bad_range_is_refused() {
        for v in ["2,1", "0,1", "a,b", "1", "1,11"] {
            let e = EpisodeConfig::from_request(&req(&[("randomize.rate", v)])).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{v}");
        }
    }

    #[test]
    fn malformed_yaml_is_invalid_argument() {
        let mut r = req(&[]);
        r.scenario_yaml = "name: x\narrivals: {kind: nope}\n".into();
        let e = EpisodeConfig::from_request(&r).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("scenario"), "{}", e.message());
    }

    #[test]
    fn randomisation_is_seeded_and_within_ranges() {
        let cfg = EpisodeConfig::from_request(&req(&[("randomize", "true")])).unwrap();
        let base = Scenario::builtin("paper-4phase").unwrap();
        let a = cfg.scenario_for(5);
        assert_eq!(a, cfg.scenario_for(5));
        assert_ne!(a, cfg.scenario_for(6));
        let (Arrivals::Phases { base_rate: r0, .. }, Arrivals::Phases { base_rate: r1, .. }) =
            (&base.arrivals, &a.arrivals)
        else {
            panic!("paper-4phase has phases");
        };
        let f = r1 / r0;
        assert!((0.7..=1.5).contains(&f), "{f}");
        let m = a.service.dist.mean() / base.service.dist.mean();
        assert!((0.7 - 1e-9..=1.4 + 1e-9).contains(&m), "{m}");
        assert!(a.validate().is_ok());
    }

    #[test]
    fn scenario_mix_draws_from_the_list() {
        let cfg = EpisodeConfig::from_request(&req(&[("scenarios", "steady,spike")])).unwrap();
        let names: HashSet<String> = (0..32).map(|s| cfg.scenario_for(s).name).collect();
        assert_eq!(names.len(), 2);
    }
}
