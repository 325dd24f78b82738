//! `farmctl`: the rust-farm command line.
//!
//! One module per subcommand group; this file only parses the command line
//! and dispatches:
//!
//! - `sim` (`farmctl sim scenarios / eval / compare / serve`): policies in
//!   the simulator; `serve` is the simulator behind the FarmControl gRPC
//!   contract;
//! - `local` (`farmctl up / down / status`): a local farm from stack.yml;
//! - `run` (`farmctl run`): a scenario replayed on the local farm;
//! - `calibrate` (`farmctl calibrate`): the live platform measured, and the
//!   calibration file `compare` reads;
//! - `compare` (`farmctl compare`): policies live and in the simulator, side
//!   by side.
//!
//! `shared` holds what several of them use (scenario loading, the summary
//! table, JSON output, plots, policies by name, the stack file). Imports
//! only go down this list: `compare` uses `calibrate`, `run` and `local`;
//! `calibrate` uses `run` and `local`; `run` uses `local`; all use `shared`,
//! which uses none of them.

mod calibrate;
mod compare;
mod local;
mod run;
mod serve;
mod shared;
mod sim;

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
