//! The sleep worker binary: the farm runtime around [`sleep_worker::handle`].

fn main() -> std::process::ExitCode {
    farm_runtime::run(sleep_worker::handle)
}
