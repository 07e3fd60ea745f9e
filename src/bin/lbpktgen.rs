//! lbpktgen (being written)
fn main() {}
