//! The supervisor driven with the fakes of [`super::fakes`] on tokio's paused clock: every case
//! of re-attaching, retrying, repairing and shutting down, and where counting starts.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use sentinel_common::abi::{Verdict, totals_index};

use super::{
    RunError,
    fakes::{INSTANCE, Shared, World, start, start_with},
};
use crate::{drain::Checkpoint, status::CaptureState};

async fn sleep(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn reattaches_after_the_ifindex_changes() {
    let h = start(World::default());
    sleep(1.5).await;
    assert_eq!(h.status().state, CaptureState::Running);
    assert_eq!(h.status().ifindex, Some(2));
    h.world.lock().ifindex = 9;
    h.events.send(()).await.expect("event");
    sleep(0.2).await;
    let s = h.status();
    assert!(
        matches!(s.state, CaptureState::Down(_)),
        "unconfirmed until the next check"
    );
    assert_eq!(
        h.world.lock().attached_to,
        Some(9),
        "but attached (counting) at once"
    );
    sleep(1.0).await;
    let s = h.status();
    assert_eq!(
        (s.state, s.ifindex, s.reattachments),
        (CaptureState::Running, Some(9), 1)
    );
    assert_eq!(h.world.lock().attached_to, Some(9));
    let (done, _) = h.stop().await;
    assert!(done.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_failed_attach_is_retried_with_backoff_until_it_succeeds() {
    let h = start(World {
        attach_failures: 3,
        ..World::default()
    });
    let s = h.status();
    assert!(matches!(s.state, CaptureState::Down(_)), "{:?}", s.state);
    assert_eq!(s.attach_attempts, 1);
    // Attempts at +1 s, then +2 s, then +4 s: the third retry (7 s after start) succeeds.
    sleep(1.5).await;
    assert_eq!(h.status().attach_attempts, 2);
    sleep(2.0).await;
    assert_eq!(h.status().attach_attempts, 3);
    assert!(matches!(h.status().state, CaptureState::Down(_)));
    sleep(4.0).await;
    let s = h.status();
    assert_eq!((s.state, s.attach_attempts), (CaptureState::Running, 0));
    assert_eq!(h.world.lock().attaches, 1);
    let (done, _) = h.stop().await;
    assert!(done.is_ok());
}

#[tokio::test(start_paused = true)]
async fn an_external_detach_is_detected_within_a_few_seconds_and_repaired() {
    let h = start(World::default());
    sleep(1.5).await;
    h.world.lock().up_bytes = 1000;
    sleep(1.0).await;
    // Someone runs `bpftool link detach`: our program leaves the chain, our fd stays.
    h.world.lock().link_present = false;
    // Checked every 2 drains (at 2 s and 4 s): noticed at 4 s, re-attached at once, confirmed at
    // the 5 s drain.
    sleep(1.7).await;
    let s = h.status();
    assert_eq!(s.external_detaches, 1);
    assert!(
        matches!(s.state, CaptureState::Down(_)),
        "503 until confirmed"
    );
    assert!(h.world.lock().link_present, "re-attached at once");
    sleep(1.0).await;
    let s = h.status();
    assert_eq!(s.state, CaptureState::Running, "confirmed");
    assert_eq!(s.reattachments, 1);
    assert!(h.world.lock().link_present);
    h.world.lock().up_bytes = 1500;
    let (done, world) = h.stop().await;
    assert!(done.is_ok());
    assert_eq!(world.lock().booked_up, 1500, "counting resumed exactly");
}

#[tokio::test(start_paused = true)]
async fn a_vanished_interface_is_waited_for_and_reattached_when_it_returns() {
    let h = start(World::default());
    sleep(1.5).await;
    h.world.lock().iface_present = false;
    h.events.send(()).await.expect("event");
    sleep(0.2).await;
    let s = h.status();
    assert_eq!(s.ifindex, None);
    let CaptureState::Down(reason) = &s.state else {
        panic!("expected down, got {:?}", s.state);
    };
    assert!(reason.contains("eth0"), "{reason}");
    // Retries while it is gone fail and back off; none of them attaches.
    sleep(10.0).await;
    assert!(h.status().attach_attempts >= 2);
    assert_eq!(h.world.lock().attached_to, None);
    {
        let mut w = h.world.lock();
        w.iface_present = true;
        w.ifindex = 12;
    }
    h.events.send(()).await.expect("event");
    sleep(1.2).await;
    let s = h.status();
    assert_eq!((s.state, s.ifindex), (CaptureState::Running, Some(12)));
    let (done, _) = h.stop().await;
    assert!(done.is_ok());
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_then_flushes_then_detaches() {
    let h = start(World::default());
    sleep(2.5).await;
    h.world.lock().order.clear();
    h.world.lock().up_bytes = 4242;
    let (done, world) = h.stop().await;
    assert!(done.is_ok());
    let w = world.lock();
    assert_eq!(w.order, ["drain", "flush", "detach"]);
    assert_eq!(w.booked_up, 4242, "the last drain's bytes were flushed");
}

#[tokio::test(start_paused = true)]
async fn a_failed_map_read_is_retried_reported_and_detaches_nothing() {
    let h = start(World::default());
    sleep(1.5).await;
    {
        let mut w = h.world.lock();
        w.snapshot_failures = 3;
        w.up_bytes = 800;
        w.order.clear();
    }
    sleep(3.0).await;
    let s = h.status();
    assert_eq!(s.environment_errors, 3);
    assert!(
        s.last_environment_error
            .as_deref()
            .is_some_and(|e| e.contains("reading the maps")),
        "{:?}",
        s.last_environment_error
    );
    assert_eq!(s.state, CaptureState::Running);
    assert!(
        !h.world.lock().order.contains(&"detach"),
        "nothing detached"
    );
    sleep(1.0).await;
    assert_eq!(
        h.world.lock().booked_up,
        800,
        "nothing lost across the failed reads"
    );
    // A failed interface read (EMFILE) is not "the interface vanished".
    h.world.lock().iface_read_failures = 1;
    h.events.send(()).await.expect("event");
    sleep(0.2).await;
    let s = h.status();
    assert_eq!(
        (s.state, s.ifindex, s.environment_errors),
        (CaptureState::Running, Some(2), 4)
    );
    let (done, _) = h.stop().await;
    assert!(done.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_failed_final_drain_still_flushes_and_detaches() {
    let h = start(World::default());
    sleep(1.5).await;
    {
        let mut w = h.world.lock();
        w.snapshot_failures = 100;
        w.order.clear();
    }
    let (done, world) = h.stop().await;
    assert!(done.is_ok());
    assert_eq!(world.lock().order, ["drain", "flush", "detach"]);
}

fn committed(world: &Shared) -> Checkpoint {
    let w = world.lock();
    let bytes = w.committed.as_deref().expect("a committed checkpoint");
    Checkpoint::from_bytes(bytes).expect("decodable")
}

#[tokio::test(start_paused = true)]
async fn new_maps_commit_their_checkpoint_before_counting() {
    let h = start(World::default());
    // Before the first drain: the checkpoint of these maps (zero base) is already committed.
    let cp = committed(&h.world);
    assert_eq!(
        (cp.instance, cp.totals.verdict(Verdict::Up).ip_bytes),
        (INSTANCE, 0)
    );
    h.world.lock().up_bytes = 300;
    let (done, world) = h.stop().await;
    assert!(done.is_ok());
    assert_eq!(world.lock().booked_up, 300);
}

#[tokio::test(start_paused = true)]
async fn reused_maps_without_a_checkpoint_become_the_baseline() {
    let h = start(World {
        reused: true,
        up_bytes: 732_000_000,
        checkpoint_read_failures: 2,
        ..World::default()
    });
    let cp = committed(&h.world);
    assert_eq!(
        cp.totals.verdict(Verdict::Up).ip_bytes,
        732_000_000,
        "baseline committed"
    );
    sleep(2.5).await;
    assert_eq!(h.world.lock().booked_up, 0, "no phantom traffic");
    h.world.lock().up_bytes += 5000;
    let (done, world) = h.stop().await;
    assert!(done.is_ok());
    assert_eq!(world.lock().booked_up, 5000, "then exact");
}

#[tokio::test(start_paused = true)]
async fn reused_maps_resume_from_their_own_checkpoint() {
    let mut base = Checkpoint {
        instance: INSTANCE,
        ..Checkpoint::default()
    };
    base.totals.slots[totals_index(Verdict::Up, 0) as usize].ip_bytes = 1000;
    let h = start(World {
        reused: true,
        up_bytes: 1600,
        committed: Some(base.to_bytes()),
        ..World::default()
    });
    let (done, world) = h.stop().await;
    assert!(done.is_ok());
    assert_eq!(
        world.lock().booked_up,
        600,
        "what the kernel counted while we were away"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_checkpoint_is_fatal_not_count_from_zero() {
    let world = Shared(Arc::new(Mutex::new(World {
        reused: true,
        up_bytes: 10_000,
        checkpoint_read_failures: 100,
        ..World::default()
    })));
    let result = start_with(world.clone());
    let Err(RunError::Checkpoint { attempts, .. }) = result else {
        panic!("expected a checkpoint error");
    };
    assert_eq!(attempts, 3);
    let w = world.lock();
    assert_eq!(
        (w.booked_up, w.attaches),
        (0, 0),
        "nothing counted, nothing attached"
    );
}

#[tokio::test(start_paused = true)]
async fn the_listening_ports_are_pushed_at_start_and_when_they_change() {
    use sentinel_common::abi::ListenKey;
    let smb = ListenKey::new(6, 445);
    let wg = ListenKey::new(17, 51820);
    let h = start(World {
        listen_now: vec![smb],
        ..World::default()
    });
    sleep(0.5).await;
    assert_eq!(h.world.lock().listening, vec![smb], "pushed at start");
    h.world.lock().listen_now = vec![smb, wg];
    sleep(2.0).await;
    assert_eq!(
        h.world.lock().listening,
        vec![smb],
        "not before the refresh"
    );
    sleep(4.0).await;
    assert_eq!(
        h.world.lock().listening,
        vec![smb, wg],
        "pushed at the refresh"
    );
    let owners = h.status().listeners;
    assert_eq!(
        owners.iter().map(|l| l.key).collect::<Vec<_>>(),
        vec![smb, wg],
        "the owners are read with the new set"
    );
    let (done, _) = h.stop().await;
    assert!(done.is_ok());
}
