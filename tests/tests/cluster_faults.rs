//! The farm (emitter, 3 sleep workers, collector as processes) on a real
//! 3-node JetStream cluster with R3 streams (`FARM_STREAM_REPLICAS` unset),
//! `NATS_URL` the comma list of the three servers, while a fault strikes
//! mid-run: the task stream's leader killed, a follower killed, every node
//! restarted with its store, the leader frozen (SIGSTOP) until it loses
//! leadership and then thawed. Every task the emitter accepted is in OUTPUT
//! exactly once, and every one that failed is also in the DLQ with a reason.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use farm_e2e::{Farm, WAIT, ids};
use farm_runtime::proto::Status;
use farm_testsupport::NatsCluster;

const TASKS: usize = 1200;
const BATCH: usize = 20;
/// Gap between two batches: the submission spans about 6 s, so the fault
/// strikes while tasks are arriving, queued, running and being collected.
const PACE: Duration = Duration::from_millis(100);
/// The fault strikes once this many batches were accepted.
const FAULT_AFTER: usize = 15;
/// Bound of an election or of a node's recovery.
const ELECTION: Duration = Duration::from_secs(30);

/// One cluster at a time: four clusters and farms at once would starve a
/// 2-core machine into timeouts that are no fault of the farm's.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillLeader,
    KillFollower,
    RestartAll,
    PauseLeader,
}

/// What the submitter saw: the accepted ids and the count of each answer.
#[derive(Debug, Default)]
struct Submitted {
    accepted: HashSet<String>,
    statuses: BTreeMap<u16, usize>,
}

/// Tasks that sleep 20 ms each, ids `c-{i}`.
fn batch(b: usize) -> String {
    (b * BATCH..(b + 1) * BATCH)
        .map(|i| {
            format!("{{\"id\":\"c-{i}\",\"payload\":{{\"sleep_ms\":20}},\"deadline_ms\":60000}}\n")
        })
        .collect()
}

/// Submits every batch, each until it is accepted whole (re-submitting the
/// same ids is safe: JetStream de-duplicates them); tells `fault` when
/// [`FAULT_AFTER`] batches are in.
async fn submit_all(
    emitter: String,
    fault: tokio::sync::oneshot::Sender<()>,
) -> Result<Submitted, String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| e.to_string())?;
    let mut out = Submitted::default();
    let mut fault = Some(fault);
    let deadline = Instant::now() + WAIT;
    for b in 0..TASKS / BATCH {
        if b == FAULT_AFTER
            && let Some(f) = fault.take()
        {
            let _ = f.send(());
        }
        loop {
            if Instant::now() > deadline {
                return Err(format!(
                    "batch {b} never accepted; answers {:?}",
                    out.statuses
                ));
            }
            let answer = http
                .post(format!("{emitter}/"))
                .header("content-type", "application/x-ndjson")
                .body(batch(b))
                .send()
                .await;
            let (status, body) = match answer {
                Ok(r) => (
                    r.status().as_u16(),
                    r.json().await.unwrap_or(serde_json::Value::Null),
                ),
                Err(_) => (0, serde_json::Value::Null),
            };
            *out.statuses.entry(status).or_default() += 1;
            match status {
                202 => {
                    out.accepted.extend(ids(&body, "ids"));
                    break;
                }
                // The emitter's NATS link is down or JetStream is electing:
                // what was stored is kept, the rest is retried.
                0 | 429 | 500 | 503 => {
                    out.accepted.extend(ids(&body, "accepted"));
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                other => return Err(format!("unexpected status {other}: {body}")),
            }
        }
        tokio::time::sleep(PACE).await;
    }
    Ok(out)
}

async fn strike(farm: &mut Farm<NatsCluster>, fault: Fault) {
    let tasks = farm.names.tasks_stream();
    let c = &mut farm.nats;
    let leader = c
        .wait_stream_leader(&tasks, ELECTION, |_| true)
        .await
        .expect("a leader of the task stream");
    match fault {
        Fault::KillLeader => {
            c.kill(leader);
            let next = c
                .wait_stream_leader(&tasks, ELECTION, |i| i != leader)
                .await
                .expect("a new leader");
            eprintln!(
                "killed leader {}; new leader {}",
                c.node_name(leader),
                c.node_name(next)
            );
        }
        Fault::KillFollower => {
            let follower = (leader + 1) % c.size();
            c.kill(follower);
            eprintln!(
                "killed follower {} (leader {})",
                c.node_name(follower),
                c.node_name(leader)
            );
        }
        Fault::RestartAll => {
            c.restart_all().expect("restart every node");
            eprintln!("restarted every node (leader was {})", c.node_name(leader));
        }
        Fault::PauseLeader => {
            c.pause(leader).expect("SIGSTOP the leader");
            let next = c
                .wait_stream_leader(&tasks, ELECTION, |i| i != leader)
                .await
                .expect("the others elect a new leader");
            c.resume(leader).expect("SIGCONT the old leader");
            eprintln!(
                "froze leader {} until {} took over, then thawed it",
                c.node_name(leader),
                c.node_name(next)
            );
        }
    }
}

async fn survives(farm_name: &str, fault: Fault) {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let nats = NatsCluster::start(3).expect("start a 3-node cluster");
    // Short ack waits: a task or result whose ack was lost in the fault is
    // redelivered within seconds rather than the default 30 s / 60 s.
    let mut farm = Farm::on(nats, farm_name, &[("FARM_ACK_WAIT", "3s")]);
    farm.start_collector_with(&[("COLLECTOR_ACK_WAIT", "3s")]);
    farm.start_emitter();
    farm.start_workers(3, &[("FARM_CONCURRENCY", "4")]);
    farm.wait_ready().await;

    let (tx, rx) = tokio::sync::oneshot::channel();
    let submitter = tokio::spawn(submit_all(farm.emitter_url(), tx));
    if rx.await.is_ok() {
        strike(&mut farm, fault).await;
    }
    let submitted = match submitter.await.expect("submitter") {
        Ok(s) => s,
        Err(e) => panic!("{e}\n{}", farm.logs()),
    };
    assert_eq!(submitted.accepted.len(), TASKS, "accepted ids");

    farm.wait_completed(TASKS as u64, WAIT).await;
    // Anything late (a redelivered duplicate) would show up meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = farm.read_output().await;
    let dlq = farm.read_dlq().await;
    let got: Vec<&str> = out.iter().map(|e| e.result.task_id.as_str()).collect();
    let unique: HashSet<&str> = got.iter().copied().collect();
    if got.len() != unique.len() {
        let mut seen = HashSet::new();
        let twice: Vec<_> = out
            .iter()
            .filter(|e| !seen.insert(e.result.task_id.as_str()))
            .map(|e| {
                (
                    &e.result.task_id,
                    &e.result.worker,
                    e.result.deliveries,
                    &e.headers,
                )
            })
            .collect();
        panic!(
            "{} tasks twice in OUTPUT, e.g. {:?}\n{}",
            twice.len(),
            &twice[..twice.len().min(3)],
            farm.logs()
        );
    }
    let accepted: HashSet<&str> = submitted.accepted.iter().map(String::as_str).collect();
    assert_eq!(unique, accepted, "OUTPUT differs from the accepted tasks");
    let reasons: HashMap<&str, &str> = dlq
        .iter()
        .map(|d| (d.task_id.as_str(), d.reason.as_str()))
        .collect();
    let failed: Vec<&str> = out
        .iter()
        .filter(|e| e.result.status != Status::Ok as i32)
        .map(|e| e.result.task_id.as_str())
        .collect();
    for id in &failed {
        let reason = reasons.get(id).copied().unwrap_or_default();
        assert!(
            !reason.is_empty(),
            "failed task {id} has no dead letter with a reason"
        );
    }
    let snap = farm.snapshot().await.unwrap_or_default();
    assert_eq!(snap["completed"].as_u64(), Some(TASKS as u64), "{snap}");
    eprintln!(
        "{fault:?}: accepted {}, output {} ({} ok, {} failed), dlq {}, collector duplicates {}, answers {:?}, {:.1} s",
        accepted.len(),
        out.len(),
        out.len() - failed.len(),
        failed.len(),
        dlq.len(),
        snap["duplicates"],
        submitted.statuses,
        started.elapsed().as_secs_f64()
    );
    for i in 0..farm.workers.len() {
        assert!(
            farm.workers[i].is_running(),
            "worker-{i} died\n{}",
            farm.logs()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_loses_and_duplicates_nothing() {
    survives("kill-leader", Fault::KillLeader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_follower_loses_and_duplicates_nothing() {
    survives("kill-follower", Fault::KillFollower).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_whole_cluster_loses_and_duplicates_nothing() {
    survives("restart-all", Fault::RestartAll).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_losing_leadership_loses_and_duplicates_nothing() {
    survives("pause-leader", Fault::PauseLeader).await;
}
