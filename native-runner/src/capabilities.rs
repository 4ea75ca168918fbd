//! `process.capabilities`: the bounding, effective, inheritable, permitted and ambient sets.
//!
//! [`CapabilitySets::from_spec`] resolves the spec's names to kernel capability numbers in the
//! runtime (where warnings reach the log); the two `apply` steps run in the container init and
//! only make system calls (`prctl`, `capset`) on bit masks: no allocation, no library state.
//!
//! Order in the init (the kernel's rules, not a choice of ours):
//!
//! 1. [`CapabilitySets::apply_bounding`] while the init still holds `CAP_SETPCAP` (before
//!    changing uid);
//! 2. `prctl(PR_SET_KEEPCAPS, 1)`, `setgroups`/`setgid`/`setuid` to `process.user` (keepcaps keeps
//!    the permitted set across a setuid away from 0; the effective set is cleared by the kernel);
//! 3. [`CapabilitySets::apply`]: effective, permitted, inheritable, then ambient.
//!
//! Capabilities are per thread: the init must be single-threaded when it calls these.

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use crate::error::SysContext;
use crate::{Error, Result};

/// Kernel capability names by number (`include/uapi/linux/capability.h`), without `CAP_`.
const NAMES: [&str; 41] = [
    "CHOWN",              // 0
    "DAC_OVERRIDE",       // 1
    "DAC_READ_SEARCH",    // 2
    "FOWNER",             // 3
    "FSETID",             // 4
    "KILL",               // 5
    "SETGID",             // 6
    "SETUID",             // 7
    "SETPCAP",            // 8
    "LINUX_IMMUTABLE",    // 9
    "NET_BIND_SERVICE",   // 10
    "NET_BROADCAST",      // 11
    "NET_ADMIN",          // 12
    "NET_RAW",            // 13
    "IPC_LOCK",           // 14
    "IPC_OWNER",          // 15
    "SYS_MODULE",         // 16
    "SYS_RAWIO",          // 17
    "SYS_CHROOT",         // 18
    "SYS_PTRACE",         // 19
    "SYS_PACCT",          // 20
    "SYS_ADMIN",          // 21
    "SYS_BOOT",           // 22
    "SYS_NICE",           // 23
    "SYS_RESOURCE",       // 24
    "SYS_TIME",           // 25
    "SYS_TTY_CONFIG",     // 26
    "MKNOD",              // 27
    "LEASE",              // 28
    "AUDIT_WRITE",        // 29
    "AUDIT_CONTROL",      // 30
    "SETFCAP",            // 31
    "MAC_OVERRIDE",       // 32
    "MAC_ADMIN",          // 33
    "SYSLOG",             // 34
    "WAKE_ALARM",         // 35
    "BLOCK_SUSPEND",      // 36
    "AUDIT_READ",         // 37
    "PERFMON",            // 38
    "BPF",                // 39
    "CHECKPOINT_RESTORE", // 40
];

/// The kernel number of a spec capability.
pub fn capability_number(cap: Capability) -> u8 {
    match cap {
        Capability::Chown => 0,
        Capability::DacOverride => 1,
        Capability::DacReadSearch => 2,
        Capability::Fowner => 3,
        Capability::Fsetid => 4,
        Capability::Kill => 5,
        Capability::Setgid => 6,
        Capability::Setuid => 7,
        Capability::Setpcap => 8,
        Capability::LinuxImmutable => 9,
        Capability::NetBindService => 10,
        Capability::NetBroadcast => 11,
        Capability::NetAdmin => 12,
        Capability::NetRaw => 13,
        Capability::IpcLock => 14,
        Capability::IpcOwner => 15,
        Capability::SysModule => 16,
        Capability::SysRawio => 17,
        Capability::SysChroot => 18,
        Capability::SysPtrace => 19,
        Capability::SysPacct => 20,
        Capability::SysAdmin => 21,
        Capability::SysBoot => 22,
        Capability::SysNice => 23,
        Capability::SysResource => 24,
        Capability::SysTime => 25,
        Capability::SysTtyConfig => 26,
        Capability::Mknod => 27,
        Capability::Lease => 28,
        Capability::AuditWrite => 29,
        Capability::AuditControl => 30,
        Capability::Setfcap => 31,
        Capability::MacOverride => 32,
        Capability::MacAdmin => 33,
        Capability::Syslog => 34,
        Capability::WakeAlarm => 35,
        Capability::BlockSuspend => 36,
        Capability::AuditRead => 37,
        Capability::Perfmon => 38,
        Capability::Bpf => 39,
        Capability::CheckpointRestore => 40,
    }
}

/// `"CAP_SYS_ADMIN"` for 21; `None` for a number this build has no name for.
pub fn capability_name(number: u8) -> Option<String> {
    NAMES
        .get(usize::from(number))
        .map(|name| format!("CAP_{name}"))
}

/// The highest capability number the running kernel knows
/// (`/proc/sys/kernel/cap_last_cap`; probed with `PR_CAPBSET_READ` when /proc is unavailable).
pub fn last_cap() -> Result<u8> {
    const PATH: &str = "/proc/sys/kernel/cap_last_cap";
    match std::fs::read_to_string(PATH) {
        Ok(text) => text
            .trim()
            .parse::<u8>()
            .map_err(|e| Error::invalid(format!("{PATH}: {:?} is not a number: {e}", text.trim()))),
        Err(read_error) => {
            // PR_CAPBSET_READ fails with EINVAL for numbers the kernel does not know.
            let mut last = None;
            for n in 0..64u8 {
                // SAFETY: plain prctl query.
                if unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(n), 0, 0, 0) }
                    < 0
                {
                    break;
                }
                last = Some(n);
            }
            last.ok_or_else(|| Error::io(format!("read {PATH}"), read_error))
        }
    }
}

/// Every capability name the kernel here supports, `"CAP_..."` upper case, for the runtime's
/// `features` command. Numbers the kernel knows but this build has no name for are left out.
pub fn known_capabilities() -> Vec<String> {
    let last = last_cap().unwrap_or((NAMES.len() - 1) as u8);
    (0..=last).filter_map(capability_name).collect()
}

/// The five sets of `process.capabilities`, resolved to kernel capability numbers (bit `n` of
/// each mask is capability `n`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapabilitySets {
    bounding: u64,
    effective: u64,
    inheritable: u64,
    permitted: u64,
    ambient: u64,
    /// The highest capability number of the running kernel.
    last_cap: u8,
}

impl CapabilitySets {
    /// From the spec. A capability the running kernel does not know (number above
    /// `/proc/sys/kernel/cap_last_cap`) is skipped with a warning, as runc does; `None` sets
    /// mean empty.
    ///
    /// An ambient capability that is not in both the permitted and the inheritable set cannot be
    /// raised (the kernel refuses); it is skipped with a warning, as runc does. An effective
    /// capability that is not permitted is an error (`capset` would fail with `EPERM`).
    pub fn from_spec(caps: &LinuxCapabilities) -> Result<Self> {
        let last_cap = last_cap()?;
        let mask = |set: &Option<Capabilities>, field: &str| -> u64 {
            let mut mask = 0u64;
            for cap in set.iter().flatten() {
                let n = capability_number(*cap);
                if n > last_cap {
                    tracing::warn!(
                        "process.capabilities.{field}: CAP_{cap} is not known to the running \
                         kernel (cap_last_cap is {last_cap}); skipped"
                    );
                } else {
                    mask |= 1 << n;
                }
            }
            mask
        };
        let mut sets = CapabilitySets {
            bounding: mask(caps.bounding(), "bounding"),
            effective: mask(caps.effective(), "effective"),
            inheritable: mask(caps.inheritable(), "inheritable"),
            permitted: mask(caps.permitted(), "permitted"),
            ambient: mask(caps.ambient(), "ambient"),
            last_cap,
        };

        let not_permitted = sets.effective & !sets.permitted;
        if not_permitted != 0 {
            return Err(Error::invalid(format!(
                "process.capabilities.effective: {} not in process.capabilities.permitted; the \
                 kernel only lets a process use permitted capabilities: add {} to permitted or \
                 remove {} from effective",
                names(not_permitted).join(", "),
                if not_permitted.count_ones() == 1 {
                    "it"
                } else {
                    "them"
                },
                if not_permitted.count_ones() == 1 {
                    "it"
                } else {
                    "them"
                },
            )));
        }
        let not_raisable = sets.ambient & !(sets.permitted & sets.inheritable);
        if not_raisable != 0 {
            tracing::warn!(
                "process.capabilities.ambient: {} not in both permitted and inheritable, and the \
                 kernel cannot raise such an ambient capability; skipped",
                names(not_raisable).join(", ")
            );
            sets.ambient &= !not_raisable;
        }
        Ok(sets)
    }

    /// Drops from the bounding set every capability not in `bounding` (`prctl(PR_CAPBSET_DROP)`).
    /// Call while still holding `CAP_SETPCAP`, before changing uid.
    ///
    /// Capabilities already absent from the bounding set are left alone, so that this works
    /// when the runtime itself runs with a reduced bounding set.
    pub fn apply_bounding(&self) -> Result<()> {
        for n in 0..=self.last_cap {
            if self.bounding & (1 << n) != 0 {
                continue;
            }
            let cap = libc::c_ulong::from(n);
            // SAFETY: plain prctl calls on a capability number.
            let present = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) };
            if present <= 0 {
                continue; // 0: already dropped; < 0: unknown to the kernel.
            }
            let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
            nix::errno::Errno::result(rc).ctx(|| {
                format!(
                    "drop {} from the bounding set (prctl PR_CAPBSET_DROP; needs CAP_SETPCAP)",
                    display_name(n)
                )
            })?;
        }
        Ok(())
    }

    /// Sets effective, permitted and inheritable (`capset`), then raises the ambient ones
    /// (`PR_CAP_AMBIENT_RAISE` after clearing all ambient). Call after setuid/setgid (with
    /// `PR_SET_KEEPCAPS` used by the caller across setuid).
    pub fn apply(&self) -> Result<()> {
        let header = CapUserHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        // Version 3 splits each 64-bit set into two 32-bit words, low word first.
        let data = [
            CapUserData {
                effective: self.effective as u32,
                permitted: self.permitted as u32,
                inheritable: self.inheritable as u32,
            },
            CapUserData {
                effective: (self.effective >> 32) as u32,
                permitted: (self.permitted >> 32) as u32,
                inheritable: (self.inheritable >> 32) as u32,
            },
        ];
        // SAFETY: header and two data words as capset(2) v3 expects; the kernel only reads them.
        let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
        nix::errno::Errno::result(rc).ctx(|| {
            format!(
                "set the capabilities (capset effective={:#x} permitted={:#x} inheritable={:#x})",
                self.effective, self.permitted, self.inheritable
            )
        })?;

        // SAFETY: plain prctl calls.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        if rc < 0 {
            let errno = nix::errno::Errno::last();
            // Kernels before 4.3 have no ambient set; nothing to clear, nothing to raise.
            if errno == nix::errno::Errno::EINVAL && self.ambient == 0 {
                return Ok(());
            }
            return Err(Error::sys(
                "clear the ambient capabilities (prctl PR_CAP_AMBIENT_CLEAR_ALL; needs Linux 4.3)",
                errno,
            ));
        }
        for n in 0..=self.last_cap {
            if self.ambient & (1 << n) == 0 {
                continue;
            }
            let rc = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    libc::c_ulong::from(n),
                    0,
                    0,
                )
            };
            nix::errno::Errno::result(rc).ctx(|| {
                format!(
                    "raise ambient {} (prctl PR_CAP_AMBIENT_RAISE)",
                    display_name(n)
                )
            })?;
        }
        Ok(())
    }

    /// The bounding set as a mask (bit `n` = capability `n`), as `CapBnd` in /proc/PID/status.
    pub fn bounding(&self) -> u64 {
        self.bounding
    }

    /// The effective set as a mask, as `CapEff`.
    pub fn effective(&self) -> u64 {
        self.effective
    }

    /// The inheritable set as a mask, as `CapInh`.
    pub fn inheritable(&self) -> u64 {
        self.inheritable
    }

    /// The permitted set as a mask, as `CapPrm`.
    pub fn permitted(&self) -> u64 {
        self.permitted
    }

    /// The ambient set as a mask, as `CapAmb` (without the ambient capabilities skipped by
    /// [`from_spec`](Self::from_spec)).
    pub fn ambient(&self) -> u64 {
        self.ambient
    }
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets in two 32-bit words.
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapUserHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
struct CapUserData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The names of the capabilities of `mask`, for messages.
fn names(mask: u64) -> Vec<String> {
    (0..64u8)
        .filter(|n| mask & (1 << n) != 0)
        .map(display_name)
        .collect()
}

/// `"CAP_KILL"`, or `"capability 45"` for a number without a name.
fn display_name(n: u8) -> String {
    capability_name(n).unwrap_or_else(|| format!("capability {n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[Capability]) -> Option<Capabilities> {
        Some(caps.iter().copied().collect())
    }

    fn mask(caps: &[Capability]) -> u64 {
        caps.iter().fold(0, |m, c| m | 1 << capability_number(*c))
    }

    /// A `LinuxCapabilities` with exactly these sets (its `Default` is not empty).
    fn spec(
        bounding: Option<Capabilities>,
        effective: Option<Capabilities>,
        inheritable: Option<Capabilities>,
        permitted: Option<Capabilities>,
        ambient: Option<Capabilities>,
    ) -> LinuxCapabilities {
        let mut caps = LinuxCapabilities::default();
        caps.set_bounding(bounding)
            .set_effective(effective)
            .set_inheritable(inheritable)
            .set_permitted(permitted)
            .set_ambient(ambient);
        caps
    }

    #[test]
    fn names_and_numbers_agree_with_oci_spec() {
        for (n, name) in NAMES.iter().enumerate() {
            let cap: Capability = name.parse().expect("oci-spec knows the name");
            assert_eq!(usize::from(capability_number(cap)), n, "{name}");
            assert_eq!(capability_name(n as u8).unwrap(), format!("CAP_{name}"));
        }
        assert_eq!(capability_name(21).as_deref(), Some("CAP_SYS_ADMIN"));
        assert_eq!(capability_name(41), None);
        assert_eq!(capability_number(Capability::CheckpointRestore), 40);
    }

    #[test]
    fn known_capabilities_follow_the_kernel() {
        let known = known_capabilities();
        let last = last_cap().unwrap();
        assert_eq!(known.len(), usize::from(last.min(40)) + 1);
        assert_eq!(known[0], "CAP_CHOWN");
        assert!(known.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(known
            .iter()
            .all(|n| n.starts_with("CAP_") && n.to_uppercase() == *n));
    }

    #[test]
    fn from_spec_builds_masks() {
        use Capability::*;
        let sets = CapabilitySets::from_spec(&spec(
            set(&[Chown, Kill, NetBindService]),
            set(&[Kill]),
            set(&[NetBindService]),
            set(&[Kill, NetBindService]),
            set(&[NetBindService]),
        ))
        .unwrap();
        assert_eq!(sets.bounding(), mask(&[Chown, Kill, NetBindService]));
        assert_eq!(sets.effective(), 1 << 5);
        assert_eq!(sets.inheritable(), 1 << 10);
        assert_eq!(sets.permitted(), (1 << 5) | (1 << 10));
        assert_eq!(sets.ambient(), 1 << 10);

        let empty = CapabilitySets::from_spec(&spec(None, None, None, None, None)).unwrap();
        assert_eq!(
            (empty.bounding(), empty.effective(), empty.ambient()),
            (0, 0, 0)
        );
    }

    #[test]
    fn effective_must_be_permitted() {
        use Capability::*;
        let e = CapabilitySets::from_spec(&spec(
            None,
            set(&[Kill, SysAdmin]),
            None,
            set(&[Kill]),
            None,
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("process.capabilities.effective: CAP_SYS_ADMIN not in"),
            "{e}"
        );
    }

    #[test]
    fn unraisable_ambient_capabilities_are_skipped() {
        use Capability::*;
        let sets = CapabilitySets::from_spec(&spec(
            None,
            None,
            set(&[Kill]),
            set(&[Kill, Chown]),
            set(&[Kill, Chown]),
        ))
        .unwrap();
        assert_eq!(sets.ambient(), 1 << 5);
    }

    /// Reads a `Cap...:` mask from /proc/self/status without allocating (for forked children).
    fn status_mask(key: &[u8]) -> Option<u64> {
        let mut buf = [0u8; 16384];
        // SAFETY: open/read/close on a stack buffer.
        let len = unsafe {
            let fd = libc::open(
                c"/proc/self/status".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return None;
            }
            let mut len = 0usize;
            loop {
                let n = libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len);
                if n <= 0 {
                    break;
                }
                len += n as usize;
            }
            libc::close(fd);
            len
        };
        let text = &buf[..len];
        let start = text
            .windows(key.len())
            .position(|w| w == key)
            .map(|p| p + key.len())?;
        let mut value = 0u64;
        for &b in text[start..].iter().skip_while(|b| b.is_ascii_whitespace()) {
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                _ => break,
            };
            value = value << 4 | u64::from(digit);
        }
        Some(value)
    }

    /// 0 when /proc/self/status shows exactly `sets`; else which line differs (10..=14).
    fn check_status(sets: &CapabilitySets) -> i32 {
        let expected = [
            (&b"CapInh:"[..], sets.inheritable(), 10),
            (&b"CapPrm:"[..], sets.permitted(), 11),
            (&b"CapEff:"[..], sets.effective(), 12),
            (&b"CapBnd:"[..], sets.bounding(), 13),
            (&b"CapAmb:"[..], sets.ambient(), 14),
        ];
        for (key, want, code) in expected {
            if status_mask(key) != Some(want) {
                return code;
            }
        }
        0
    }

    fn in_child(child: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child only makes system calls and leaves with _exit.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let code = child();
                // SAFETY: leaving the child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                match nix::sys::wait::waitpid(child, None).expect("waitpid") {
                    nix::sys::wait::WaitStatus::Exited(_, code) => code,
                    other => panic!("test child did not exit normally: {other:?}"),
                }
            }
        }
    }

    /// Root with CAP_SETPCAP, CAP_SETUID, CAP_SETGID, CAP_CHOWN, CAP_KILL, CAP_NET_BIND_SERVICE.
    fn privileged() -> bool {
        let needed = mask(&[
            Capability::Setpcap,
            Capability::Setuid,
            Capability::Setgid,
            Capability::Chown,
            Capability::Kill,
            Capability::NetBindService,
        ]);
        let ok = nix::unistd::geteuid().is_root()
            && status_mask(b"CapEff:").is_some_and(|eff| eff & needed == needed);
        if !ok {
            eprintln!("skipped: needs root with CAP_SETPCAP, CAP_SETUID, CAP_SETGID");
        }
        ok
    }

    fn reduced_sets() -> CapabilitySets {
        use Capability::*;
        CapabilitySets::from_spec(&spec(
            set(&[Chown, Kill, NetBindService, Setpcap, AuditWrite]),
            set(&[Chown, Kill]),
            set(&[Kill, NetBindService]),
            set(&[Chown, Kill, NetBindService]),
            set(&[NetBindService]),
        ))
        .unwrap()
    }

    #[test]
    fn applied_sets_show_in_proc_status() {
        if !privileged() {
            return;
        }
        let sets = reduced_sets();
        let code = in_child(|| {
            if sets.apply_bounding().is_err() {
                return 1;
            }
            if sets.apply().is_err() {
                return 2;
            }
            check_status(&sets)
        });
        assert_eq!(
            code, 0,
            "child check {code} failed (1: bounding, 2: apply, 10..=14: \
                             CapInh, CapPrm, CapEff, CapBnd, CapAmb differ)"
        );
    }

    #[test]
    fn applied_sets_survive_setuid_with_keepcaps() {
        if !privileged() {
            return;
        }
        let sets = reduced_sets();
        let code = in_child(|| {
            if sets.apply_bounding().is_err() {
                return 1;
            }
            // SAFETY: plain system calls in the single-threaded child.
            unsafe {
                // Raw calls: glibc's wrappers would try to reach the parent's other threads.
                if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0
                    || libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
                    || libc::syscall(libc::SYS_setgid, 65534) != 0
                    || libc::syscall(libc::SYS_setuid, 65534) != 0
                {
                    return 3;
                }
                // The kernel cleared the effective set at setuid.
                if status_mask(b"CapEff:") != Some(0) {
                    return 4;
                }
            }
            if sets.apply().is_err() {
                return 2;
            }
            check_status(&sets)
        });
        assert_eq!(
            code, 0,
            "child check {code} failed (1: bounding, 2: apply, 3: setuid, \
                             4: CapEff not cleared, 10..=14: CapInh, CapPrm, CapEff, CapBnd, \
                             CapAmb differ)"
        );
    }
}
