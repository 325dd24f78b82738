//! What farmctl's subcommand groups share, so none of them imports another
//! for it: scenario loading and the speedup check, the simulator-style
//! summary table, JSON and file-name output, timeline plots, policies by
//! name (ONNX Runtime found in the repository's venv), the stack file, and
//! log output.

pub mod logging;
pub mod output;
pub mod plot;
pub mod policy;
pub mod scenario;
pub mod stack;
pub mod summary;
