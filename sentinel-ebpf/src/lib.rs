#![no_std]
// The library target exists so that `cargo clippy` can check this crate's modules for the host.
