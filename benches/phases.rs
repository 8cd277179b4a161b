//! Micro-benchmarks of the exchange path's phases (placeholder; filled in below).
fn main() {}
