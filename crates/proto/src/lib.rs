//! The `FarmControl` gRPC contract (proto/control.proto), shared by the
//! simulator server (`farmctl sim serve`) and gateway-ext, and the helpers
//! both use to read a `StepBatch` request and pack its reply ([`batch`]).
//!
//! ```
//! use farm_proto::batch::{self, PackedBuilder};
//! use farm_proto::control::{StepBatchRequest, StepInfo, StepReply};
//! let req = StepBatchRequest {
//!     env_ids: vec!["e0".into(), "e1".into()],
//!     actions: vec![3, 1],
//!     packed: true,
//!     ..Default::default()
//! };
//! let steps = batch::steps(&req).unwrap();
//! assert_eq!(steps, vec![("e0", 3), ("e1", 1)]);
//! let mut b = PackedBuilder::new(steps.len(), 2, false);
//! for (i, _) in steps.iter().enumerate() {
//!     let done = i == 1;
//!     b.push(&[i as f32, 0.5], -1.0, done, false, &StepInfo::default(), StepReply::default);
//! }
//! let packed = b.finish();
//! assert_eq!(packed.observations, vec![0.0, 0.5, 1.0, 0.5]);
//! assert_eq!(packed.ended, vec![1]);
//! ```

pub mod batch;

/// Generated messages, client and server of `farm.control.v1`.
#[allow(missing_docs, clippy::all)]
pub mod control {
    tonic::include_proto!("farm.control.v1");
}
