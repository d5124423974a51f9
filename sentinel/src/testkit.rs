//! Test and benchmark support: turns rows of the shared vector table
//! ([`sentinel_common::vectors`]) into frames, address plans and remote keys.

use std::net::IpAddr;

use sentinel_common::{abi::RemoteKey, vectors::Vector};

use crate::classify::AddressPlan;

/// The frame of a vector: its hex bytes followed by its zero padding.
pub fn frame(v: &Vector) -> Vec<u8> {
    let hex = v.frame.as_bytes();
    let mut out: Vec<u8> = hex
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).unwrap_or("zz");
            u8::from_str_radix(s, 16).unwrap_or_else(|_| panic!("vector {}: bad hex {s:?}", v.id))
        })
        .collect();
    out.resize(out.len() + v.padding as usize, 0);
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
