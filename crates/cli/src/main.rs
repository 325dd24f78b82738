//! `farmctl`: the rust-farm command line.
//!
//! Subcommands live in their own modules; this file only parses the command
//! line and dispatches. `farmctl sim ...` evaluates autoscaling policies in
//! the discrete-event simulator (see `sim.rs`). `farmctl up / down / status`
//! run a local farm from stack.yml (`local.rs`, `stack.rs`); `farmctl run`
//! replays a scenario on it (`run.rs`); `farmctl compare` runs policies live
//! and in the simulator side by side (`compare.rs`), with the platform
//! figures `farmctl calibrate` measures (`calibrate.rs`).

mod calibrate;
mod compare;
mod local;
mod plot;
mod run;
mod serve;
mod sim;
mod stack;

use clap::{Parser, Subcommand};

/// The rust-farm command line.
#[derive(Debug, Parser)]
#[command(name = "farmctl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate and compare policies in the simulator.
    Sim(sim::SimArgs),
    /// Start a local farm from stack.yml: nats-server, the local provider, gateway-ext, the functions.
    Up(local::UpArgs),
    /// Stop the local farm and clean its run-time state.
    Down(local::DownArgs),
    /// Show the local farm's functions, replicas, queue depth and QoS.
    Status(local::StatusArgs),
    /// Replay a scenario on the local farm and report its metrics.
    Run(run::RunArgs),
    /// Run a scenario live (fresh local farm per policy) and in the simulator, side by side.
    Compare(compare::CompareArgs),
    /// Measure the live local platform and write a `platform:` section for scenario files.
    Calibrate(calibrate::CalibrateArgs),
    /// The process `farmctl up` leaves running (internal).
    #[command(name = "__supervise", hide = true)]
    Supervise(local::SuperviseArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(args) => sim::run(args),
        Command::Up(args) => local::up(args),
        Command::Down(args) => local::down(args),
        Command::Status(args) => local::status(args),
        Command::Run(args) => run::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Calibrate(args) => calibrate::run(args),
        Command::Supervise(args) => local::supervise(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("farmctl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
