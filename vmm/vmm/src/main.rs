//! The `vmm` binary.

use clap::Parser;

fn main() {
    let cli = vmm::cli::Cli::parse();
    let code = vmm::run::run(cli);
    // vCPU threads may still be inside KVM_RUN: end the process without joining them.
    std::process::exit(code);
}
