//! A farm with an ONNX policy and no ONNX Runtime library is a startup
//! error (own test binary: the runtime is loaded once per process).

mod common;

use std::sync::Arc;

use common::{Gateway, config, farm_spec};
use farm_policy::onnx::OnnxError;
use gateway_ext::StartError;
use gateway_ext::policy::PolicyLoadError;
use gateway_ext::provider::{MemProvider, Provider};

#[tokio::test]
async fn missing_onnx_runtime_is_a_startup_error() {
    let farm = farm_spec("f", "w", "onnx:model.onnx", &[]);
    let p: Arc<dyn Provider> = Arc::new(MemProvider::new());
    let cfg = config("http://127.0.0.1:1", &[("DISCOVERY_INTERVAL", "off")]);
    let e = Gateway::start(cfg, vec![farm.clone()], Some(p.clone()))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            e,
            StartError::Policy {
                source: PolicyLoadError::Onnx(OnnxError::RuntimeNotConfigured),
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("ORT_DYLIB_PATH"));
}
