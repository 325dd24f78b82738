//! The thumbnail worker binary: the rust-farm runtime around
//! [`thumbnail_worker::handle`].

fn main() -> std::process::ExitCode {
    farm_runtime::run(thumbnail_worker::handle)
}
