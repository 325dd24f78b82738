//! The `FarmControl` gRPC contract (proto/control.proto), shared by the
//! simulator server (`farmctl sim serve`) and gateway-ext.
//!
//! ```
//! use farm_proto::control::{StepRequest, farm_control_client::FarmControlClient};
//! let req = StepRequest { env_id: "e0".into(), action: 3 };
//! assert_eq!(req.action, 3);
//! # let _ = std::marker::PhantomData::<FarmControlClient<tonic::transport::Channel>>;
//! ```

/// Generated messages, client and server of `farm.control.v1`.
#[allow(missing_docs, clippy::all)]
pub mod control {
    tonic::include_proto!("farm.control.v1");
}
