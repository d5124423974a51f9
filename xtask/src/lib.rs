//! The parts of xtask that tests and benchmarks use too: the network-namespace lab.

pub mod lab;
