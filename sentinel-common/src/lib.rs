//! The kernel<->user contract of NetTraffic-Sentinel and the counting rules.
//!
//! This crate is `no_std` and is compiled twice: into the eBPF TC program (`sentinel-ebpf`) and into
//! the daemon (`sentinel`, with the `user` feature). Everything that decides *whether* and *how much*
//! a frame counts lives here, exactly once, so that the kernel classifier and the AF_PACKET fallback
//! cannot drift apart:
//! - [`abi`]: map names, `#[repr(C)]` key/value types and their indices;
//! - [`addr`]: the built-in non-public address sets and the per-address flags pushed from userspace;
//! - [`frame`]: the frame parser (Ethernet, one VLAN tag, PPPoE session, or raw IP; IPv4, IPv6)
//!   and the length rules;
//! - [`owner`]: whether a received frame is the NAS's or another host's (its MAC set);
//! - [`rules`]: the direction matrix;
//! - [`account`]: parse + classify + GSO correction, the single entry point both worlds call;
//! - [`record`]: what an accounted frame adds to which counter, and the one overflow rule;
//! - [`service`]: which service (protocol, port, server or client) a public packet belongs to.
//!
//! It must not know about aya's loader, maps' userspace handles, sockets or time.
#![no_std]

pub mod abi;
pub mod account;
pub mod addr;
pub mod frame;
pub mod owner;
pub mod record;
pub mod rules;
pub mod service;
pub mod service_vectors;
pub mod vectors;
