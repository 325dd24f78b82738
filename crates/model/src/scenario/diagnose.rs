//! Field paths for parse errors.
//!
//! serde buffers internally tagged enums (`kind:` / `shape:` maps) before
//! choosing a variant, and the error it then reports has no path. To name
//! the field anyway, a failed parse is retried piece by piece, from the
//! deepest pieces up, and the first piece that fails gives the path.

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::{
    Arrivals, Clip, DeadlineRule, Dist, Phase, Platform, Scenario, ScenarioError, ServiceTime,
};

impl From<serde_yaml::Error> for ScenarioError {
    fn from(e: serde_yaml::Error) -> Self {
        parse_error("", &e.to_string())
    }
}

/// Build a [`ScenarioError::Parse`] for `path`, moving a path prefix that
/// serde put in the message (`max_replicas: invalid type ...`) or the name in
/// `missing field `x`` into the field path.
fn parse_error(path: &str, message: &str) -> ScenarioError {
    let join = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else if b.starts_with('[') {
            format!("{a}{b}")
        } else {
            format!("{a}.{b}")
        }
    };
    let mut field = path.to_string();
    let mut msg = message.to_string();
    if let Some((prefix, rest)) = message.split_once(": ") {
        let is_path = !prefix.is_empty()
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._[]-".contains(c));
        if is_path {
            field = join(path, prefix);
            msg = rest.to_string();
        }
    }
    for lead in ["missing field `", "unknown field `"] {
        if let Some(name) = msg.strip_prefix(lead).and_then(|r| r.split('`').next()) {
            field = join(&field, name);
        }
    }
    ScenarioError::Parse {
        field,
        message: msg,
    }
}

/// Parse `v` as `T`; on failure, the error with the most precise path.
/// `tag` names the key that selects the variant of a tagged enum.
fn try_as<T: DeserializeOwned>(v: &Value, path: &str, tag: Option<&str>) -> Option<ScenarioError> {
    let err = serde_yaml::from_value::<T>(v.clone()).err()?.to_string();
    let sep = if path.is_empty() { "" } else { "." };
    if let Some(tag) = tag
        && (err.starts_with("unknown variant")
            || err.starts_with(&format!("missing field `{tag}`")))
    {
        return Some(ScenarioError::Parse {
            field: format!("{path}{sep}{tag}"),
            message: err,
        });
    }
    // A wrong type or value inside a map comes without the key; find the key
    // whose removal turns the error into "missing field" (or makes the map
    // parse, for a defaulted field).
    if err.starts_with("invalid ")
        && let Value::Mapping(map) = v
    {
        for key in map.keys() {
            let Some(name) = key.as_str() else { continue };
            if Some(name) == tag {
                continue;
            }
            let mut without = map.clone();
            without.remove(key);
            let culprit = match serde_yaml::from_value::<T>(Value::Mapping(without)) {
                Ok(_) => true,
                Err(e) => e
                    .to_string()
                    .starts_with(&format!("missing field `{name}`")),
            };
            if culprit {
                return Some(parse_error(&format!("{path}{sep}{name}"), &err));
            }
        }
    }
    Some(parse_error(path, &err))
}

/// The most precise parse error in `root`, or `None` when every piece parses.
pub(super) fn locate(root: &Value) -> Option<ScenarioError> {
    if let Some(arr) = root.get("arrivals") {
        if let Some(Value::Sequence(items)) = arr.get("phases") {
            for (i, item) in items.iter().enumerate() {
                if let Some(e) =
                    try_as::<Phase>(item, &format!("arrivals.phases[{i}]"), Some("shape"))
                {
                    return Some(e);
                }
            }
        }
        if let Some(e) = try_as::<Arrivals>(arr, "arrivals", Some("kind")) {
            return Some(e);
        }
    }
    if let Some(svc) = root.get("service") {
        if let Some(d) = svc.get("dist")
            && let Some(e) = try_as::<Dist>(d, "service.dist", Some("kind"))
        {
            return Some(e);
        }
        if let Some(c) = svc.get("clip")
            && let Some(e) = try_as::<Clip>(c, "service.clip", None)
        {
            return Some(e);
        }
        if let Some(e) = try_as::<ServiceTime>(svc, "service", None) {
            return Some(e);
        }
    }
    if let Some(d) = root.get("deadline")
        && let Some(e) = try_as::<DeadlineRule>(d, "deadline", Some("kind"))
    {
        return Some(e);
    }
    if let Some(p) = root.get("platform") {
        for key in ["startup_delay", "scale_down_delay"] {
            if let Some(d) = p.get(key)
                && let Some(e) = try_as::<Dist>(d, &format!("platform.{key}"), Some("kind"))
            {
                return Some(e);
            }
        }
        if let Some(e) = try_as::<Platform>(p, "platform", None) {
            return Some(e);
        }
    }
    try_as::<Scenario>(root, "", None)
}
