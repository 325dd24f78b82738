//! The sleep worker binary: the farm runtime around [`handler::handle`].
//!
//! The workspace's own build of this handler (binary `sleep-worker`); a
//! faas-cli build context builds the same handler into the template's main.

fn main() -> std::process::ExitCode {
    farm_runtime::run(handler::handle)
}
