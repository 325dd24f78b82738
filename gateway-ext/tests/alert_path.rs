//! The OpenFaaS alert path, for real: a real Prometheus scrapes
//! gateway-ext's `/metrics` and evaluates the CE rule of
//! `deploy/prometheus/alert.rules.yml`; a real Alertmanager, configured by
//! `deploy/alertmanager/alertmanager.yml`, posts the alert to gateway-ext's
//! `/system/alert` with basic auth; gateway-ext's farm policy (not the CE
//! step) decides and the local provider's replicas change. When the load
//! stops, the resolved alert is one more decision of the policy.
//!
//! Everything runs as real processes on 127.0.0.1: nats-server, the
//! farm-local provider with sleep-worker replicas, Prometheus and
//! Alertmanager (Debian packages `prometheus` and `prometheus-alertmanager`,
//! installed by `bash scripts/setup.sh prometheus prometheus-alertmanager`,
//! which `scripts/test.sh` runs). The deploy files are used as shipped; the
//! test rewrites only addresses, file paths and timings (1 s intervals, rule
//! `for: 2s` instead of OpenFaaS's 5 s).
//!
//! A second test drives the farm rule (`FarmHighTaskRate`) of the same file
//! with tasks posted to a real emitter (202 answers) instead.
//!
//! The farm's control interval is 10 minutes and its early decisions are
//! off (`events: off`), so after its first tick every
//! decision in the test comes from an alert: a replica change can only be
//! the alert path's doing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Gateway, Local, config, eventually, farm_status, wait_consumer, workspace_root};
use farm_policy::baselines::{OpenFaasCe, OpenFaasCeConfig};
use farm_proto::control::farm_control_client::FarmControlClient;
use farm_proto::control::{Decision, WatchRequest};
use farm_runtime::names::FarmNames;
use farm_runtime::proto::Task;
use farm_testsupport::{ChildGuard, NatsServer, free_port};
use prost::Message;
use serde_yaml::Value;
use tokio::sync::mpsc;

const FARM: &str = "alerted";
const WORKER: &str = "alerted-worker";
const POLICY: &str = "keda";
const MIN: u32 = 1;
const MAX: u32 = 8;
/// The CE rule, as OpenFaaS ships it (REFERENCE.md §2).
const CE_EXPR: &str =
    r#"sum(rate(gateway_function_invocation_total{code="200"}[10s])) by (function_name) > 5"#;
/// The shipped rule for farm load (an emitter's 2xx).
const FARM_RULE: &str = "FarmHighTaskRate";
/// Every bounded wait of the test.
const WAIT: Duration = Duration::from_secs(60);
const SETUP_HINT: &str = "install them with `bash scripts/setup.sh prometheus prometheus-alertmanager` \
     (scripts/test.sh does it), or `apt-get install -y --no-install-recommends prometheus prometheus-alertmanager`";

/// The first of `names` found on `PATH`; a clear failure otherwise.
fn find_on_path(what: &str, names: &[&str]) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "{what} not found on PATH (looked for {}): {SETUP_HINT}",
        names.join(", ")
    );
}

fn read_yaml(rel: &str) -> Value {
    let p = workspace_root().join(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn write_yaml(path: &Path, v: &Value) {
    std::fs::write(path, serde_yaml::to_string(v).unwrap()).unwrap();
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

/// Prometheus and Alertmanager, killed on drop.
struct Monitoring {
    prometheus: ChildGuard,
    alertmanager: ChildGuard,
    prometheus_url: String,
    alertmanager_url: String,
    _dir: tempfile::TempDir,
}

impl Monitoring {
    /// Starts both from the deploy files, pointed at gateway-ext on
    /// `gateway` (`host:port`), posting alerts with the password in
    /// `password_file`.
    async fn start(gateway: &str, password_file: &Path) -> Monitoring {
        let prometheus_bin = find_on_path("Prometheus", &["prometheus"]);
        let alertmanager_bin =
            find_on_path("Alertmanager", &["prometheus-alertmanager", "alertmanager"]);
        let dir = tempfile::tempdir().unwrap();
        let prom_port = free_port().unwrap();
        let am_port = free_port().unwrap();

        // The rules as shipped, with `for` shortened (OpenFaaS: 5 s).
        let mut rules = read_yaml("deploy/prometheus/alert.rules.yml");
        let Value::Sequence(list) = &mut rules["groups"][0]["rules"] else {
            panic!("alert.rules.yml: groups[0].rules is not a list");
        };
        assert_eq!(list[0]["alert"], s("APIHighInvocationRate"));
        assert_eq!(list[0]["expr"], s(CE_EXPR), "the first rule is the CE rule");
        assert_eq!(
            list[1]["alert"],
            s(FARM_RULE),
            "the second is the farm rule"
        );
        for rule in list.iter_mut() {
            assert_eq!(
                rule["for"],
                s("5s"),
                "the shipped rules wait 5 s like OpenFaaS"
            );
            rule["for"] = s("2s");
        }
        let rules_path = dir.path().join("alert.rules.yml");
        write_yaml(&rules_path, &rules);

        let mut prom = read_yaml("deploy/prometheus/prometheus.yml");
        prom["global"]["scrape_interval"] = s("1s");
        prom["global"]["evaluation_interval"] = s("1s");
        prom["rule_files"] = Value::Sequence(vec![s(rules_path.to_str().unwrap())]);
        prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] =
            Value::Sequence(vec![s(&format!("127.0.0.1:{am_port}"))]);
        let Value::Sequence(jobs) = &mut prom["scrape_configs"] else {
            panic!("prometheus.yml: scrape_configs is not a list");
        };
        let job = jobs
            .iter_mut()
            .find(|j| j["job_name"] == s("gateway-ext"))
            .expect("prometheus.yml scrapes a job named gateway-ext");
        job["scrape_interval"] = s("1s");
        job["static_configs"][0]["targets"] = Value::Sequence(vec![s(gateway)]);
        let prom_path = dir.path().join("prometheus.yml");
        write_yaml(&prom_path, &prom);

        let mut am = read_yaml("deploy/alertmanager/alertmanager.yml");
        am["route"]["group_wait"] = s("1s");
        am["route"]["group_interval"] = s("1s");
        am["route"]["repeat_interval"] = s("4s");
        let hook = &mut am["receivers"][0]["webhook_configs"][0];
        assert_eq!(hook["send_resolved"], Value::Bool(true));
        hook["url"] = s(&format!("http://{gateway}/system/alert"));
        hook["http_config"]["basic_auth"]["password_file"] = s(password_file.to_str().unwrap());
        let am_path = dir.path().join("alertmanager.yml");
        write_yaml(&am_path, &am);

        let mut cmd = Command::new(&alertmanager_bin);
        cmd.arg(format!("--config.file={}", am_path.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            // No gossip port: the test stays on loopback, alone.
            .arg("--cluster.listen-address=");
        let alertmanager = ChildGuard::spawn("alertmanager", cmd).unwrap();
        let mut cmd = Command::new(&prometheus_bin);
        cmd.arg(format!("--config.file={}", prom_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"));
        let prometheus = ChildGuard::spawn("prometheus", cmd).unwrap();
        let m = Monitoring {
            prometheus,
            alertmanager,
            prometheus_url: format!("http://127.0.0.1:{prom_port}"),
            alertmanager_url: format!("http://127.0.0.1:{am_port}"),
            _dir: dir,
        };
        for (what, url) in [
            ("Alertmanager ready", &m.alertmanager_url),
            ("Prometheus ready", &m.prometheus_url),
        ] {
            let ready = format!("{url}/-/ready");
            let start = Instant::now();
            loop {
                if let Ok(r) = reqwest::get(&ready).await
                    && r.status().is_success()
                {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "timed out waiting for {what}\n{}",
                    m.logs()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        m
    }

    /// What Prometheus and Alertmanager said and hold, for failure messages.
    fn logs(&self) -> String {
        format!(
            "--- prometheus log (tail)\n{}\n--- alertmanager log (tail)\n{}",
            self.prometheus.log_tail(),
            self.alertmanager.log_tail()
        )
    }

    async fn diagnostics(&self) -> String {
        let get = |u: String| async move {
            match reqwest::get(&u).await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(e) => format!("{u}: {e}"),
            }
        };
        format!(
            "--- prometheus alerts\n{}\n--- prometheus targets\n{}\n--- alertmanager alerts\n{}\n{}",
            get(format!("{}/api/v1/alerts", self.prometheus_url)).await,
            get(format!("{}/api/v1/targets", self.prometheus_url)).await,
            get(format!("{}/api/v2/alerts", self.alertmanager_url)).await,
            self.logs()
        )
    }
}

/// Puts `n` tasks of `sleep_ms` each in the farm's work queue.
async fn publish_tasks(js: &async_nats::jetstream::Context, n: u64, sleep_ms: u64) {
    let names = FarmNames::new(FARM).unwrap();
    for seq in 0..n {
        let t = Task {
            id: format!("{FARM}-{seq}"),
            seq,
            payload: format!("{{\"sleep_ms\":{sleep_ms}}}").into_bytes().into(),
            content_type: "application/json".into(),
            deadline_ms: 0,
            attributes: Default::default(),
        };
        js.publish(names.tasks_subject(), t.encode_to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    js.client().flush().await.unwrap();
}

/// Invocations of `url` (a function through gateway-ext's `/function/`
/// proxy), `per_s` a second until `stop`, each posting `{"sleep_ms": ...}`;
/// counts the answers with status `ok_status` and the others.
struct HttpLoad {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpLoad {
    fn start(url: String, per_s: u32, body: &'static str, ok_status: u16) -> HttpLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (st, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let task = tokio::spawn(async move {
            let c = reqwest::Client::new();
            let mut every = tokio::time::interval(Duration::from_secs(1) / per_s);
            // Bounded: at most 2 minutes of load even if nobody stops it.
            for _ in 0..(120 * per_s) {
                every.tick().await;
                if st.load(Ordering::SeqCst) {
                    break;
                }
                // One task per request, so a slow answer never lowers the rate.
                let (c, url, o, f) = (c.clone(), url.clone(), o.clone(), f.clone());
                tokio::spawn(async move {
                    let r = c
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == ok_status => o.fetch_add(1, Ordering::SeqCst),
                        _ => f.fetch_add(1, Ordering::SeqCst),
                    };
                });
            }
        });
        HttpLoad {
            stop,
            ok,
            failed,
            task,
        }
    }

    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        // Let requests in flight finish (each has a 10 s timeout).
        tokio::time::sleep(Duration::from_millis(300)).await;
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

/// Waits for the next decision of the farm matching `want`, keeping every
/// decision seen in `seen`.
async fn next_decision(
    rx: &mut mpsc::UnboundedReceiver<Decision>,
    seen: &mut Vec<Decision>,
    what: &str,
    want: impl Fn(&Decision) -> bool,
    on_timeout: impl std::future::Future<Output = String>,
) -> Decision {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(d)) => {
                seen.push(d.clone());
                if want(&d) {
                    return d;
                }
            }
            Ok(None) => panic!("the decision stream ended while waiting for {what}"),
            Err(_) => panic!(
                "timed out after {WAIT:?} waiting for {what}; decisions so far: {seen:#?}\n{}",
                on_timeout.await
            ),
        }
    }
}

/// Provider replicas of the worker (no shards: no per-function cap here).
fn provider_replicas(local: &Local) -> (u64, u64) {
    let st = local.handle.status(WORKER).unwrap();
    (st.replicas, st.available_replicas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alertmanager_alert_makes_the_policy_decide_and_replicas_change() {
    // Fail early, before anything starts, when the binaries are missing.
    find_on_path("Prometheus", &["prometheus"]);
    find_on_path("Alertmanager", &["prometheus-alertmanager", "alertmanager"]);

    let nats = NatsServer::start().unwrap();
    let local = Local::start(0).await;
    local.deploy_worker(
        WORKER,
        FARM,
        &nats.url(),
        &[
            ("com.rust-farm.farm", FARM),
            ("com.rust-farm.policy", POLICY),
            // One tick at start, then only alerts decide during the test.
            ("com.rust-farm.interval", "10m"),
            // Alerts only: no early decision on the backlog either.
            ("com.rust-farm.events", "off"),
            // The policy alone decides: no queueing floor raising it.
            ("com.rust-farm.queueing-floor", "false"),
        ],
        &[
            ("com.openfaas.scale.min", &MIN.to_string()),
            ("com.openfaas.scale.max", &MAX.to_string()),
        ],
    );
    let js = wait_consumer(&nats.url(), FARM).await;
    // The farm's only tick runs when gateway-ext starts: start it once the
    // worker's replica is ready, however slowly it started, so that tick
    // sees the idle farm as it is.
    eventually(WAIT, "the worker's replica ready", || async {
        (provider_replicas(&local) == (1, 1)).then_some(())
    })
    .await;

    // gateway-ext with basic auth on /system/*, as a real install has it.
    let secrets = tempfile::tempdir().unwrap();
    let (user, password) = ("admin", "alert-path-secret");
    std::fs::write(secrets.path().join("basic-auth-user"), format!("{user}\n")).unwrap();
    let password_file = secrets.path().join("basic-auth-password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let cfg = config(
        &local.url,
        &[
            ("DISCOVERY_INTERVAL", "300ms"),
            ("NATS_URL", &nats.url()),
            ("BASIC_AUTH", "true"),
            ("SECRET_MOUNT_PATH", secrets.path().to_str().unwrap()),
        ],
    );
    let gw = Gateway::start(cfg, vec![], None).await.unwrap();
    let http = reqwest::Client::new();
    let farm_status = || farm_status(&gw.url, Some((user, password)), FARM);
    let st = eventually(Duration::from_secs(30), "farm discovered", || async {
        farm_status()
            .await
            .filter(|f| f["decisions"].as_u64().unwrap_or(0) >= 1 && f["ready"] == 1)
    })
    .await;
    assert_eq!(st["desired"], MIN, "an idle farm starts at min: {st}");
    assert_eq!(st["policy"], POLICY);

    // Every decision of the farm from now on, over FarmControl.Watch.
    let mut grpc = FarmControlClient::connect(format!("http://{}", gw.grpc))
        .await
        .unwrap();
    let mut watch = grpc
        .watch(WatchRequest { farm: FARM.into() })
        .await
        .unwrap()
        .into_inner();
    let (dtx, mut decisions) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(d)) = watch.message().await {
            if dtx.send(d).is_err() {
                break;
            }
        }
    });

    let gw_addr = gw.url.trim_start_matches("http://").to_owned();
    let mon = Monitoring::start(&gw_addr, &password_file).await;
    // Prometheus really scrapes gateway-ext before the load starts.
    eventually(Duration::from_secs(30), "gateway-ext target up", || async {
        let v: serde_json::Value = reqwest::get(format!(
            "{}/api/v1/targets?state=active",
            mon.prometheus_url
        ))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
        v["data"]["activeTargets"]
            .as_array()?
            .iter()
            .any(|t| t["labels"]["job"] == "gateway-ext" && t["health"] == "up")
            .then_some(())
    })
    .await;

    // The burst: a backlog in the farm's queue (what the policy sizes on)
    // and synchronous invocations of the worker through gateway-ext at
    // 10/s (what the CE rule measures: > 5/s).
    let load_start = Instant::now();
    publish_tasks(&js, 100, 1000).await;
    let load = HttpLoad::start(
        format!("{}/function/{WORKER}", gw.url),
        10,
        r#"{"sleep_ms":10}"#,
        200,
    );
    let mut seen = Vec::new();
    let firing = next_decision(
        &mut decisions,
        &mut seen,
        "the firing alert's decision",
        |d| d.note.contains("alert (firing)"),
        mon.diagnostics(),
    )
    .await;
    let to_alert = load_start.elapsed();
    assert_eq!(firing.trigger, "alert", "{firing:?}");
    assert_eq!(
        firing.policy, POLICY,
        "the farm's policy decided: {firing:?}"
    );
    assert!(
        firing.desired > firing.previous,
        "the policy scales up on the backlog: {firing:?}"
    );
    let ce = OpenFaasCe::new(OpenFaasCeConfig::default(), &policy_platform());
    let ce_step = (firing.previous + ce.step(MAX)).clamp(MIN, MAX);
    assert_ne!(
        firing.desired, ce_step,
        "the decision is the policy's, not the CE step: {firing:?}"
    );
    // The provider really runs what was decided.
    let start = Instant::now();
    loop {
        let (replicas, ready) = provider_replicas(&local);
        if replicas == u64::from(firing.desired) && ready == replicas {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "provider at {replicas} replicas ({ready} ready), decided {}",
            firing.desired
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let to_replicas = load_start.elapsed();

    // The load stops: the alert resolves and the policy decides again.
    let (ok, failed) = load.stop().await;
    let load_stop = Instant::now();
    assert!(
        ok > 50,
        "the invocations succeeded ({ok} ok, {failed} failed)"
    );
    let resolved = next_decision(
        &mut decisions,
        &mut seen,
        "the resolved alert's decision",
        |d| d.note.contains("alert (resolved)"),
        mon.diagnostics(),
    )
    .await;
    let to_resolved = load_stop.elapsed();
    assert_eq!(resolved.trigger, "alert", "{resolved:?}");
    assert_eq!(resolved.policy, POLICY, "{resolved:?}");
    // KEDA feeds an HPA whose scale-down stabilisation (300 s) keeps the
    // highest recommendation of the window: no drop to min, which is what
    // the CE rule would have done.
    let highest = seen
        .iter()
        .filter(|d| d.note.contains("alert (firing)"))
        .map(|d| d.desired)
        .max()
        .unwrap();
    assert_eq!(
        resolved.desired, highest,
        "the policy holds its highest recent decision: {seen:#?}"
    );
    assert!(resolved.desired > MIN, "{resolved:?}");
    let (replicas, _) = provider_replicas(&local);
    assert_eq!(replicas, u64::from(resolved.desired));
    // Only alerts decided during the test: the replica changes were theirs.
    assert!(
        seen.iter().all(|d| d.trigger == "alert"),
        "every decision came from an alert: {seen:#?}"
    );

    // Decisions that reached the stream after the resolved one (none are
    // expected) still count in the metrics below.
    while let Ok(d) = decisions.try_recv() {
        seen.push(d);
    }
    let metrics = http
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let alert_decisions = format!(
        "gateway_ext_decisions_total{{farm=\"{FARM}\",trigger=\"alert\",policy=\"{POLICY}\"}} {}",
        seen.len()
    );
    assert!(
        metrics.contains(&alert_decisions),
        "{alert_decisions}\n{metrics}"
    );
    let invocations = format!(
        "gateway_function_invocation_total{{function_name=\"{WORKER}.openfaas-fn\",code=\"200\"}} {ok}\n"
    );
    assert!(metrics.contains(&invocations), "{invocations}\n{metrics}");

    println!(
        "alert path: load start -> firing-alert decision {:.1} s (previous {} -> desired {}, CE step would give {}); \
         -> provider at {} ready replicas {:.1} s; load stop -> resolved-alert decision {:.1} s (desired {}, CE would give {MIN}); \
         {} alert decisions; {ok} invocations ok, {failed} failed",
        to_alert.as_secs_f64(),
        firing.previous,
        firing.desired,
        ce_step,
        firing.desired,
        to_replicas.as_secs_f64(),
        to_resolved.as_secs_f64(),
        resolved.desired,
        seen.len(),
    );
    drop(mon);
    gw.shutdown().await;
    let mut local = local;
    local.shutdown().await;
}

/// Farm load, for real: tasks posted to a real emitter (which answers 202,
/// so the CE rule, counting 200s, never fires for it) fire the shipped farm
/// rule, which selects emitters by gateway-ext's `gateway_ext_farm_function`
/// series; Alertmanager posts it to gateway-ext, and the farm's policy
/// decides for the worker (the emitter is not scaled). The emitter is
/// invoked as `faas-cli invoke` names it, `/function/NAME.openfaas-fn`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn emitter_load_fires_the_farm_rule_and_the_farm_policy_decides() {
    find_on_path("Prometheus", &["prometheus"]);
    find_on_path("Alertmanager", &["prometheus-alertmanager", "alertmanager"]);
    const EMITTER: &str = "alerted-emitter";

    let nats = NatsServer::start().unwrap();
    let local = Local::start(0).await;
    local.deploy_worker(
        WORKER,
        FARM,
        &nats.url(),
        &[
            ("com.rust-farm.farm", FARM),
            ("com.rust-farm.policy", POLICY),
            ("com.rust-farm.interval", "10m"),
            // Alerts only: no early decision on the backlog either.
            ("com.rust-farm.events", "off"),
            ("com.rust-farm.queueing-floor", "false"),
        ],
        &[
            ("com.openfaas.scale.min", &MIN.to_string()),
            ("com.openfaas.scale.max", &MAX.to_string()),
        ],
    );
    local.deploy_emitter(EMITTER, FARM, &nats.url());
    let _js = wait_consumer(&nats.url(), FARM).await;
    eventually(
        WAIT,
        "the worker's and the emitter's replicas ready",
        || async {
            let e = local.handle.status(EMITTER).unwrap();
            (provider_replicas(&local) == (1, 1) && e.available_replicas == 1).then_some(())
        },
    )
    .await;

    let secrets = tempfile::tempdir().unwrap();
    let (user, password) = ("admin", "farm-rule-secret");
    std::fs::write(secrets.path().join("basic-auth-user"), format!("{user}\n")).unwrap();
    let password_file = secrets.path().join("basic-auth-password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let cfg = config(
        &local.url,
        &[
            ("DISCOVERY_INTERVAL", "300ms"),
            ("NATS_URL", &nats.url()),
            ("BASIC_AUTH", "true"),
            ("SECRET_MOUNT_PATH", secrets.path().to_str().unwrap()),
        ],
    );
    let gw = Gateway::start(cfg, vec![], None).await.unwrap();
    let http = reqwest::Client::new();
    // Discovery lists the emitter as the farm's: the series the rule joins on.
    let member = format!(
        "gateway_ext_farm_function{{function_name=\"{EMITTER}.openfaas-fn\",farm=\"{FARM}\",role=\"emitter\"}} 1"
    );
    eventually(
        Duration::from_secs(30),
        "the emitter listed as the farm's",
        || async {
            let m = http
                .get(format!("{}/metrics", gw.url))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            m.contains(&member).then_some(())
        },
    )
    .await;
    // The farm's loop decides once as it starts (a tick); wait for it before
    // watching, so every decision watched below is an alert's.
    eventually(
        Duration::from_secs(30),
        "the farm's first decision",
        || async {
            let f = farm_status(&gw.url, Some((user, password)), FARM).await?;
            (f["decisions"].as_u64().unwrap_or(0) >= 1).then_some(())
        },
    )
    .await;

    let mut grpc = FarmControlClient::connect(format!("http://{}", gw.grpc))
        .await
        .unwrap();
    let mut watch = grpc
        .watch(WatchRequest { farm: FARM.into() })
        .await
        .unwrap()
        .into_inner();
    let (dtx, mut decisions) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(d)) = watch.message().await {
            if dtx.send(d).is_err() {
                break;
            }
        }
    });

    let gw_addr = gw.url.trim_start_matches("http://").to_owned();
    let mon = Monitoring::start(&gw_addr, &password_file).await;
    eventually(Duration::from_secs(30), "gateway-ext target up", || async {
        let v: serde_json::Value = reqwest::get(format!(
            "{}/api/v1/targets?state=active",
            mon.prometheus_url
        ))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
        v["data"]["activeTargets"]
            .as_array()?
            .iter()
            .any(|t| t["labels"]["job"] == "gateway-ext" && t["health"] == "up")
            .then_some(())
    })
    .await;

    // 10 tasks a second of 1 s each into the emitter: a backlog for the
    // worker, and > 5 accepted submissions a second for the farm rule.
    let load = HttpLoad::start(
        format!("{}/function/{EMITTER}.openfaas-fn", gw.url),
        10,
        r#"{"sleep_ms":1000}"#,
        202,
    );
    let mut seen = Vec::new();
    let firing = next_decision(
        &mut decisions,
        &mut seen,
        "the farm rule's firing decision",
        |d| d.note.contains("alert (firing)"),
        mon.diagnostics(),
    )
    .await;
    assert_eq!(firing.trigger, "alert", "{firing:?}");
    assert_eq!(firing.policy, POLICY, "{firing:?}");
    assert!(
        firing.note.contains(&format!("alerted function {EMITTER}")),
        "the alert named the emitter: {firing:?}"
    );
    assert!(
        firing.desired > firing.previous,
        "the policy scales the worker up on the backlog: {firing:?}"
    );
    // Which rule fired: the farm rule, for the emitter; the CE rule is idle.
    let rules: serde_json::Value =
        reqwest::get(format!("{}/api/v1/rules?type=alert", mon.prometheus_url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let rules = rules["data"]["groups"][0]["rules"].as_array().unwrap();
    let by_name = |name: &str| rules.iter().find(|r| r["name"] == name).unwrap();
    let farm_rule = by_name(FARM_RULE);
    assert_eq!(farm_rule["state"], "firing", "{farm_rule}");
    assert_eq!(
        farm_rule["alerts"][0]["labels"]["function_name"],
        format!("{EMITTER}.openfaas-fn"),
        "{farm_rule}"
    );
    let ce_rule = by_name("APIHighInvocationRate");
    assert_eq!(ce_rule["state"], "inactive", "{ce_rule}");
    let emitter = local.handle.status(EMITTER).unwrap();
    assert_eq!(emitter.replicas, 1, "the emitter is not scaled");

    let (ok, failed) = load.stop().await;
    assert!(
        ok > 50,
        "the emitter accepted the tasks ({ok} ok, {failed} failed)"
    );
    let resolved = next_decision(
        &mut decisions,
        &mut seen,
        "the farm rule's resolved decision",
        |d| d.note.contains("alert (resolved)"),
        mon.diagnostics(),
    )
    .await;
    assert_eq!(resolved.policy, POLICY, "{resolved:?}");
    assert!(
        seen.iter().all(|d| d.trigger == "alert"),
        "every decision came from an alert: {seen:#?}"
    );
    let metrics = http
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let accepted = format!(
        "gateway_function_invocation_total{{function_name=\"{EMITTER}.openfaas-fn\",code=\"202\"}} {ok}\n"
    );
    assert!(metrics.contains(&accepted), "{accepted}\n{metrics}");
    drop(mon);
    gw.shutdown().await;
    let mut local = local;
    local.shutdown().await;
}

/// The platform the CE reference step is computed for: this farm's bounds.
fn policy_platform() -> farm_model::scenario::Platform {
    farm_policy::platform(Duration::from_secs(600), MIN, MAX, None)
}
