//! Shared helpers: a real provider on a dynamic loopback port, with the
//! `farm-local-fixture` binary installed in a temporary image store.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use farm_local::{
    Config, FunctionDeployment, FunctionStatus, ImageStore, Provider, ProviderHandle,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const FIXTURE_IMAGE: &str = "fixture:latest";

pub struct TestProvider {
    pub base: String,
    pub handle: ProviderHandle,
    pub http: reqwest::Client,
    pub tmp: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<Result<(), farm_local::ProviderError>>>,
}

/// A configuration with fast probes and short backoff, rooted in `tmp`.
pub fn test_config(tmp: &std::path::Path) -> Config {
    Config {
        image_store: tmp.join("images"),
        state_dir: Some(tmp.join("state")),
        secrets_dir: tmp.join("secrets"),
        secret_mount_path: tmp.join("auth"),
        startup_probe: Duration::from_millis(20),
        readiness_period: Duration::from_millis(200),
        termination_grace: Duration::from_secs(5),
        restart_backoff: Duration::from_millis(200),
        restart_backoff_max: Duration::from_secs(2),
        scale_from_zero_timeout: Duration::from_secs(20),
        ..Config::default()
    }
}

impl TestProvider {
    /// Starts a provider; `tweak` adjusts the test configuration.
    pub async fn start(tweak: impl FnOnce(&mut Config, &std::path::Path)) -> TestProvider {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = test_config(tmp.path());
        std::fs::create_dir_all(&config.secrets_dir).unwrap();
        tweak(&mut config, tmp.path());
        ImageStore::new(config.image_store.clone())
            .install(
                FIXTURE_IMAGE,
                &PathBuf::from(env!("CARGO_BIN_EXE_farm-local-fixture")),
            )
            .unwrap();
        let provider = Provider::new(config).unwrap();
        let handle = provider.handle();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, rx) = oneshot::channel();
        let join = tokio::spawn(provider.run(listener, async move {
            let _ = rx.await;
        }));
        TestProvider {
            base,
            handle,
            http: reqwest::Client::new(),
            tmp,
            stop: Some(stop),
            join: Some(join),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &str) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    pub async fn deploy(&self, d: &FunctionDeployment) -> reqwest::Response {
        self.post_json("/system/functions", &serde_json::to_string(d).unwrap())
            .await
    }

    pub async fn scale(&self, name: &str, replicas: u64) -> reqwest::StatusCode {
        self.post_json(
            &format!("/system/scale-function/{name}"),
            &format!(r#"{{"serviceName":"{name}","replicas":{replicas}}}"#),
        )
        .await
        .status()
    }

    pub async fn status(&self, name: &str) -> FunctionStatus {
        let r = self.get(&format!("/system/function/{name}")).await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Polls the status until `pred` holds; panics with the last status
    /// after `limit`.
    pub async fn wait_status(
        &self,
        name: &str,
        limit: Duration,
        pred: impl Fn(&FunctionStatus) -> bool,
    ) -> FunctionStatus {
        let start = Instant::now();
        loop {
            let s = self.status(name).await;
            if pred(&s) {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "condition not reached within {limit:?}; last: replicas={} available={}",
                s.replicas,
                s.available_replicas
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn wait_counts(&self, name: &str, replicas: u64, available: u64) -> FunctionStatus {
        self.wait_status(name, Duration::from_secs(30), |s| {
            s.replicas == replicas && s.available_replicas == available
        })
        .await
    }

    /// All log lines of `name` so far.
    pub async fn log_lines(&self, name: &str) -> Vec<farm_local::LogMessage> {
        let r = self.get(&format!("/system/logs?name={name}")).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Stops the provider and waits until every replica has exited.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(j) = self.join.take() {
            j.await.unwrap().unwrap();
        }
    }
}

pub fn fixture(name: &str) -> FunctionDeployment {
    FunctionDeployment {
        service: name.into(),
        image: FIXTURE_IMAGE.into(),
        ..Default::default()
    }
}
