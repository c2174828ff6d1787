//! sandbox-cli
fn main() {}
