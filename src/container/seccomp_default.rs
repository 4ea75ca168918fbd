//! Pouch's default seccomp profile for `pouch run`: everything is allowed except what lets a
//! process reach the kernel's global state or leave its namespaces. Each group is denied unless
//! the container holds the capability that would make it legitimate (as Docker's default
//! profile does), and `--privileged` or `--security-opt seccomp=unconfined` drop the profile.
//!
//! A denylist (not Docker's allowlist) so that new syscalls of newer kernels keep working; the
//! syscalls that matter are named here, each group with its reason.

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// Denied unless the capability (without `CAP_`) is held; `None`: always denied.
const GROUPS: &[(Option<&str>, &[&str])] = &[
    // The kernel keyring is not namespaced.
    (None, &["add_key", "keyctl", "request_key"]),
    // Obsolete or debugging interfaces with a history of holes.
    (
        None,
        &[
            "lookup_dcookie",
            "nfsservctl",
            "uselib",
            "ustat",
            "sysfs",
            "_sysctl",
            "vm86",
            "vm86old",
            "get_kernel_syms",
            "query_module",
            "create_module",
            "userfaultfd",
        ],
    ),
    // Mounts, namespaces, swap, quotas.
    (
        Some("SYS_ADMIN"),
        &[
            "mount",
            "umount",
            "umount2",
            "unshare",
            "setns",
            "pivot_root",
            "swapon",
            "swapoff",
            "quotactl",
            "quotactl_fd",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "fanotify_init",
            "name_to_handle_at",
            "bpf",
            "perf_event_open",
            "lsm_set_self_attr",
        ],
    ),
    (Some("DAC_READ_SEARCH"), &["open_by_handle_at"]),
    (
        Some("SYS_MODULE"),
        &["init_module", "finit_module", "delete_module"],
    ),
    (
        Some("SYS_TIME"),
        &[
            "settimeofday",
            "stime",
            "clock_settime",
            "clock_settime64",
            "clock_adjtime",
            "clock_adjtime64",
        ],
    ),
    (
        Some("SYS_BOOT"),
        &["reboot", "kexec_load", "kexec_file_load"],
    ),
    (
        Some("SYS_PTRACE"),
        &[
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "kcmp",
            "pidfd_getfd",
        ],
    ),
    (Some("SYS_RAWIO"), &["iopl", "ioperm"]),
    (
        Some("SYS_NICE"),
        &["mbind", "set_mempolicy", "move_pages", "migrate_pages"],
    ),
    (Some("SYS_PACCT"), &["acct"]),
    (Some("SYSLOG"), &["syslog"]),
];

/// The namespace flags of clone(2) that only CAP_SYS_ADMIN may use.
const CLONE_NS_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
    0x0000_0080, // CLONE_NEWTIME
];

fn syscall(names: &[&str], action: LinuxSeccompAction, errno: u32) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| n.to_string()).collect());
    s.set_action(action);
    s.set_errno_ret(Some(errno));
    s
}

/// The profile for a container holding `caps` (names without `CAP_`, upper case).
pub fn profile(caps: &[String]) -> LinuxSeccomp {
    let has = |c: &str| caps.iter().any(|x| x == c);
    let eperm = libc::EPERM as u32;
    let mut rules = Vec::new();
    for (cap, names) in GROUPS {
        if cap.is_none_or(|c| !has(c)) {
            rules.push(syscall(names, LinuxSeccompAction::ScmpActErrno, eperm));
        }
    }
    if !has("SYS_ADMIN") {
        // clone with a namespace flag: one rule per flag (the rules of a syscall are ORed).
        for flag in CLONE_NS_FLAGS {
            let mut s = syscall(&["clone"], LinuxSeccompAction::ScmpActErrno, eperm);
            let a: LinuxSeccompArg = LinuxSeccompArgBuilder::default()
                .index(0usize)
                .value(*flag)
                .value_two(*flag)
                .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                .build()
                .expect("seccomp arg");
            s.set_args(Some(vec![a]));
            rules.push(s);
        }
        // clone3 passes its flags in memory, out of a filter's reach: make libc fall back to
        // clone, which the rules above see.
        rules.push(syscall(
            &["clone3"],
            LinuxSeccompAction::ScmpActErrno,
            libc::ENOSYS as u32,
        ));
    }
    let mut p = LinuxSeccomp::default();
    p.set_default_action(LinuxSeccompAction::ScmpActAllow);
    use oci_spec::runtime::Arch;
    // The host's architectures (a 64-bit kernel also runs the 32-bit ABIs).
    let arches = if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    };
    p.set_architectures(Some(arches));
    p.set_syscalls(Some(rules));
    p
}
