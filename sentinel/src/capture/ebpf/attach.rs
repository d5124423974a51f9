//! Attaching the classifier to an interface, ingress and egress, without disturbing anyone else.
//!
//! - TCX (kernel >= 6.6): one bpf_link per direction, appended after existing programs. With a pin
//!   directory the links are pinned too, so the program keeps counting if the daemon is killed;
//!   the next start swaps its new program into the pinned links atomically (no gap, no double
//!   count) instead of attaching a second copy.
//! - netlink/clsact (older kernels, or forced): a filter per direction. Filters outlive a killed
//!   daemon, so stale filters of *our* program name are removed first; the clsact qdisc is added
//!   when missing and never removed (others may use it).
//!
//! Detaching removes exactly what this module attached, and unpins its links.
//!
//! Checking ([`Attachment::check`]) tells the supervisor whether the attachment is still there:
//! the interface must still exist with the index we attached to, and in TCX mode our program must
//! still be in the interface's TCX chain in both directions (a `bpftool link detach` removes it
//! while our link fd and pin stay); in netlink mode our program must still be a `bpf` filter under
//! clsact ingress and egress (a `tc filter del` removes it), see [`super::filters`].

use std::path::{Path, PathBuf};

use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType,
    links::{FdLink, PinnedLink},
    tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions},
};
use sentinel_common::abi::PROGRAM_NAME;

use super::{AttachMode, EbpfError, prog_err};
use crate::capture::Attached;
pub use crate::config::AttachPreference;

/// One attached direction.
enum Held {
    /// A TCX link pinned at `path`: detaching removes the pin and drops the last fd.
    Pinned { link: FdLink, path: PathBuf },
    /// An unpinned TCX link or a netlink filter: dropping it detaches.
    Plain(SchedClassifierLink),
}

/// The program's attachments to one interface.
pub struct Attachment {
    /// Interface name.
    pub iface: String,
    /// Interface index at attach time (a re-created interface gets a new one).
    pub ifindex: u32,
    /// Mechanism used.
    pub mode: AttachMode,
    held: Vec<Held>,
}

fn tcx_supported() -> bool {
    use aya::util::KernelVersion;
    KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
}

fn direction_name(d: TcAttachType) -> &'static str {
    match d {
        TcAttachType::Ingress => "ingress",
        TcAttachType::Egress => "egress",
        TcAttachType::Custom(_) => "custom",
    }
}

/// Where the link of one direction is pinned.
pub fn link_pin_path(dir: &Path, iface: &str, direction: TcAttachType) -> PathBuf {
    dir.join(format!("link_{iface}_{}", direction_name(direction)))
}

/// Attaches `prog` to `iface` on ingress and egress.
pub fn attach(
    prog: &mut SchedClassifier,
    iface: &str,
    preference: AttachPreference,
    pin_dir: Option<&Path>,
) -> Result<Attachment, EbpfError> {
    let ifindex = nix::net::if_::if_nametoindex(iface).map_err(|e| EbpfError::Interface {
        iface: iface.to_owned(),
        source: e.into(),
    })?;
    let mode = match preference {
        AttachPreference::Auto if tcx_supported() => AttachMode::Tcx,
        AttachPreference::Auto | AttachPreference::Netlink => AttachMode::Netlink,
        AttachPreference::Tcx => AttachMode::Tcx,
    };
    let mut attachment = Attachment {
        iface: iface.to_owned(),
        ifindex,
        mode,
        held: Vec::new(),
    };
    for direction in [TcAttachType::Ingress, TcAttachType::Egress] {
        let held = match (mode, pin_dir) {
            (AttachMode::Tcx, Some(dir)) => attach_tcx_pinned(prog, iface, direction, dir)?,
            (AttachMode::Tcx, None) => Held::Plain(attach_fresh(prog, iface, direction, mode)?),
            (AttachMode::Netlink, _) => {
                remove_stale_filters(iface, direction);
                Held::Plain(attach_fresh(prog, iface, direction, mode)?)
            }
        };
        attachment.held.push(held);
    }
    Ok(attachment)
}

fn attach_fresh(
    prog: &mut SchedClassifier,
    iface: &str,
    direction: TcAttachType,
    mode: AttachMode,
) -> Result<SchedClassifierLink, EbpfError> {
    let options = match mode {
        AttachMode::Tcx => TcAttachOptions::TcxOrder(LinkOrder::default()),
        AttachMode::Netlink => {
            // EEXIST only means a clsact qdisc is there already (ours or someone else's).
            if let Err(e) = tc::qdisc_add_clsact(iface) {
                tracing::debug!(iface, error = %e, "clsact qdisc not added (probably present)");
            }
            TcAttachOptions::Netlink(NlOptions::default())
        }
    };
    let what = || {
        format!(
            "attaching to {iface} ({}, {mode})",
            direction_name(direction)
        )
    };
    let id = prog
        .attach_with_options(iface, direction, options)
        .map_err(prog_err(what()))?;
    prog.take_link(id).map_err(prog_err(what()))
}

/// Reuses the pinned link of a previous run when it still works, else attaches and pins anew.
fn attach_tcx_pinned(
    prog: &mut SchedClassifier,
    iface: &str,
    direction: TcAttachType,
    dir: &Path,
) -> Result<Held, EbpfError> {
    let path = link_pin_path(dir, iface, direction);
    if path.exists() {
        match reuse_pinned(prog, &path) {
            Ok(link) => {
                tracing::info!(
                    iface,
                    direction = direction_name(direction),
                    "took over the pinned link of a previous run"
                );
                return Ok(Held::Pinned { link, path });
            }
            Err(e) => {
                // Typically the interface was re-created and the old link is defunct.
                tracing::warn!(path = %path.display(), error = %e, "pinned link unusable; attaching anew");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let link = attach_fresh(prog, iface, direction, AttachMode::Tcx)?;
    let fd_link = FdLink::try_from(link).map_err(|e| EbpfError::Link {
        path: path.clone(),
        source: e,
    })?;
    let pinned: PinnedLink = fd_link.pin(&path).map_err(|source| EbpfError::PinLink {
        path: path.clone(),
        source,
    })?;
    Ok(Held::Pinned {
        link: pinned.into(),
        path,
    })
}

fn reuse_pinned(prog: &mut SchedClassifier, path: &Path) -> Result<FdLink, EbpfError> {
    let err = |source| EbpfError::Link {
        path: path.to_owned(),
        source,
    };
    let old = PinnedLink::from_pin(path).map_err(err)?;
    let link = SchedClassifierLink::try_from(FdLink::from(old)).map_err(err)?;
    let id = prog.attach_to_link(link).map_err(prog_err(format!(
        "replacing the program in {}",
        path.display()
    )))?;
    let link = prog
        .take_link(id)
        .map_err(prog_err("taking the link back"))?;
    FdLink::try_from(link).map_err(err)
}

/// Removes netlink filters running a program of our name (left by a killed daemon).
fn remove_stale_filters(iface: &str, direction: TcAttachType) {
    match tc::qdisc_detach_program(iface, direction, PROGRAM_NAME) {
        Ok(()) => tracing::warn!(
            iface,
            direction = direction_name(direction),
            "removed a stale filter of a previous run"
        ),
        Err(e) => tracing::debug!(iface, error = %e, "no stale filter to remove"),
    }
}

impl Attachment {
    /// Whether the program is still attached here; `program_id` is ours.
    pub fn check(&self, program_id: Option<u32>) -> Attached {
        match nix::net::if_::if_nametoindex(self.iface.as_str()) {
            Ok(index) if index == self.ifindex => {}
            Ok(index) => {
                return Attached::InterfaceChanged(format!(
                    "interface {} was re-created (ifindex {} -> {index})",
                    self.iface, self.ifindex
                ));
            }
            Err(nix::errno::Errno::ENODEV) => {
                return Attached::InterfaceChanged(format!("interface {} disappeared", self.iface));
            }
            Err(e) => {
                return Attached::Unknown(format!(
                    "looking up interface {} failed: {e}",
                    self.iface
                ));
            }
        }
        let Some(ours) = program_id else {
            return Attached::Unknown("our program id is unknown".into());
        };
        if self.mode == AttachMode::Netlink {
            for (direction, parent) in [
                ("ingress", super::filters::PARENT_INGRESS),
                ("egress", super::filters::PARENT_EGRESS),
            ] {
                match super::filters::has_program(self.ifindex, parent, ours) {
                    Ok(true) => {}
                    Ok(false) => {
                        return Attached::Lost(format!(
                            "our clsact {direction} filter on {} was removed by someone else",
                            self.iface
                        ));
                    }
                    Err(e) => {
                        return Attached::Unknown(format!(
                            "listing the clsact {direction} filters of {} failed: {e}",
                            self.iface
                        ));
                    }
                }
            }
            return Attached::Yes;
        }
        for direction in [TcAttachType::Ingress, TcAttachType::Egress] {
            match SchedClassifier::query_tcx(&self.iface, direction) {
                Ok((_, programs)) if programs.iter().any(|p| p.id() == ours) => {}
                Ok(_) => {
                    return Attached::Lost(format!(
                        "our TCX {} link on {} was detached by someone else",
                        direction_name(direction),
                        self.iface
                    ));
                }
                Err(e) => {
                    return Attached::Unknown(format!(
                        "querying the TCX {} chain of {} failed: {}",
                        direction_name(direction),
                        self.iface,
                        crate::error_chain(&e)
                    ));
                }
            }
        }
        Attached::Yes
    }

    /// Detaches both directions and removes link pins.
    pub fn detach(self) -> Result<(), EbpfError> {
        for held in self.held {
            match held {
                Held::Pinned { link, path } => {
                    // Unpinning and closing the last fd releases the link, which detaches it.
                    if let Err(source) = std::fs::remove_file(&path)
                        && source.kind() != std::io::ErrorKind::NotFound
                    {
                        return Err(EbpfError::Unpin { path, source });
                    }
                    drop(link);
                }
                Held::Plain(link) => drop(link),
            }
        }
        Ok(())
    }

    /// Forgets the attachments without detaching (what a killed daemon leaves behind; tests only).
    pub fn abandon(self) {
        for held in self.held {
            match held {
                Held::Pinned { link, .. } => drop(link),
                Held::Plain(link) => std::mem::forget(link),
            }
        }
    }
}
