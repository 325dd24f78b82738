//! `FarmControl` over a real gRPC connection: spec, reset, step and batch
//! steps for a farm in external mode, and the decision stream.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Gateway, config, farm_spec};
use farm_model::action::ActionSpace;
use farm_proto::control::farm_control_client::FarmControlClient;
use farm_proto::control::{ResetRequest, SpecRequest, StepBatchRequest, StepRequest, WatchRequest};
use gateway_ext::provider::{MemProvider, Provider};
use gateway_ext::types::FunctionStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_controller_steps_a_live_farm() {
    let mem = MemProvider::new();
    mem.insert(FunctionStatus {
        name: "ext-worker".into(),
        image: "img".into(),
        replicas: 1,
        available_replicas: 1,
        ..Default::default()
    });
    let farms = vec![
        farm_spec(
            "ext",
            "ext-worker",
            "external",
            &[
                ("interval", "200ms"),
                ("min", "1"),
                ("max", "6"),
                ("action-space", "paper"),
                ("queueing-floor", "false"),
            ],
        ),
        farm_spec("builtin", "other", "fixed:1", &[("interval", "1h")]),
    ];
    mem.insert(FunctionStatus {
        name: "other".into(),
        image: "img".into(),
        replicas: 1,
        available_replicas: 1,
        ..Default::default()
    });
    let p: Arc<dyn Provider> = Arc::new(mem.clone());
    let gw = Gateway::start(
        config("http://127.0.0.1:1", &[("DISCOVERY_INTERVAL", "off")]),
        farms,
        Some(p),
    )
    .await
    .unwrap();
    let mut c = FarmControlClient::connect(format!("http://{}", gw.grpc))
        .await
        .unwrap();

    let spec = c
        .get_spec(SpecRequest {
            farm: "ext".into(),
            action_space: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let paper = ActionSpace::paper();
    assert_eq!(spec.action_meanings, paper.meanings());
    assert_eq!(spec.obs_version, farm_model::observation::OBS_VERSION);
    assert_eq!(
        spec.observation_names.len(),
        farm_model::observation::OBS_DIM
    );
    assert_eq!(spec.backend, "live");
    assert!((spec.control_interval_s - 0.2).abs() < 1e-9);
    assert_eq!(spec.scenarios, vec!["builtin", "ext"]);

    let mut watch = c
        .watch(WatchRequest { farm: "ext".into() })
        .await
        .unwrap()
        .into_inner();

    let first = c
        .reset(ResetRequest {
            env_id: "ext".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.observation.len(), farm_model::observation::OBS_DIM);

    let up = paper
        .meanings()
        .iter()
        .position(|m| m == "delta:+1")
        .unwrap() as u32;
    let reply = c
        .step(StepRequest {
            env_id: "ext".into(),
            action: up,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.env_id, "ext");
    assert_eq!(reply.info.as_ref().unwrap().desired, 2);
    assert!(reply.reward.is_finite());
    assert_eq!(mem.function("ext-worker").unwrap().replicas, 2);

    let batch = c
        .step_batch(StepBatchRequest {
            steps: vec![StepRequest {
                env_id: "ext".into(),
                action: up,
            }],
            auto_reset: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.replies[0].info.as_ref().unwrap().desired, 3);
    assert_eq!(mem.function("ext-worker").unwrap().replicas, 3);

    // Without actions the farm holds.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(mem.function("ext-worker").unwrap().replicas, 3);

    // Bad requests are typed.
    let e = c
        .step(StepRequest {
            env_id: "ext".into(),
            action: 99,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = c
        .step(StepRequest {
            env_id: "builtin".into(),
            action: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    let e = c
        .reset(ResetRequest {
            env_id: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    // The watch stream saw the decisions, including the applied actions.
    let mut saw_action = false;
    for _ in 0..50 {
        let d = tokio::time::timeout(Duration::from_secs(5), watch.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(d.farm, "ext");
        assert_eq!(d.observation.len(), farm_model::observation::OBS_DIM);
        if d.action == Some(up) && d.policy == "external" {
            saw_action = true;
            break;
        }
    }
    assert!(saw_action);
    gw.shutdown().await;
}
