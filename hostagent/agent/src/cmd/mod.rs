//! The command line: the daemon's flags at the top level (`hostagent [flags]` runs the
//! daemon, as it always has) and two subcommands, one file each.
//!
//! | module | command |
//! | --- | --- |
//! | `vm_flags` | the microVM runtime's flags (daemon and `vm-run`) |
//! | `metrics` | the daemon's `--metrics-listen` listener (`GET /metrics`) |
//! | `daemon` | `hostagent [flags]`: the agent daemon |
//! | `relay` | `hostagent vm-relay ...`: one task's guest-channel relay (started by the daemon) |
//! | `vm_run` | `hostagent vm-run ...`: one task, no control plane |

pub mod daemon;
pub mod metrics;
pub mod relay;
pub mod vm_flags;
pub mod vm_run;

use clap::{CommandFactory, FromArgMatches, Subcommand};

// The subcommands (a plain comment: a doc comment here would become the top-level
// about text). Built once per process: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Sub {
    /// The guest-channel relay of one task (started by the agent, one per task).
    #[command(name = "vm-relay")]
    VmRelay(relay::RelayCli),
    /// Launches one task with the microVM runtime without a control plane: prints the
    /// launch result and every event as JSON lines, stops the task after --run-secs.
    #[command(name = "vm-run")]
    VmRun(vm_run::VmRunCli),
}

/// What the command line asks for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Command {
    /// No subcommand: the daemon.
    Daemon(daemon::DaemonCli),
    /// A subcommand.
    Sub(Sub),
}

/// The whole command line: the daemon's flags and the subcommands. The daemon's
/// required flags are not required with a subcommand, and do not mix with one.
pub fn command() -> clap::Command {
    let daemon = daemon::DaemonCli::command()
        .subcommand_negates_reqs(true)
        .args_conflicts_with_subcommands(true);
    Sub::augment_subcommands(daemon)
}

/// Parses the process's arguments (exits with clap's message and status 2 when they
/// do not parse, 0 after `--help`/`--version`).
pub fn parse() -> Command {
    let matches = command().get_matches();
    let parsed = if matches.subcommand().is_some() {
        Sub::from_arg_matches(&matches).map(Command::Sub)
    } else {
        daemon::DaemonCli::from_arg_matches(&matches).map(Command::Daemon)
    };
    parsed.unwrap_or_else(|e| e.format(&mut command()).exit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_from(args: &[&str]) -> Result<Command, clap::Error> {
        let m = command().try_get_matches_from(args)?;
        if m.subcommand().is_some() {
            Sub::from_arg_matches(&m).map(Command::Sub)
        } else {
            daemon::DaemonCli::from_arg_matches(&m).map(Command::Daemon)
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn no_subcommand_is_the_daemon_with_its_flags() {
        let c = parse_from(&[
            "hostagent",
            "--controlplane",
            "http://127.0.0.1:1",
            "--availability-zone",
            "az1",
            "--runtime",
            "microvm",
            "--vmm-arg=--no-seccomp",
        ]);
        assert!(matches!(c, Ok(Command::Daemon(_))), "{c:?}");
        let e = parse_from(&["hostagent", "--availability-zone", "az1"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn subcommands_keep_their_names_and_flags() {
        let c = parse_from(&[
            "hostagent",
            "vm-relay",
            "--guest-socket",
            "/g",
            "--agent-socket",
            "/a",
            "--uid",
            "1",
            "--gid",
            "2",
            "--boot-timeout-ms",
            "3",
        ]);
        assert!(matches!(c, Ok(Command::Sub(Sub::VmRelay(_)))), "{c:?}");
        let c = parse_from(&[
            "hostagent",
            "vm-run",
            "--task",
            "t.json",
            "--run-secs",
            "12",
            "--adopt",
            "--vmm-bin",
            "/v",
            "--jailer-bin",
            "/j",
            "--guest-kernel",
            "/k",
            "--guest-initramfs",
            "/i",
            "--runtime",
            "microvm",
            "--insecure-registry",
            "10.0.2.2:5000",
        ]);
        assert!(matches!(c, Ok(Command::Sub(Sub::VmRun(_)))), "{c:?}");
        // The daemon's flags do not mix with a subcommand.
        assert!(parse_from(&["hostagent", "--drain", "vm-run", "--task", "t"]).is_err());
        let help = command().render_help().to_string();
        assert!(
            help.contains("vm-relay") && help.contains("vm-run"),
            "{help}"
        );
    }
}
