//! The TC classifier: one program, attached on ingress and egress of the monitored interface.
//!
//! For every frame it calls [`sentinel_common::owner::check`] (a received frame for another MAC
//! counts only when the MAC is one of the NAS's, `SNT_MACS`),
//! [`sentinel_common::account::account`] with the link kind userspace set (Ethernet or raw IP)
//! and [`sentinel_common::record::record`] then [`sentinel_common::service::record_service`], the
//! same code the AF_PACKET fallback runs, which adds the result to per-CPU maps. It fails open: whatever happens, the
//! packet continues unchanged (`TC_ACT_UNSPEC`, which is `TCX_NEXT` under TCX), and errors only
//! bump a per-CPU counter. No per-packet logging.
#![no_std]
#![no_main]

mod maps;
mod skb;

use aya_ebpf::{macros::classifier, programs::TcContext};
use sentinel_common::{
    abi::{ErrorKind, PACKET_OTHERHOST},
    account::account,
    owner,
    record::record,
    service::record_service,
};

/// "Continue": the next TCX program or clsact filter decides, as if we were not there.
const TC_ACT_UNSPEC: i32 = -1;

#[classifier]
pub fn sentinel_tc(ctx: TcContext) -> i32 {
    match try_sentinel_tc(&ctx) {
        Ok(()) => {}
        Err(kind) => maps::count_error(kind),
    }
    TC_ACT_UNSPEC
}

/// An empty classifier, never attached: the baseline `cargo xtask bench classifier` measures in the
/// same run as [`sentinel_tc`].
#[classifier]
pub fn sentinel_nop(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

fn try_sentinel_tc(ctx: &TcContext) -> Result<(), ErrorKind> {
    // SAFETY: the context pointer the kernel handed us; both fields are readable for TC.
    let (pkt_type, ingress_ifindex) =
        unsafe { ((*ctx.skb.skb).pkt_type, (*ctx.skb.skb).ingress_ifindex) };
    // Received frames for another MAC (promiscuous NIC, flooding bridge) are not the NAS's, unless
    // the MAC is one of its macvlan children's (sentinel_common::owner). On egress pkt_type is
    // not about us (ingress_ifindex is 0 for locally sent packets).
    let frame = skb::SkbFrame::new(ctx);
    let link = maps::link_kind();
    let other_host = ingress_ifindex != 0 && pkt_type == PACKET_OTHERHOST;
    owner::check(&frame, link, other_host, &maps::OwnMacs)?;
    let acc = account(&frame, link, frame.gso_segs(), &maps::AddrTries)?;
    let mut counters = maps::KernelCounters::current();
    record(&mut counters, &acc);
    if maps::services_on() {
        record_service(&mut counters, &frame, &acc, &maps::Listening);
    }
    Ok(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
