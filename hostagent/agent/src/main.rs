//! `hostagent`: the host agent daemon and its two helper subcommands.
//!
//! Modules, in dependency order (the library first, see `lib.rs` for its map):
//! - `hostagent` (the library): `image`, `host`, `vm`.
//! - `cmd::vm_flags`: the microVM runtime's flags, shared by the daemon and `vm-run`.
//! - `cmd::metrics`: the daemon's `--metrics-listen` listener (`GET /metrics`).
//! - `cmd::daemon`: `hostagent [flags]`: registers with the control plane, holds the
//!   agent channel, applies launches and stops (SIGTERM: clean exit; SIGUSR1: drain).
//! - `cmd::relay`: `hostagent vm-relay ...`: one task's guest-channel relay, started by
//!   the daemon (see `hostagent::vm::relay`).
//! - `cmd::vm_run`: `hostagent vm-run ...`: one task without a control plane.
//! - `cmd`: the clap command line (daemon flags at the top level, the subcommands).
//! - `main` (here): parses and dispatches.

mod cmd;

use cmd::{Command, Sub};

fn main() {
    match cmd::parse() {
        Command::Daemon(cli) => cmd::daemon::run(cli),
        Command::Sub(Sub::VmRelay(cli)) => std::process::exit(cmd::relay::run(cli)),
        Command::Sub(Sub::VmRun(cli)) => std::process::exit(cmd::vm_run::run(cli)),
    }
}
