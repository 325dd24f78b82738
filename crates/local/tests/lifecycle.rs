//! Replica lifecycle with real processes: exact counts through scale
//! 1 -> 5 -> 0 -> 2, SIGTERM drain observed, SIGKILL after the grace period,
//! and restart with backoff after a crash.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{TestProvider, fixture};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn env(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Instances that logged `word` (the fixture logs "listening", "draining",
/// "drained").
async fn instances_saying(p: &TestProvider, name: &str, word: &str) -> BTreeSet<String> {
    p.log_lines(name)
        .await
        .into_iter()
        .filter(|l| l.text.contains(word))
        .map(|l| l.instance)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_1_5_0_2_counts_exact_and_drain_observed() {
    let p = TestProvider::start(|_, _| {}).await;
    let mut d = fixture("w");
    // Each replica takes 300 ms to drain after SIGTERM.
    d.env_vars = env(&[("FIXTURE_DRAIN_MS", "300")]);
    assert_eq!(p.deploy(&d).await.status(), 202);
    p.wait_counts("w", 1, 1).await;

    assert_eq!(p.scale("w", 5).await, 202);
    // Right after the call all five exist, whether or not they are up yet.
    assert_eq!(p.status("w").await.replicas, 5);
    p.wait_counts("w", 5, 5).await;
    let started = instances_saying(&p, "w", "listening").await;
    assert_eq!(started.len(), 5);

    assert_eq!(p.scale("w", 0).await, 202);
    // Draining replicas no longer count: they are not part of the function.
    let s = p.status("w").await;
    assert_eq!((s.replicas, s.available_replicas), (0, 0));
    // Every one of the five drains and exits on its own (no SIGKILL within
    // the 5 s grace): each logs "drained".
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let drained = instances_saying(&p, "w", "drained").await;
        if drained == started {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "drained {drained:?} of {started:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Invocations are not routed to a zero-replica function's draining
    // replicas; counts stay exact at zero.
    let s = p.status("w").await;
    assert_eq!((s.replicas, s.available_replicas), (0, 0));

    assert_eq!(p.scale("w", 2).await, 202);
    assert_eq!(p.status("w").await.replicas, 2);
    p.wait_counts("w", 2, 2).await;
    let now_started = instances_saying(&p, "w", "listening").await;
    assert_eq!(now_started.len(), 7, "two new instances: {now_started:?}");
    // Stable: nothing else starts or stops.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = p.status("w").await;
    assert_eq!((s.replicas, s.available_replicas), (2, 2));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_stops_newest_and_unready_first() {
    let p = TestProvider::start(|_, _| {}).await;
    assert_eq!(p.deploy(&fixture("n")).await.status(), 202);
    p.wait_counts("n", 1, 1).await;
    let first = instances_saying(&p, "n", "listening").await;
    assert_eq!(p.scale("n", 3).await, 202);
    p.wait_counts("n", 3, 3).await;
    assert_eq!(p.scale("n", 1).await, 202);
    p.wait_counts("n", 1, 1).await;
    // The oldest replica survives; the two newer ones were stopped.
    let r = p
        .http
        .post(p.url("/function/n"))
        .body("x")
        .send()
        .await
        .unwrap();
    let serving = r.headers()["x-instance"].to_str().unwrap().to_string();
    assert!(first.contains(&serving), "{serving} not in {first:?}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_that_ignores_sigterm_is_killed_after_grace() {
    let p = TestProvider::start(|c, _| c.termination_grace = Duration::from_millis(500)).await;
    let mut d = fixture("slow");
    d.env_vars = env(&[("FIXTURE_DRAIN_MS", "60000")]);
    assert_eq!(p.deploy(&d).await.status(), 202);
    p.wait_counts("slow", 1, 1).await;
    let pid: u64 = p
        .get("/function/slow/pid")
        .await
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(p.scale("slow", 0).await, 202);
    // The process is gone well before its 60 s drain would end.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // A zombie still answers kill(0): `alive` reads its state instead.
    while farm_testsupport::alive(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "replica still alive after grace"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        instances_saying(&p, "slow", "draining").await.len() == 1,
        "SIGTERM was sent first"
    );
    assert!(
        instances_saying(&p, "slow", "drained").await.is_empty(),
        "it never finished draining"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_replica_is_restarted_and_availability_dips_then_recovers() {
    let p = TestProvider::start(|c, _| c.restart_backoff = Duration::from_millis(300)).await;
    assert_eq!(p.deploy(&fixture("k")).await.status(), 202);
    assert_eq!(p.scale("k", 3).await, 202);
    p.wait_counts("k", 3, 3).await;

    let pid: i32 = p
        .get("/function/k/pid")
        .await
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    // Dips: the killed replica is not available (it is restarting, so it
    // still counts in `replicas`, as a pod in CrashLoopBackOff does).
    let s = p
        .wait_status("k", Duration::from_secs(10), |s| s.available_replicas == 2)
        .await;
    assert_eq!(s.replicas, 3);
    // Recovers: restarted in place, available again.
    p.wait_counts("k", 3, 3).await;
    let mut pids = BTreeSet::new();
    for _ in 0..6 {
        pids.insert(
            p.get("/function/k/pid")
                .await
                .text()
                .await
                .unwrap()
                .parse::<i32>()
                .unwrap(),
        );
    }
    assert_eq!(pids.len(), 3);
    assert!(
        !pids.contains(&pid),
        "the killed process does not serve any more"
    );
    // Restarted in place: still three instance names, one of them started twice.
    let lines = p.log_lines("k").await;
    let starts: Vec<_> = lines
        .iter()
        .filter(|l| l.text.contains("listening"))
        .map(|l| l.instance.clone())
        .collect();
    assert_eq!(starts.len(), 4);
    assert_eq!(starts.iter().collect::<BTreeSet<_>>().len(), 3);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_that_never_becomes_healthy_is_not_available() {
    // envProcess runs something that never serves the health route and
    // exits at once: it keeps restarting with backoff and is never counted
    // as available.
    let p = TestProvider::start(|_, _| {}).await;
    let mut d = fixture("broken");
    d.env_process = "false".into();
    assert_eq!(p.deploy(&d).await.status(), 202);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = p.status("broken").await;
    assert_eq!((s.replicas, s.available_replicas), (1, 0));
    // An invocation waits (bounded) and then gets 503, not a hang.
    let p2 =
        TestProvider::start(|c, _| c.scale_from_zero_timeout = Duration::from_millis(300)).await;
    assert_eq!(p2.deploy(&d).await.status(), 202);
    let r = p2
        .http
        .post(p2.url("/function/broken"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    p.shutdown().await;
    p2.shutdown().await;
}

/// A provider whose every replica waits `delay` before it is started.
async fn with_start_delay(delay: Duration) -> TestProvider {
    TestProvider::start(move |c, _| {
        c.start_delay = farm_local::StartDelay::Fixed(delay);
    })
    .await
}

/// The provider's record of the replica starts of `name`.
async fn replica_starts(p: &TestProvider, name: &str) -> Vec<farm_local::ReplicaStart> {
    p.get(&format!("/system/function/{name}/starts"))
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulated_start_delay_holds_replicas_unavailable() {
    let p = with_start_delay(Duration::from_millis(800)).await;
    assert_eq!(p.deploy(&fixture("d")).await.status(), 202);
    let s = p.status("d").await;
    assert_eq!((s.replicas, s.available_replicas), (1, 0));
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Still pending: nothing spawned, nothing logged.
    assert_eq!(p.status("d").await.available_replicas, 0);
    assert!(instances_saying(&p, "d", "listening").await.is_empty());
    p.wait_counts("d", 1, 1).await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_starts_report_the_delay_each_replica_had() {
    let p = with_start_delay(Duration::from_millis(300)).await;
    assert_eq!(p.deploy(&fixture("s")).await.status(), 202);
    p.wait_counts("s", 1, 1).await;
    assert_eq!(p.scale("s", 3).await, 202);
    // Right after the scale call the new replicas are recorded but not yet
    // available (they wait the emulated delay).
    let starts = replica_starts(&p, "s").await;
    assert_eq!(starts.len(), 3, "{starts:?}");
    assert!(starts[1..].iter().all(|s| s.available_after_s.is_none()));
    p.wait_counts("s", 3, 3).await;
    let starts = replica_starts(&p, "s").await;
    assert_eq!(starts.len(), 3, "{starts:?}");
    for s in &starts {
        assert!((s.emulated_delay_s - 0.3).abs() < 1e-9, "{s:?}");
        let after = s.available_after_s.expect("available");
        // Emulated delay + the real process start: never less than the delay.
        assert!(after >= 0.3, "{s:?}");
    }
    // In creation order, instance names distinct.
    assert!(
        starts
            .windows(2)
            .all(|w| w[0].requested_us <= w[1].requested_us)
    );
    let names: BTreeSet<&str> = starts.iter().map(|s| s.instance.as_str()).collect();
    assert_eq!(names.len(), 3);
    assert_eq!(p.get("/system/function/nope/starts").await.status(), 404);
    p.shutdown().await;
}
