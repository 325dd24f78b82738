//! Farm declarations: the farm keys, from a worker's annotations or the
//! farms file, to a validated [`FarmSpec`]; which function's alerts
//! route to which farm.
//!
//! A farm is declared either by annotations on its worker function
//! (prefix `com.rust-farm.`, e.g. `com.rust-farm.farm=thumbs`) or by an entry
//! of the farms file (same keys without the prefix). Keys: `farm`
//! (required), `function` (file only; the annotated function otherwise),
//! `policy` (`<builtin>`, `onnx:<path>` or `external`), `fallback`,
//! `interval`, `window`, `events`, `min`, `max` (else the labels `com.openfaas.scale.min/max`),
//! `max-step`, `queueing-floor`, `per-function-cap`, `action-space`
//! (`default` or `paper`, for `external` farms), `time-scale` (else
//! `TIME_SCALE`).
//!
//! The `interval` is always wall-clock time (when the loop wakes); with a
//! time scale K the policy is told it lasted `interval * K`. The `window`
//! (wall-clock too) is how far back the signals reach: a decision every 2 s
//! on statistics of the last 8 s is `interval: 2s`, `window: 8s`, as
//! `farmctl sim --interval 2 --window 8`. A compressed run
//! of a scenario whose control interval is 8 s therefore declares
//! `interval: 2s` and `time-scale: 4`.

use std::collections::BTreeMap;

use super::*;

/// Annotation prefix of farm keys on a worker function.
pub const ANNOTATION_PREFIX: &str = "com.rust-farm.";
/// Annotation naming a function's farm: on a worker it declares the farm
/// (and its keys follow); on a companion function (see [`ROLE_LABEL`]) it
/// routes the function's alerts to that farm.
pub const FARM_ANNOTATION: &str = "com.rust-farm.farm";
/// Label of a farm function's role (`emitter`, `worker`, `collector`), as
/// stack.yml and farmctl set it. A function with a role other than
/// `worker` never declares a farm.
pub const ROLE_LABEL: &str = "com.rust-farm.role";
/// Annotation gateway-ext puts on the shard functions it creates.
pub const SHARD_OF_ANNOTATION: &str = "com.rust-farm.shard-of";
/// OpenFaaS label of the minimum replicas.
pub const LABEL_SCALE_MIN: &str = "com.openfaas.scale.min";
/// OpenFaaS label of the maximum replicas.
pub const LABEL_SCALE_MAX: &str = "com.openfaas.scale.max";

/// Where a farm declaration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FarmSource {
    /// The farms file (static).
    File,
    /// Annotations on the worker function (rediscovered periodically).
    Annotations,
}

/// One managed farm.
#[derive(Debug, Clone, PartialEq)]
pub struct FarmSpec {
    /// Farm name (JetStream names derive from it).
    pub farm: String,
    /// The worker function (shard 0).
    pub function: String,
    /// The policy.
    pub policy: PolicySpec,
    /// Built-in used when the policy fails.
    pub fallback: String,
    /// Control interval.
    pub interval: Duration,
    /// Sliding window of the signals (at most `interval` = since the
    /// previous decision).
    pub window: Duration,
    /// Early decisions on a backlog jump (`None` = only at ticks).
    pub events: Option<BacklogJump>,
    /// Minimum replicas over all shards.
    pub min: u32,
    /// Maximum replicas over all shards.
    pub max: u32,
    /// Largest change of desired replicas per decision (`None` = no limit).
    pub max_step: Option<u32>,
    /// Whether the shield raises the proposal to the queueing floor.
    pub queueing_floor: bool,
    /// Replicas per function before shards are used (`None` = no cap).
    pub per_function_cap: Option<u32>,
    /// Action space of an external controller (`default` or `paper`).
    pub action_space: String,
    /// Time compression K of the run (1 = real time): durations the policy
    /// sees are wall-clock durations times K.
    pub time_scale: f64,
    /// Where it was declared.
    pub source: FarmSource,
}

/// Defaults applied to farm declarations.
#[derive(Debug, Clone, PartialEq)]
pub struct FarmDefaults {
    /// Policy of a farm that names none.
    pub policy: PolicySpec,
    /// Fallback built-in.
    pub fallback: String,
    /// Control interval.
    pub interval: Duration,
    /// Sliding window of the signals.
    pub window: Duration,
    /// Early decisions on a backlog jump.
    pub events: Option<BacklogJump>,
    /// Minimum replicas.
    pub min: u32,
    /// Maximum replicas.
    pub max: u32,
    /// Replicas per function before shards (`None` = no cap).
    pub per_function_cap: Option<u32>,
    /// Largest change per decision (`None` = no limit).
    pub max_step: Option<u32>,
    /// Queueing floor on or off.
    pub queueing_floor: bool,
    /// Time compression K (1 = real time).
    pub time_scale: f64,
}

/// Parses a farms file:
///
/// ```yaml
/// farms:
///   - farm: thumbs
///     function: thumbs-worker
///     policy: onnx:models/default.onnx
///     fallback: reactive-average
///     interval: 8s
///     min: 1
///     max: 32
///     max-step: 4
///     queueing-floor: true
///     per-function-cap: 5
/// ```
pub fn parse_farms_yaml(
    text: &str,
    defaults: &FarmDefaults,
) -> Result<Vec<FarmSpec>, ConfigErrors> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        farms: Vec<BTreeMap<String, serde_yaml::Value>>,
    }
    let file: File = serde_yaml::from_str(text)
        .map_err(|e| ConfigErrors(vec![ConfigError::FarmsFile(e.to_string())]))?;
    let mut errors = Vec::new();
    let mut farms = Vec::new();
    for (i, entry) in file.farms.iter().enumerate() {
        let mut keys = BTreeMap::new();
        for (k, v) in entry {
            let s = match v {
                serde_yaml::Value::String(s) => s.clone(),
                serde_yaml::Value::Number(n) => n.to_string(),
                serde_yaml::Value::Bool(b) => b.to_string(),
                _ => {
                    errors.push(invalid(
                        &format!("farms[{i}].{k}"),
                        &format!("{v:?}"),
                        "a scalar",
                    ));
                    continue;
                }
            };
            keys.insert(k.clone(), s);
        }
        let Some(function) = keys.get("function").cloned() else {
            errors.push(ConfigError::Missing {
                key: format!("farms[{i}].function"),
                hint: "the worker function of the farm",
            });
            continue;
        };
        match farm_from_keys(
            &keys,
            &function,
            &BTreeMap::new(),
            defaults,
            FarmSource::File,
            &format!("farms[{i}]."),
        ) {
            Ok(f) => farms.push(f),
            Err(e) => errors.extend(e),
        }
    }
    let mut seen = std::collections::HashSet::new();
    for f in &farms {
        if !seen.insert(f.farm.clone()) {
            errors.push(ConfigError::Conflict(format!(
                "farm {:?} is declared twice",
                f.farm
            )));
        }
    }
    if errors.is_empty() {
        Ok(farms)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The farm declared by a function's annotations, `None` when it declares
/// none (or is a shard gateway-ext created).
pub fn farm_from_function(
    function: &str,
    annotations: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
    defaults: &FarmDefaults,
) -> Option<Result<FarmSpec, Vec<ConfigError>>> {
    if annotations.contains_key(SHARD_OF_ANNOTATION) || is_companion(labels) {
        return None;
    }
    let keys: BTreeMap<String, String> = annotations
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(ANNOTATION_PREFIX)?.to_owned(), v.clone())))
        .collect();
    keys.contains_key("farm").then(|| {
        farm_from_keys(
            &keys,
            function,
            labels,
            defaults,
            FarmSource::Annotations,
            ANNOTATION_PREFIX,
        )
    })
}

/// Whether the role label makes a function something other than a worker.
fn is_companion(labels: &BTreeMap<String, String>) -> bool {
    labels.get(ROLE_LABEL).is_some_and(|r| r.trim() != "worker")
}

/// The farm whose decision an alert for a companion function drives: a
/// function labelled with a role other than `worker` (the emitter, which
/// receives the HTTP load the OpenFaaS CE alert measures) and annotated
/// with [`FARM_ANNOTATION`]. `None` for workers and unannotated functions.
pub fn alert_farm(
    annotations: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> Option<String> {
    if !is_companion(labels) {
        return None;
    }
    annotations
        .get(FARM_ANNOTATION)
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
}

/// `value` parsed, or `default` when absent; a value that does not parse
/// is reported as `key` expecting `expected`, and the default stands.
fn or_default<T>(
    errors: &mut Vec<ConfigError>,
    key: &str,
    value: Option<&str>,
    default: T,
    parse: impl Fn(&str) -> Option<T>,
    expected: &str,
) -> T {
    match value {
        None => default,
        Some(v) => parse(v).unwrap_or_else(|| {
            errors.push(invalid(key, v, expected));
            default
        }),
    }
}

pub(super) fn farm_from_keys(
    keys: &BTreeMap<String, String>,
    function: &str,
    labels: &BTreeMap<String, String>,
    d: &FarmDefaults,
    source: FarmSource,
    prefix: &str,
) -> Result<FarmSpec, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let k = |name: &str| format!("{prefix}{name}");
    let get = |name: &str| keys.get(name).map(|s| s.trim()).filter(|s| !s.is_empty());
    const KNOWN: &[&str] = &[
        "farm",
        "function",
        "policy",
        "fallback",
        "interval",
        "window",
        "events",
        "min",
        "max",
        "max-step",
        "queueing-floor",
        "per-function-cap",
        "action-space",
        "time-scale",
    ];
    for key in keys.keys() {
        if !KNOWN.contains(&key.as_str()) {
            errors.push(invalid(
                &k(key),
                &keys[key],
                &format!("a known key ({})", KNOWN.join(", ")),
            ));
        }
    }
    let farm = get("farm").unwrap_or_default().to_owned();
    if let Err(e) = farm_runtime::names::FarmNames::new(&farm) {
        errors.push(invalid(&k("farm"), &farm, &e.to_string()));
    }
    let policy = match get("policy") {
        None => d.policy.clone(),
        Some(v) => parse_policy(&k("policy"), v).unwrap_or_else(|e| {
            errors.push(e);
            d.policy.clone()
        }),
    };
    let fallback = match get("fallback") {
        None => d.fallback.clone(),
        Some(v) => {
            if let Err(e) = check_builtin(&k("fallback"), v) {
                errors.push(e);
            }
            v.to_owned()
        }
    };
    let mut num = |name: &str, label: Option<&str>, default: u32| -> u32 {
        let (key, v) = match (get(name), label.and_then(|l| labels.get(l))) {
            (Some(v), _) => (k(name), v.to_owned()),
            (None, Some(v)) => (label.unwrap_or_default().to_owned(), v.trim().to_owned()),
            (None, None) => return default,
        };
        v.parse().unwrap_or_else(|_| {
            errors.push(invalid(&key, &v, "a non-negative integer"));
            default
        })
    };
    let min = num("min", Some(LABEL_SCALE_MIN), d.min);
    let max = num("max", Some(LABEL_SCALE_MAX), d.max);
    let max_step = or_default(
        &mut errors,
        &k("max-step"),
        get("max-step"),
        d.max_step,
        nonzero_cap,
        "an integer (0 = no limit)",
    );
    let per_function_cap = or_default(
        &mut errors,
        &k("per-function-cap"),
        get("per-function-cap"),
        d.per_function_cap,
        nonzero_cap,
        "an integer (0 = no cap)",
    );
    let interval = or_default(
        &mut errors,
        &k("interval"),
        get("interval"),
        d.interval,
        positive_duration,
        "a duration such as 8s",
    );
    let window = or_default(
        &mut errors,
        &k("window"),
        get("window"),
        d.window,
        parse_duration,
        "a duration such as 8s (0s: the interval)",
    );
    let events = match get("events") {
        None => d.events,
        Some(v) => parse_events(&k("events"), v).unwrap_or_else(|e| {
            errors.push(e);
            d.events
        }),
    };
    let queueing_floor = or_default(
        &mut errors,
        &k("queueing-floor"),
        get("queueing-floor"),
        d.queueing_floor,
        parse_bool,
        "true or false",
    );
    let time_scale = or_default(
        &mut errors,
        &k("time-scale"),
        get("time-scale"),
        d.time_scale,
        self::time_scale,
        TIME_SCALE_EXPECTED,
    );
    let action_space = get("action-space").unwrap_or("default").to_owned();
    if !matches!(action_space.as_str(), "default" | "paper") {
        errors.push(invalid(
            &k("action-space"),
            &action_space,
            "default or paper",
        ));
    }
    if max == 0 {
        errors.push(invalid(&k("max"), "0", "an integer >= 1"));
    }
    if min > max {
        errors.push(ConfigError::Conflict(format!(
            "farm {farm:?}: min ({min}) is larger than max ({max})"
        )));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(FarmSpec {
        farm,
        function: function.to_owned(),
        policy,
        fallback,
        interval,
        window,
        events,
        min,
        max,
        max_step,
        queueing_floor,
        per_function_cap,
        action_space,
        time_scale,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::defaults;

    #[test]
    fn companions_route_alerts_and_never_declare_farms() {
        let m = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let ann = m(&[(FARM_ANNOTATION, "demo")]);
        let d = defaults();
        for role in ["emitter", "collector"] {
            let labels = m(&[(ROLE_LABEL, role)]);
            assert!(
                farm_from_function("f", &ann, &labels, &d).is_none(),
                "{role}"
            );
            assert_eq!(alert_farm(&ann, &labels).as_deref(), Some("demo"), "{role}");
        }
        let worker = m(&[(ROLE_LABEL, "worker")]);
        assert!(farm_from_function("w", &ann, &worker, &d).is_some());
        assert_eq!(alert_farm(&ann, &worker), None);
        assert_eq!(
            alert_farm(&ann, &BTreeMap::new()),
            None,
            "no role: a worker"
        );
        assert_eq!(
            alert_farm(&BTreeMap::new(), &m(&[(ROLE_LABEL, "emitter")])),
            None
        );
    }

    #[test]
    fn annotations_declare_a_farm_and_labels_bound_it() {
        let ann: BTreeMap<_, _> = [
            ("com.rust-farm.farm", "demo"),
            ("com.rust-farm.policy", "external"),
            ("com.rust-farm.interval", "2s"),
            ("com.rust-farm.max-step", "3"),
            ("other", "x"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let labels: BTreeMap<_, _> = [
            (LABEL_SCALE_MIN.to_owned(), "2".to_owned()),
            (LABEL_SCALE_MAX.to_owned(), "5".to_owned()),
        ]
        .into_iter()
        .collect();
        let f = farm_from_function("demo-worker", &ann, &labels, &defaults())
            .unwrap()
            .unwrap();
        assert_eq!(f.farm, "demo");
        assert_eq!(f.function, "demo-worker");
        assert_eq!(f.policy, PolicySpec::External);
        assert_eq!(f.interval, Duration::from_secs(2));
        assert_eq!((f.min, f.max, f.max_step), (2, 5, Some(3)));
        assert_eq!(f.source, FarmSource::Annotations);
    }

    #[test]
    fn functions_without_farm_or_shards_are_not_farms() {
        let d = defaults();
        assert!(farm_from_function("f", &BTreeMap::new(), &BTreeMap::new(), &d).is_none());
        let shard: BTreeMap<_, _> = [
            ("com.rust-farm.farm".to_owned(), "demo".to_owned()),
            (SHARD_OF_ANNOTATION.to_owned(), "w".to_owned()),
        ]
        .into_iter()
        .collect();
        assert!(farm_from_function("w-shard-1", &shard, &BTreeMap::new(), &d).is_none());
    }

    #[test]
    fn bad_annotations_are_all_reported() {
        let ann: BTreeMap<_, _> = [
            ("com.rust-farm.farm", "Bad_Name"),
            ("com.rust-farm.interval", "soon"),
            ("com.rust-farm.typo", "1"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let errs = farm_from_function("w", &ann, &BTreeMap::new(), &defaults())
            .unwrap()
            .unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
    }

    #[test]
    fn farms_file_parses_and_rejects_duplicates() {
        let d = defaults();
        let farms = parse_farms_yaml(
            "farms:\n  - {farm: a, function: a-worker, min: 2, max: 9, per-function-cap: 5}\n  - {farm: b, function: b-worker, policy: external}\n",
            &d,
        )
        .unwrap();
        assert_eq!(farms.len(), 2);
        assert_eq!(
            (farms[0].min, farms[0].max, farms[0].per_function_cap),
            (2, 9, Some(5))
        );
        assert_eq!(farms[0].source, FarmSource::File);
        let dup = parse_farms_yaml(
            "farms:\n  - {farm: a, function: x}\n  - {farm: a, function: y}\n  - {farm: c}\n",
            &d,
        )
        .unwrap_err();
        assert_eq!(dup.0.len(), 2, "{dup}");
    }
}
