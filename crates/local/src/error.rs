//! Typed errors of the provider and their HTTP status codes.

use std::path::PathBuf;
use std::time::Duration;

use axum::http::StatusCode;

use crate::config::ConfigErrors;
use crate::image::ImageError;

/// Why an API operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No function of this name is deployed.
    #[error("function {0:?} not found")]
    NotFound(String),
    /// POST of a function that already exists.
    #[error("function {0:?} already exists; update it with PUT /system/functions")]
    AlreadyExists(String),
    /// The function name is not `[-a-zA-Z_0-9.]+`.
    #[error("invalid function name {0:?}: expected letters, digits, '-', '_' or '.'")]
    InvalidName(String),
    /// A namespace other than the single one this provider has.
    #[error("namespace {0:?} not valid: this provider has only {ns:?}", ns = crate::DEFAULT_NAMESPACE)]
    InvalidNamespace(String),
    /// A function name `NAME.NAMESPACE` with another namespace than the
    /// single one this provider has.
    #[error("function {name:?}: namespace {namespace:?} not valid: this provider has only {ns:?} (name a function NAME or NAME.{ns})", ns = crate::DEFAULT_NAMESPACE)]
    InvalidFunctionNamespace {
        /// The name as given.
        name: String,
        /// Its namespace part.
        namespace: String,
    },
    /// The image cannot be resolved to an executable.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A secret named by the deployment has no value file.
    #[error("unable to find secret: {name} (expected a file at {path})")]
    MissingSecret {
        /// The secret name.
        name: String,
        /// Where its value was looked for.
        path: PathBuf,
    },
    /// A scaling label does not hold a non-negative integer.
    #[error("label {key}={value:?}: expected a non-negative integer")]
    InvalidLabel {
        /// The label key.
        key: String,
        /// Its value.
        value: String,
    },
    /// A scale request above the provider's limit.
    #[error("replicas {requested} exceeds this provider's limit of {max}")]
    TooManyReplicas {
        /// What was asked.
        requested: u64,
        /// The limit (`FARM_LOCAL_MAX_REPLICAS`).
        max: u64,
    },
    /// The body's `serviceName` names another function than the path.
    #[error("serviceName {body:?} in the body does not match {path:?} in the path")]
    NameMismatch {
        /// Name in the body.
        body: String,
        /// Name in the path.
        path: String,
    },
    /// The body is not the expected JSON.
    #[error("{0}")]
    InvalidBody(String),
    /// The logs query does not parse.
    #[error("could not parse the log request: {0}")]
    InvalidLogQuery(String),
    /// No replica became available in time for an invocation.
    #[error("no replica of {name} became available within {waited:?}")]
    Unavailable {
        /// The function.
        name: String,
        /// How long the invocation waited.
        waited: Duration,
    },
    /// The replica did not answer the proxied request.
    #[error("cannot reach a replica of {name}: {reason}")]
    Upstream {
        /// The function.
        name: String,
        /// What failed.
        reason: String,
    },
    /// The provider is stopping.
    #[error("the provider is shutting down")]
    ShuttingDown,
}

impl ApiError {
    /// The HTTP status this error is served with (as faas-netes / faasd do).
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists(_) => StatusCode::CONFLICT,
            ApiError::InvalidLogQuery(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable { .. } | ApiError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ApiError::InvalidName(_)
            | ApiError::InvalidNamespace(_)
            | ApiError::InvalidFunctionNamespace { .. }
            | ApiError::Image(_)
            | ApiError::MissingSecret { .. }
            | ApiError::InvalidLabel { .. }
            | ApiError::TooManyReplicas { .. }
            | ApiError::NameMismatch { .. }
            | ApiError::InvalidBody(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Why the provider could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// Basic auth is on but a credentials file cannot be read.
    #[error("basic auth is enabled but {path} cannot be read: {source}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The state directory cannot be created.
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
}
