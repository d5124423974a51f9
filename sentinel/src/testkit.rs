//! Test and benchmark support: turns rows of the shared vector table
//! ([`sentinel_common::vectors`]) into frames, address plans and remote keys. Built only for tests
//! and with the `testkit` feature (the integration tests and benchmarks turn it on); a bad row of
//! the table is a bug in the test, so it panics with the row's id.
#![allow(
    clippy::panic,
    reason = "test support: a malformed vector row must stop the test that uses it"
)]

use std::net::IpAddr;

use sentinel_common::{
    abi::{ListenKey, RemoteKey},
    service_vectors::{SERVICE_LOCALS, ServiceVector},
    vectors::Vector,
};

use crate::classify::AddressPlan;

/// The frame of a vector: its hex bytes followed by its zero padding.
pub fn frame(v: &Vector) -> Vec<u8> {
    hex_frame(v.id, v.frame, v.padding)
}

/// The frame of a per-service vector: its hex bytes followed by its zero padding.
pub fn service_frame(v: &ServiceVector) -> Vec<u8> {
    hex_frame(v.id, v.frame, v.padding)
}

/// The listening set of a per-service vector.
pub fn service_listen(v: &ServiceVector) -> Vec<ListenKey> {
    v.listen
        .iter()
        .map(|&(proto, port)| ListenKey::new(proto, port))
        .collect()
}

/// The address plan of every per-service vector.
pub fn service_plan() -> AddressPlan {
    AddressPlan {
        locals: SERVICE_LOCALS
            .iter()
            .map(|s| {
                s.parse()
                    .unwrap_or_else(|_| panic!("service vectors: bad local {s:?}"))
            })
            .collect(),
        ..AddressPlan::default()
    }
}

fn hex_frame(id: &str, hex: &str, padding: u32) -> Vec<u8> {
    let hex = hex.as_bytes();
    let mut out: Vec<u8> = hex
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).unwrap_or("zz");
            u8::from_str_radix(s, 16).unwrap_or_else(|_| panic!("vector {id}: bad hex {s:?}"))
        })
        .collect();
    out.resize(out.len() + padding as usize, 0);
    out
}

/// The address plan of a vector.
pub fn plan(v: &Vector) -> AddressPlan {
    let parse = |what: &str, s: &&str| -> String { format!("vector {}: bad {what} {s:?}", v.id) };
    AddressPlan {
        locals: v
            .locals
            .iter()
            .map(|s| {
                s.parse()
                    .unwrap_or_else(|_| panic!("{}", parse("local", s)))
            })
            .collect(),
        lan_prefixes: v
            .lan_prefixes
            .iter()
            .map(|s| {
                s.parse()
                    .unwrap_or_else(|_| panic!("{}", parse("prefix", s)))
            })
            .collect(),
        inside: v
            .inside
            .iter()
            .map(|s| {
                s.parse()
                    .unwrap_or_else(|_| panic!("{}", parse("prefix", s)))
            })
            .collect(),
        public: v
            .public
            .iter()
            .map(|s| {
                s.parse()
                    .unwrap_or_else(|_| panic!("{}", parse("prefix", s)))
            })
            .collect(),
        link: v.link,
        own_macs: Vec::new(),
    }
}

/// The key of a remote address written as a string.
pub fn remote_key(addr: &str) -> RemoteKey {
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => RemoteKey::v4(a.octets()),
        Ok(IpAddr::V6(a)) => RemoteKey::v6(a.octets()),
        Err(_) => panic!("bad remote address {addr:?}"),
    }
}
