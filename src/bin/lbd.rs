//! lbd (being written)
fn main() {}
