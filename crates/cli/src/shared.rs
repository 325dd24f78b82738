//! What farmctl's subcommand groups share, so none of them imports another
//! for it: scenario loading, the simulator-style summary table, JSON and
//! file-name output, timeline plots, policies by name (ONNX Runtime found
//! in the repository's venv), and the stack file.

pub mod output;
pub mod plot;
pub mod policy;
pub mod scenario;
pub mod stack;
pub mod summary;
