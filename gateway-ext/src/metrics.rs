//! Prometheus metrics in the text exposition format, kept in a small
//! in-process registry (counters, gauges, histograms with labels).
//!
//! Besides gateway-ext's own series (`gateway_ext_*`), the proxy records
//! the gateway's `gateway_function_invocation_total{function_name,code}` and
//! `gateway_functions_seconds{function_name,code}` for the `/function/*`
//! requests it forwards, so the OpenFaaS CE alert rule can be evaluated
//! against gateway-ext by a real Prometheus.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Buckets of the inference latency histogram, seconds.
pub const INFERENCE_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_02, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.01, 0.05,
];
/// Buckets of `gateway_functions_seconds` (Prometheus client defaults, as the gateway).
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Metric descriptions: name, type, help.
const DESCRIPTIONS: &[(&str, &str, &str)] = &[
    (
        "gateway_ext_decisions_total",
        "counter",
        "Decisions taken, by farm, trigger and deciding policy.",
    ),
    (
        "gateway_ext_replicas_desired",
        "gauge",
        "Replicas last asked for, over all shards.",
    ),
    (
        "gateway_ext_replicas_ready",
        "gauge",
        "Ready replicas at the last tick, over all shards.",
    ),
    (
        "gateway_ext_replicas_proposed",
        "gauge",
        "Replicas the policy proposed before the shield.",
    ),
    (
        "gateway_ext_shards",
        "gauge",
        "Functions (worker + shards) the farm currently uses.",
    ),
    (
        "gateway_ext_observation",
        "gauge",
        "Observation features of the last decision.",
    ),
    (
        "gateway_ext_inference_seconds",
        "histogram",
        "ONNX inference latency, including the hop off the reactor.",
    ),
    (
        "gateway_ext_errors_total",
        "counter",
        "Errors by farm and kind (provider, jetstream, inference, alert).",
    ),
    (
        "gateway_ext_shield_total",
        "counter",
        "Shield interventions by farm and reason.",
    ),
    (
        "gateway_ext_policy_fallback",
        "gauge",
        "1 while the farm's fallback policy decides instead of the configured one.",
    ),
    (
        "gateway_ext_farm_function",
        "gauge",
        "1 for every function of a farm at the last discovery, by farm and role (worker, emitter, collector): the alert rule for farm load selects emitters with it.",
    ),
    (
        "gateway_function_invocation_total",
        "counter",
        "Function invocations proxied, by function and status code.",
    ),
    (
        "gateway_functions_seconds",
        "histogram",
        "Duration of proxied function invocations, seconds.",
    ),
];

type Key = (&'static str, String);

struct Histogram {
    buckets: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Inner {
    scalars: BTreeMap<Key, f64>,
    histograms: BTreeMap<Key, Histogram>,
}

/// The registry.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders labels as `{a="x",b="y"}` (empty string for none).
pub fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds `by` to a counter.
    pub fn inc(&self, name: &'static str, l: &[(&str, &str)], by: f64) {
        *self.lock().scalars.entry((name, labels(l))).or_insert(0.0) += by;
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, l: &[(&str, &str)], v: f64) {
        self.lock().scalars.insert((name, labels(l)), v);
    }

    /// Observes a value in a histogram.
    pub fn observe(&self, name: &'static str, l: &[(&str, &str)], buckets: &'static [f64], v: f64) {
        let mut g = self.lock();
        let h = g
            .histograms
            .entry((name, labels(l)))
            .or_insert_with(|| Histogram {
                buckets,
                counts: vec![0; buckets.len()],
                sum: 0.0,
                count: 0,
            });
        for (i, b) in h.buckets.iter().enumerate() {
            if v <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += v;
        h.count += 1;
    }

    /// Current value of a counter or gauge (tests and status).
    pub fn value(&self, name: &'static str, l: &[(&str, &str)]) -> Option<f64> {
        self.lock().scalars.get(&(name, labels(l))).copied()
    }

    /// Replaces every series of `name` by `series`, each set to `v` (an
    /// info-style gauge recomputed as a whole, so stale series disappear).
    pub fn replace_all(&self, name: &'static str, series: &[Vec<(&str, &str)>], v: f64) {
        let mut g = self.lock();
        g.scalars.retain(|(n, _), _| *n != name);
        for l in series {
            g.scalars.insert((name, labels(l)), v);
        }
    }

    /// Removes every series of `name` whose labels contain `farm="<farm>"`
    /// (a farm that is no longer managed).
    pub fn forget_farm(&self, farm: &str) {
        let needle = format!("farm=\"{}\"", escape(farm));
        let mut g = self.lock();
        g.scalars.retain(|(_, l), _| !l.contains(&needle));
        g.histograms.retain(|(_, l), _| !l.contains(&needle));
    }

    /// The text exposition of every series.
    pub fn render(&self) -> String {
        let g = self.lock();
        let mut out = String::new();
        for (name, kind, help) in DESCRIPTIONS {
            let scalars: Vec<_> = g.scalars.iter().filter(|((n, _), _)| n == name).collect();
            let hists: Vec<_> = g
                .histograms
                .iter()
                .filter(|((n, _), _)| n == name)
                .collect();
            if scalars.is_empty() && hists.is_empty() {
                continue;
            }
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for ((_, l), v) in scalars {
                let _ = writeln!(out, "{name}{l} {v}");
            }
            for ((_, l), h) in hists {
                let inner = l.trim_start_matches('{').trim_end_matches('}');
                let sep = if inner.is_empty() { "" } else { "," };
                for (b, c) in h.buckets.iter().zip(&h.counts) {
                    let _ = writeln!(out, "{name}_bucket{{{inner}{sep}le=\"{b}\"}} {c}");
                }
                let _ = writeln!(out, "{name}_bucket{{{inner}{sep}le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "{name}_sum{l} {}", h.sum);
                let _ = writeln!(out, "{name}_count{l} {}", h.count);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let m = Metrics::default();
        m.inc(
            "gateway_function_invocation_total",
            &[("function_name", "f"), ("code", "200")],
            1.0,
        );
        m.inc(
            "gateway_function_invocation_total",
            &[("function_name", "f"), ("code", "200")],
            1.0,
        );
        m.set("gateway_ext_replicas_desired", &[("farm", "a\"b")], 3.0);
        m.observe(
            "gateway_functions_seconds",
            &[("function_name", "f"), ("code", "200")],
            DEFAULT_BUCKETS,
            0.02,
        );
        let text = m.render();
        assert!(
            text.contains(
                "gateway_function_invocation_total{function_name=\"f\",code=\"200\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains("gateway_ext_replicas_desired{farm=\"a\\\"b\"} 3\n"));
        assert!(text.contains(
            "gateway_functions_seconds_bucket{function_name=\"f\",code=\"200\",le=\"0.01\"} 0\n"
        ));
        assert!(text.contains(
            "gateway_functions_seconds_bucket{function_name=\"f\",code=\"200\",le=\"0.025\"} 1\n"
        ));
        assert!(
            text.contains("gateway_functions_seconds_count{function_name=\"f\",code=\"200\"} 1\n")
        );
        assert!(text.contains("# TYPE gateway_functions_seconds histogram\n"));
        m.forget_farm("a\"b");
        assert!(!m.render().contains("gateway_ext_replicas_desired"));
    }
}
