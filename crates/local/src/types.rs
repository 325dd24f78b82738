//! The JSON shapes of the OpenFaaS provider API, from [`farm_openfaas`] (one
//! definition shared with gateway-ext), re-exported where this crate's API
//! has always offered them.

pub use farm_openfaas::{
    DeleteFunctionRequest, FunctionDeployment, FunctionResources, FunctionStatus, FunctionUsage,
    LogMessage, ProviderInfo, ProviderVersion, ScaleServiceRequest,
};
