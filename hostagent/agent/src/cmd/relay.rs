//! `hostagent vm-relay`: the guest-channel relay of one task (started by the agent
//! itself, one per task; see [`hostagent::vm::relay`]).

use hostagent::vm::relay::{self, RelayArgs};
use std::path::PathBuf;
use std::time::Duration;

/// `hostagent vm-relay --guest-socket P --agent-socket P --uid U --gid G
/// --boot-timeout-ms MS [--queue-bytes N]`.
#[derive(Debug, clap::Args)]
pub struct RelayCli {
    /// Where the guest's connection arrives (`<jail>/run/v.sock_1024`).
    #[arg(long)]
    guest_socket: PathBuf,
    /// The socket the agent connects to.
    #[arg(long)]
    agent_socket: PathBuf,
    /// Owner of the guest socket (the jailed vmm's uid).
    #[arg(long)]
    uid: u32,
    /// Group of the guest socket.
    #[arg(long)]
    gid: u32,
    /// How long to wait for the guest to connect.
    #[arg(long)]
    boot_timeout_ms: u64,
    /// Bytes of guest messages held for the agent (the oldest log lines are dropped
    /// beyond, with a marker line).
    #[arg(long, default_value_t = relay::DEFAULT_QUEUE_BYTES)]
    queue_bytes: usize,
}

/// Runs the relay; the process exit code (0, or 1 after printing why).
pub fn run(cli: RelayCli) -> i32 {
    let r = relay::run(&RelayArgs {
        guest_socket: cli.guest_socket,
        agent_socket: cli.agent_socket,
        owner: (cli.uid, cli.gid),
        boot_timeout: Duration::from_millis(cli.boot_timeout_ms),
        queue_bytes: cli.queue_bytes,
    });
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("vm-relay: {e}");
            1
        }
    }
}
