//! The `authkeys` binary (being written).
fn main() {}
