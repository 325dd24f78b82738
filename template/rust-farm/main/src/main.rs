//! Entry point of a rust-farm function: the farm runtime around the
//! developer's `handler::handle`. Nothing to edit here; the runtime reads its
//! configuration from the environment (see `farm_runtime::config`).

fn main() -> std::process::ExitCode {
    farm_runtime::run(handler::handle)
}
