//! `jailer`: starts one vmm process confined. See jailer/README.md.

use clap::Parser;
use jailer::cli::Cli;
use jailer::{cleanup, fds, run, validate};

fn main() {
    let cli = Cli::parse();
    if let Err(e) = fds::ensure_stdio().and_then(|()| fds::close_inherited()) {
        eprintln!("jailer: {e}");
        std::process::exit(1);
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    if cli.cleanup {
        match cleanup::run(&cli) {
            Ok(removed) => {
                for p in removed {
                    println!("removed {}", p.display());
                }
            }
            Err(e) => {
                eprintln!("jailer: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    match validate::plan(&cli).and_then(|plan| run::run(&plan)) {
        Ok(outcome) => run::mirror(outcome),
        Err(e) => {
            eprintln!("jailer: {e}");
            std::process::exit(1);
        }
    }
}
