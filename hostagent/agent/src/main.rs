//! The host agent: turns control-plane launches into running microVM tasks.

fn main() {}
