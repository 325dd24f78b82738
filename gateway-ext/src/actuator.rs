//! The actuator: turns a desired replica count for a farm into provider
//! calls, spreading it over shard functions where the platform caps replicas
//! per function.
//!
//! Shard 0 is the worker function itself; shard `k >= 1` is the function
//! `<worker>-shard-<k>`, a clone of the worker's `FunctionStatus` (image,
//! fprocess, env, labels, annotations, secrets, constraints, limits,
//! requests) marked with the `com.rust-farm.shard-of` annotation. Because it
//! has the same environment it binds the same farm and the same JetStream
//! consumer, so a shard's replicas are simply more workers.
//!
//! Every call is idempotent (scale to a count, create-if-missing,
//! delete-if-present) and retried with doubling backoff; a failure is
//! returned to the loop, which records it and tries again next tick.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::config::SHARD_OF_ANNOTATION;
use crate::provider::{Provider, ProviderError};
use crate::types::{FunctionDeployment, FunctionStatus};

/// Name of shard `k` (k >= 1) of `worker`.
pub fn shard_name(worker: &str, k: usize) -> String {
    format!("{worker}-shard-{k}")
}

/// Replicas per shard for `total` replicas with at most `cap` per function:
/// as few functions as possible, counts as even as possible, larger first.
/// Always at least one entry (the worker itself, possibly at 0).
pub fn plan(total: u32, cap: Option<u32>) -> Vec<u32> {
    let cap = match cap {
        Some(c) if c > 0 => c,
        _ => return vec![total],
    };
    let n = total.div_ceil(cap).max(1);
    (0..n)
        .map(|i| total / n + u32::from(i < total % n))
        .collect()
}

/// The deployment of shard `k` cloned from the worker's status.
pub fn shard_deployment(worker: &FunctionStatus, k: usize) -> FunctionDeployment {
    let mut annotations = worker.annotations.clone();
    annotations.insert(SHARD_OF_ANNOTATION.to_owned(), worker.name.clone());
    FunctionDeployment {
        service: shard_name(&worker.name, k),
        image: worker.image.clone(),
        namespace: worker.namespace.clone(),
        env_process: worker.env_process.clone(),
        env_vars: worker.env_vars.clone(),
        constraints: worker.constraints.clone(),
        secrets: worker.secrets.clone(),
        labels: worker.labels.clone(),
        annotations,
        limits: worker.limits.clone(),
        requests: worker.requests.clone(),
        read_only_root_filesystem: worker.read_only_root_filesystem,
    }
}

/// Replica counts of a farm over all its shards.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FarmReplicas {
    /// Sum of `replicas` (starting + ready).
    pub replicas: u32,
    /// Sum of `availableReplicas`.
    pub available: u32,
    /// Per function name: (replicas, available), worker first.
    pub per_function: BTreeMap<String, (u32, u32)>,
    /// The worker's status, the template of new shards.
    pub worker: Option<FunctionStatus>,
    /// Shard indices (>= 1) that currently exist.
    pub shards: Vec<usize>,
}

fn to_u32(x: u64) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

/// Retry policy of provider calls.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Retries after the first attempt.
    pub retries: u32,
    /// First delay; doubles each retry.
    pub backoff: Duration,
}

/// Runs `f` until it succeeds, fails with a non-retryable error, or the
/// retries are used up.
pub async fn with_retry<T, F, Fut>(retry: Retry, what: &str, mut f: F) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProviderError>>,
{
    let mut delay = retry.backoff;
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && attempt < retry.retries => {
                attempt += 1;
                debug!(what, attempt, error = %e, retry_in = ?delay, "provider call failed; retrying");
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads the replicas of `worker` and of its existing shards. Shards are
/// found in `listing` (from `GET /system/functions`) when given, else probed
/// one by one from 1 upwards until one is missing.
pub async fn read_replicas(
    provider: &dyn Provider,
    retry: Retry,
    worker: &str,
    listing: Option<&[FunctionStatus]>,
) -> Result<FarmReplicas, ProviderError> {
    let mut out = FarmReplicas::default();
    let statuses: Vec<FunctionStatus> = match listing {
        Some(list) => list
            .iter()
            .filter(|f| f.name == worker || shard_index(worker, &f.name).is_some())
            .cloned()
            .collect(),
        None => {
            let mut v = Vec::new();
            if let Some(w) = with_retry(retry, "get worker", || provider.get(worker)).await? {
                v.push(w);
            }
            let mut k = 1;
            loop {
                let name = shard_name(worker, k);
                match with_retry(retry, "get shard", || provider.get(&name)).await? {
                    Some(s) => v.push(s),
                    None => break,
                }
                k += 1;
            }
            v
        }
    };
    for f in statuses {
        out.replicas = out.replicas.saturating_add(to_u32(f.replicas));
        out.available = out.available.saturating_add(to_u32(f.available_replicas));
        out.per_function.insert(
            f.name.clone(),
            (to_u32(f.replicas), to_u32(f.available_replicas)),
        );
        if f.name == worker {
            out.worker = Some(f);
        } else if let Some(k) = shard_index(worker, &f.name) {
            out.shards.push(k);
        }
    }
    out.shards.sort_unstable();
    Ok(out)
}

/// The shard index of `name` if it is a shard of `worker`.
pub fn shard_index(worker: &str, name: &str) -> Option<usize> {
    name.strip_prefix(worker)?
        .strip_prefix("-shard-")?
        .parse()
        .ok()
        .filter(|k| *k >= 1)
}

/// Applies `total` replicas to the farm of `worker`: scales the worker and
/// its shards to [`plan`], creates missing shards, removes shards no longer
/// needed. Returns the per-function counts asked for.
pub async fn apply(
    provider: &dyn Provider,
    retry: Retry,
    current: &FarmReplicas,
    total: u32,
    cap: Option<u32>,
) -> Result<Vec<(String, u32)>, ProviderError> {
    let Some(worker) = &current.worker else {
        return Err(ProviderError::Status {
            method: "GET".into(),
            url: "/system/function/<worker>".into(),
            status: 404,
            body: "the worker function does not exist".into(),
        });
    };
    let counts = plan(total, cap);
    let mut asked = Vec::with_capacity(counts.len());
    // Grow first (create, then scale), so capacity never dips while shards move.
    for (k, &n) in counts.iter().enumerate() {
        let name = if k == 0 {
            worker.name.clone()
        } else {
            shard_name(&worker.name, k)
        };
        if k > 0 && !current.shards.contains(&k) {
            let dep = shard_deployment(worker, k);
            info!(shard = %name, "creating shard function");
            with_retry(retry, "deploy shard", || provider.deploy(&dep)).await?;
        }
        let have = current.per_function.get(&name).map(|(r, _)| *r);
        if have != Some(n) {
            with_retry(retry, "scale", || provider.scale(&name, n)).await?;
        }
        asked.push((name, n));
    }
    // Highest first: shards are found by probing 1, 2, ... until one is
    // missing, so a failure half-way must never leave a gap below a survivor.
    for &k in current.shards.iter().rev().filter(|k| **k >= counts.len()) {
        let name = shard_name(&worker.name, k);
        info!(shard = %name, "removing shard function");
        // Scale to zero first so its replicas drain; then delete the function.
        if let Err(e) = with_retry(retry, "scale shard down", || provider.scale(&name, 0)).await {
            warn!(shard = %name, error = %e, "could not scale the shard down before deleting it");
        }
        with_retry(retry, "delete shard", || provider.delete(&name)).await?;
    }
    Ok(asked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::MemProvider;

    const RETRY: Retry = Retry {
        retries: 2,
        backoff: Duration::from_millis(1),
    };

    #[test]
    fn plans_even_shards() {
        assert_eq!(plan(5, Some(2)), vec![2, 2, 1]);
        assert_eq!(plan(5, None), vec![5]);
        assert_eq!(plan(0, Some(5)), vec![0]);
        assert_eq!(plan(10, Some(5)), vec![5, 5]);
        assert_eq!(plan(11, Some(5)), vec![4, 4, 3]);
        for total in 0..40 {
            let p = plan(total, Some(3));
            assert_eq!(p.iter().sum::<u32>(), total);
            assert!(p.iter().all(|n| *n <= 3));
            assert_eq!(p.len() as u32, total.div_ceil(3).max(1));
        }
    }

    #[test]
    fn shard_names_round_trip() {
        assert_eq!(shard_index("w", &shard_name("w", 3)), Some(3));
        assert_eq!(shard_index("w", "w"), None);
        assert_eq!(shard_index("w", "w-shard-0"), None);
        assert_eq!(shard_index("w", "wx-shard-1"), None);
    }

    fn worker() -> FunctionStatus {
        FunctionStatus {
            name: "w".into(),
            image: "img:1".into(),
            env_process: "run".into(),
            env_vars: [("FARM_NAME".to_owned(), "demo".to_owned())]
                .into_iter()
                .collect(),
            secrets: vec!["s".into()],
            annotations: [("com.rust-farm.farm".to_owned(), "demo".to_owned())]
                .into_iter()
                .collect(),
            replicas: 1,
            available_replicas: 1,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn shards_grow_and_shrink() {
        let p = MemProvider::new();
        p.insert(worker());
        let cur = read_replicas(&p, RETRY, "w", None).await.unwrap();
        apply(&p, RETRY, &cur, 5, Some(2)).await.unwrap();
        assert_eq!(p.names(), vec!["w", "w-shard-1", "w-shard-2"]);
        let cur = read_replicas(&p, RETRY, "w", None).await.unwrap();
        assert_eq!((cur.replicas, cur.shards.clone()), (5, vec![1, 2]));
        let s1 = p.function("w-shard-1").unwrap();
        assert_eq!(s1.image, "img:1");
        assert_eq!(s1.env_vars["FARM_NAME"], "demo");
        assert_eq!(s1.secrets, vec!["s"]);
        assert_eq!(s1.annotations[SHARD_OF_ANNOTATION], "w");
        // Idempotent: the same total again makes no call.
        let before = p.calls().len();
        apply(&p, RETRY, &cur, 5, Some(2)).await.unwrap();
        assert_eq!(p.calls().len(), before);
        apply(&p, RETRY, &cur, 1, Some(2)).await.unwrap();
        assert_eq!(p.names(), vec!["w"]);
        let deletes: Vec<String> = p
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("delete"))
            .collect();
        assert_eq!(
            deletes,
            vec!["delete w-shard-2", "delete w-shard-1"],
            "highest shard first"
        );
        assert_eq!(p.function("w").unwrap().replicas, 1);
    }

    #[tokio::test]
    async fn errors_are_returned_after_retries() {
        let p = MemProvider::new();
        p.insert(worker());
        let cur = read_replicas(&p, RETRY, "w", None).await.unwrap();
        p.set_down(true);
        let e = apply(&p, RETRY, &cur, 3, None).await.unwrap_err();
        assert!(matches!(e, ProviderError::Unavailable(_)));
        p.set_down(false);
        apply(&p, RETRY, &cur, 3, None).await.unwrap();
        assert_eq!(p.function("w").unwrap().replicas, 3);
    }

    #[tokio::test]
    async fn missing_worker_is_an_error() {
        let p = MemProvider::new();
        let cur = read_replicas(&p, RETRY, "w", None).await.unwrap();
        assert!(cur.worker.is_none());
        assert!(apply(&p, RETRY, &cur, 3, None).await.is_err());
    }
}
