//! PID 1 inside every task microVM: runs the task's containers.

fn main() {}
