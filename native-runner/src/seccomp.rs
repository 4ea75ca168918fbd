//! `linux.seccomp` → a kernel seccomp filter.
//!
//! The profile is translated with libseccomp in [`SeccompProgram::compile`], which runs in the
//! runtime before the container exists, so that every mistake in the profile is reported by
//! `create`. `compile` also asks libseccomp for the finished BPF program; [`SeccompProgram::load`]
//! then hands that program to `seccomp(2)` with one system call. `load` therefore allocates
//! nothing and calls no library code, which makes it safe in the container init after `clone`
//! and at the very end of the init, right before `execve`.
//!
//! Semantics follow the runtime-spec ("Seccomp" in config-linux.md) and what runc and crun do
//! where the spec is silent:
//!
//! * unknown syscall names are skipped (the profile may name syscalls of newer kernels);
//! * a rule whose action equals the default action is skipped (libseccomp refuses it);
//! * `errnoRet` defaults to `EPERM` for `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE`;
//! * the arguments of one rule are AND'ed, except when two of them compare the same argument
//!   index: then every argument becomes a rule of its own and those rules are OR'ed (libseccomp
//!   cannot compare an argument twice in one rule; this is the convention of runc, so profiles
//!   written for Docker behave the same here);
//! * the filter never sets `no_new_privs` itself: the caller does, as `process.noNewPrivileges`
//!   says.

use std::fmt;
use std::io::{Read, Seek, SeekFrom};

use libseccomp::error::SeccompError;
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
use libseccomp::{ScmpSyscall, ScmpVersion};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

use crate::error::SysContext;
use crate::{Error, Result};

/// The kernel refuses classic BPF programs longer than this (`BPF_MAXINSNS`).
const BPF_MAXINSNS: usize = 4096;

/// The highest syscall argument index (syscalls have six arguments, 0 to 5).
const MAX_ARG_INDEX: usize = 5;

/// A compiled filter, built in the parent (so errors surface in `create`), loaded in the
/// container init.
///
/// It holds the BPF program libseccomp generated from the profile and the `seccomp(2)` flags
/// the profile asks for. It is plain data: `Send`, `Sync` and cheap to clone.
#[derive(Clone)]
pub struct SeccompProgram {
    /// The classic BPF program, as libseccomp exported it.
    filter: Vec<libc::sock_filter>,
    /// `SECCOMP_FILTER_FLAG_*` bits for `seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)`.
    flags: libc::c_ulong,
}

impl fmt::Debug for SeccompProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeccompProgram")
            .field("instructions", &self.filter.len())
            .field("flags", &format_args!("{:#x}", self.flags))
            .finish()
    }
}

impl SeccompProgram {
    /// Translates the spec's `linux.seccomp`.
    ///
    /// Unknown syscall names are skipped (logged at debug level), as runc and crun do. An
    /// unsupported action (`SCMP_ACT_NOTIFY`), an architecture the host's libseccomp does not
    /// know, an argument index above 5, an out-of-range `errnoRet` or an unsupported flag is an
    /// [`Error::Invalid`] naming the field and the fix. Unknown action, operator, architecture
    /// and flag *strings* never get here: oci-spec rejects them when `config.json` is parsed.
    pub fn compile(seccomp: &LinuxSeccomp) -> Result<Self> {
        let default_action = translate_action(
            seccomp.default_action(),
            seccomp.default_errno_ret(),
            "linux.seccomp.defaultAction",
            "linux.seccomp.defaultErrnoRet",
        )?;

        let mut ctx = ScmpFilterContext::new(default_action)
            .map_err(|e| scmp_error("linux.seccomp: create the libseccomp filter", e))?;
        // The caller sets no_new_privs (or not) as process.noNewPrivileges says. This only
        // matters for libseccomp's own load, which we do not use, but keeps the intent explicit.
        ctx.set_ctl_nnp(false).map_err(|e| {
            scmp_error(
                "linux.seccomp: clear libseccomp's no_new_privs attribute",
                e,
            )
        })?;

        for (i, arch) in seccomp.architectures().iter().flatten().enumerate() {
            let Some(scmp_arch) = translate_arch(*arch) else {
                continue; // SCMP_ARCH_NATIVE: always present.
            };
            ctx.add_arch(scmp_arch).map_err(|e| {
                Error::invalid(format!(
                    "linux.seccomp.architectures[{i}]: {arch} is not supported by libseccomp {} \
                     on this host ({e}); remove it from the profile",
                    libseccomp_version()
                ))
            })?;
        }

        let mut flags: libc::c_ulong = 0;
        for (i, flag) in seccomp.flags().iter().flatten().enumerate() {
            flags |= match flag {
                LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
                LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
                LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                    libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
                }
                LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                    return Err(Error::invalid(format!(
                        "linux.seccomp.flags[{i}]: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV only \
                         applies to SCMP_ACT_NOTIFY, which pouch does not support yet; remove it"
                    )));
                }
            };
        }

        for (i, rule) in seccomp.syscalls().iter().flatten().enumerate() {
            let field = format!("linux.seccomp.syscalls[{i}]");
            let action = translate_action(
                rule.action(),
                rule.errno_ret(),
                &format!("{field}.action"),
                &format!("{field}.errnoRet"),
            )?;
            let args = rule.args().as_deref().unwrap_or_default();
            let comparisons = args
                .iter()
                .enumerate()
                .map(|(j, arg)| translate_arg(arg, &format!("{field}.args[{j}]")))
                .collect::<Result<Vec<_>>>()?;

            if action == default_action {
                tracing::debug!(
                    "{field}: action {} equals the default action; rule skipped",
                    rule.action()
                );
                continue;
            }

            // Conditions on distinct arguments are AND'ed in one rule; if an argument index is
            // repeated, every condition becomes its own rule and the rules are OR'ed (see the
            // module documentation).
            let repeated_index = args
                .iter()
                .enumerate()
                .any(|(j, a)| args[..j].iter().any(|b| b.index() == a.index()));
            let condition_sets: Vec<&[ScmpArgCompare]> = if repeated_index {
                comparisons.iter().map(std::slice::from_ref).collect()
            } else {
                vec![&comparisons[..]]
            };

            for (j, name) in rule.names().iter().enumerate() {
                let syscall = match ScmpSyscall::from_name(name) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(
                            "{field}.names[{j}]: unknown syscall {name:?} ({e}); skipped"
                        );
                        continue;
                    }
                };
                for conditions in &condition_sets {
                    ctx.add_rule_conditional(action, syscall, conditions)
                        .map_err(|e| {
                            scmp_error(format!("{field}.names[{j}]: add the rule for {name:?}"), e)
                        })?;
                }
            }
        }

        let filter = export_bpf(&ctx)?;
        if filter.len() > BPF_MAXINSNS {
            return Err(Error::invalid(format!(
                "linux.seccomp: the compiled filter has {} instructions, more than the kernel's \
                 limit of {BPF_MAXINSNS}; merge rules that share an action or drop some",
                filter.len()
            )));
        }
        Ok(SeccompProgram { filter, flags })
    }

    /// Loads the filter into the calling thread (with `SECCOMP_FILTER_FLAG_TSYNC`: into every
    /// thread of the process) with `seccomp(2)`.
    ///
    /// The kernel requires `no_new_privs` to be set or `CAP_SYS_ADMIN` to be held (in the
    /// caller's user namespace). It allocates nothing and makes one system call (two on kernels
    /// older than 3.17), so it may run in a freshly forked child.
    pub fn load(&self) -> Result<()> {
        let prog = libc::sock_fprog {
            // compile() guarantees len <= BPF_MAXINSNS.
            len: self.filter.len() as libc::c_ushort,
            filter: self.filter.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points to a valid program that outlives the call; the kernel copies it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        if rc > 0 {
            // With TSYNC the kernel returns the id of a thread it could not synchronise.
            return Err(Error::invalid(format!(
                "load the seccomp filter: thread {rc} cannot be synchronised \
                 (SECCOMP_FILTER_FLAG_TSYNC); it has a diverging filter of its own"
            )));
        }
        let errno = nix::errno::Errno::last();
        if errno == nix::errno::Errno::ENOSYS && self.flags == 0 {
            // Kernels before 3.17 have no seccomp(2); prctl does the same without flags.
            // SAFETY: as above.
            let rc = unsafe {
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    &prog as *const libc::sock_fprog,
                )
            };
            return nix::errno::Errno::result(rc)
                .map(drop)
                .ctx(|| "load the seccomp filter (prctl PR_SET_SECCOMP)".to_string());
        }
        Err(Error::sys(
            match errno {
                nix::errno::Errno::EACCES => {
                    "load the seccomp filter: neither no_new_privs is set nor CAP_SYS_ADMIN held"
                }
                nix::errno::Errno::EINVAL if self.flags != 0 => {
                    "load the seccomp filter: the kernel rejects one of linux.seccomp.flags \
                     (SECCOMP_FILTER_FLAG_LOG needs Linux 4.14, SPEC_ALLOW 4.17)"
                }
                _ => "load the seccomp filter (seccomp SECCOMP_SET_MODE_FILTER)",
            },
            errno,
        ))
    }

    /// The number of BPF instructions of the compiled filter.
    pub fn instructions(&self) -> usize {
        self.filter.len()
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits [`load`](Self::load) passes to `seccomp(2)`.
    pub fn flags(&self) -> libc::c_ulong {
        self.flags
    }
}

/// The libseccomp action of a spec action; `errno_ret` is used by ERRNO and TRACE.
fn translate_action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    field: &str,
    errno_field: &str,
) -> Result<ScmpAction> {
    let errno = || -> Result<u16> {
        match errno_ret {
            None => Ok(libc::EPERM as u16),
            Some(v) => u16::try_from(v).map_err(|_| {
                Error::invalid(format!(
                    "{errno_field}: {v} does not fit the 16 bits seccomp returns; use an errno \
                     value such as 1 (EPERM) or 38 (ENOSYS)"
                ))
            }),
        }
    };
    if errno_ret.is_some()
        && !matches!(
            action,
            LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
        )
    {
        tracing::debug!(
            "{errno_field} is ignored: it only applies to SCMP_ACT_ERRNO and SCMP_ACT_TRACE"
        );
    }
    Ok(match action {
        // SCMP_ACT_KILL is the historical name of SCMP_ACT_KILL_THREAD.
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(errno()?)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno()?),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(Error::invalid(format!(
                "{field}: SCMP_ACT_NOTIFY (listenerPath) is not supported by pouch yet; remove it"
            )));
        }
    })
}

/// The libseccomp architecture of a spec architecture; `None` for `SCMP_ARCH_NATIVE`.
fn translate_arch(arch: Arch) -> Option<ScmpArch> {
    Some(match arch {
        Arch::ScmpArchNative => return None,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    })
}

/// One argument condition. For `SCMP_CMP_MASKED_EQ`, `value` is the mask and `valueTwo` the
/// value the masked argument must equal (0 when absent), as in libseccomp and runc.
fn translate_arg(arg: &LinuxSeccompArg, field: &str) -> Result<ScmpArgCompare> {
    let index = arg.index();
    if index > MAX_ARG_INDEX {
        return Err(Error::invalid(format!(
            "{field}.index: {index} is out of range; syscall arguments are numbered 0 to \
             {MAX_ARG_INDEX}"
        )));
    }
    let (op, datum) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, arg.value()),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, arg.value()),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, arg.value()),
        LinuxSeccompOperator::ScmpCmpMaskedEq => (
            ScmpCompareOp::MaskedEqual(arg.value()),
            arg.value_two().unwrap_or(0),
        ),
    };
    if arg.value_two().is_some() && arg.op() != LinuxSeccompOperator::ScmpCmpMaskedEq {
        tracing::debug!("{field}.valueTwo is ignored: it only applies to SCMP_CMP_MASKED_EQ");
    }
    // index <= 5, checked above.
    Ok(ScmpArgCompare::new(index as u32, op, datum))
}

/// Asks libseccomp for the BPF program of `ctx` (through a memfd: the in-memory export needs
/// libseccomp 2.6, Debian 12 has 2.5).
fn export_bpf(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>> {
    let fd =
        nix::sys::memfd::memfd_create(c"pouch-seccomp-bpf", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .ctx(|| "linux.seccomp: memfd_create for the compiled filter".to_string())?;
    let mut file = std::fs::File::from(fd);
    ctx.export_bpf(&file)
        .map_err(|e| scmp_error("linux.seccomp: generate the BPF program", e))?;
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .ctx(|| "linux.seccomp: read back the compiled filter".to_string())?;

    const INSN: usize = std::mem::size_of::<libc::sock_filter>();
    if bytes.is_empty() || bytes.len() % INSN != 0 {
        return Err(Error::invalid(format!(
            "linux.seccomp: libseccomp produced a BPF program of {} bytes, not a whole number of \
             {INSN}-byte instructions",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(INSN)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// A libseccomp error as ours: an errno when libseccomp reports one, else its message.
fn scmp_error(context: impl fmt::Display, e: SeccompError) -> Error {
    match e.sysrawrc() {
        Some(rc) if rc < 0 => Error::sys(context, nix::errno::Errno::from_raw(-rc)),
        _ => Error::invalid(format!("{context}: {e}")),
    }
}

/// "2.5.4", or "(unknown version)".
fn libseccomp_version() -> String {
    ScmpVersion::current()
        .map(|v| v.to_string())
        .unwrap_or_else(|_| "(unknown version)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::Spec;

    /// Parses `seccomp` (the JSON of `linux.seccomp`) the way a config.json is parsed.
    fn profile(seccomp: &str) -> LinuxSeccomp {
        try_profile(seccomp).expect("parse the test profile")
    }

    fn try_profile(seccomp: &str) -> std::result::Result<LinuxSeccomp, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            format!(r#"{{"ociVersion": "1.2.0", "linux": {{"seccomp": {seccomp}}}}}"#),
        )
        .unwrap();
        let spec = Spec::load(&path).map_err(|e| e.to_string())?;
        Ok(spec.linux().as_ref().unwrap().seccomp().clone().unwrap())
    }

    fn compile_err(seccomp: &str) -> String {
        SeccompProgram::compile(&profile(seccomp))
            .expect_err("the profile must be rejected")
            .to_string()
    }

    /// Runs `child` in a forked child process (no other threads there) and returns its exit
    /// code. `child` must only make raw system calls and return the exit code.
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

    /// In the child: sets no_new_privs and loads `program`; 100/101 on failure.
    fn child_load(program: &SeccompProgram) -> std::result::Result<(), i32> {
        // SAFETY: plain prctl.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(100);
        }
        program.load().map_err(|_| 101)
    }

    /// `rc == -1 && errno == want`.
    fn failed_with(rc: libc::c_long, want: i32) -> bool {
        rc == -1 && nix::errno::Errno::last_raw() == want
    }

    /// Close to Docker's default profile, trimmed: several architectures, x86-only and unknown
    /// names, args with repeated indices, MASKED_EQ, ERRNO with errnoRet, flags.
    const DOCKER_LIKE: &str = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [
            {"names": ["accept", "accept4", "access", "brk", "close", "execve", "exit",
                       "exit_group", "futex", "getpid", "mmap", "munmap", "openat", "read",
                       "write", "_llseek", "socketcall", "stat64", "no_such_syscall_xyz"],
             "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 4294967295, "op": "SCMP_CMP_EQ"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},
            {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]},
            {"names": ["reboot"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["swapon"], "action": "SCMP_ACT_KILL"},
            {"names": ["acct"], "action": "SCMP_ACT_TRAP"},
            {"names": ["syslog"], "action": "SCMP_ACT_LOG"},
            {"names": ["uselib"], "action": "SCMP_ACT_TRACE", "errnoRet": 5}
        ]
    }"#;

    #[test]
    fn compiles_a_docker_like_profile() {
        let program = SeccompProgram::compile(&profile(DOCKER_LIKE)).unwrap();
        assert!(program.instructions() > 10, "{program:?}");
        assert_eq!(program.flags(), libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW);
    }

    #[test]
    fn program_is_plain_data() {
        fn send_sync_clone<T: Send + Sync + Clone>() {}
        send_sync_clone::<SeccompProgram>();
    }

    #[test]
    fn compiles_minimal_and_flagged_profiles() {
        let p =
            SeccompProgram::compile(&profile(r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#)).unwrap();
        assert_eq!(p.flags(), 0);
        let p = SeccompProgram::compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_NATIVE"],
                "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"]}"#,
        ))
        .unwrap();
        assert_eq!(
            p.flags(),
            libc::SECCOMP_FILTER_FLAG_TSYNC | libc::SECCOMP_FILTER_FLAG_LOG
        );
    }

    #[test]
    fn rules_equal_to_the_default_action_are_skipped() {
        // libseccomp would refuse these rules; we drop them instead.
        SeccompProgram::compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                             {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}"#,
        ))
        .unwrap();
        SeccompProgram::compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ALLOW"}]}"#,
        ))
        .unwrap();
    }

    #[test]
    fn unsupported_values_are_errors_naming_the_field() {
        let e = compile_err(r#"{"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x.sock"}"#);
        assert!(
            e.starts_with("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY"),
            "{e}"
        );
        assert!(e.contains("remove it"), "{e}");

        let e = compile_err(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"},
                             {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}"#,
        );
        assert!(
            e.starts_with("linux.seccomp.syscalls[1].action: SCMP_ACT_NOTIFY"),
            "{e}"
        );

        let e = compile_err(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                              "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                                       {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
        );
        assert!(
            e.starts_with("linux.seccomp.syscalls[0].args[1].index: 6 is out of range"),
            "{e}"
        );

        let e = compile_err(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}"#,
        );
        assert!(e.starts_with("linux.seccomp.flags[1]: "), "{e}");

        let e = compile_err(r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}"#);
        assert!(e.starts_with("linux.seccomp.defaultErrnoRet: 70000"), "{e}");
    }

    #[test]
    fn unknown_strings_are_rejected_when_the_spec_is_parsed() {
        // The enums of oci-spec cannot hold an unknown action, operator, arch or flag: the
        // error comes from parsing config.json, before compile() is reached.
        for bad in [
            r#"{"defaultAction": "SCMP_ACT_EXPLODE"}"#,
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_PDP11"]}"#,
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FOO"]}"#,
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getcwd"],
                "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}]}]}"#,
        ] {
            assert!(try_profile(bad).is_err(), "{bad} must not parse");
        }
    }

    #[test]
    fn loaded_filter_denies_with_errno_ret() {
        let program = SeccompProgram::compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getcwd", "mkdir", "mkdirat", "no_such_syscall_xyz"],
                              "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}"#,
        ))
        .unwrap();
        let code = in_child(|| {
            if let Err(code) = child_load(&program) {
                return code;
            }
            let mut buf = [0u8; 256];
            // SAFETY: raw system calls with valid buffers.
            unsafe {
                if !failed_with(
                    libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()),
                    38,
                ) {
                    return 1;
                }
                // Without the filter this would fail with ENOENT.
                let dir = c"/nonexistent-pouch-seccomp-test/dir";
                if !failed_with(
                    libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, dir.as_ptr(), 0o755),
                    38,
                ) {
                    return 2;
                }
                if libc::syscall(libc::SYS_getpid) <= 0 {
                    return 3;
                }
            }
            0
        });
        assert_eq!(code, 0, "child check {code} failed (100: prctl, 101: load)");
    }

    #[test]
    fn loaded_filter_honours_argument_conditions() {
        let program = SeccompProgram::compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                  {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                   "args": [{"index": 0, "value": 4294967295, "op": "SCMP_CMP_NE"}]},
                  {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                   "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                            {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
                  {"names": ["prlimit64"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                   "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                            {"index": 1, "value": 7, "op": "SCMP_CMP_EQ"}]},
                  {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                   "args": [{"index": 0, "value": 448, "valueTwo": 448,
                             "op": "SCMP_CMP_MASKED_EQ"}]}
                ]}"#,
        ))
        .unwrap();
        let code = in_child(|| {
            if let Err(code) = child_load(&program) {
                return code;
            }
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            let old = &mut limit as *mut libc::rlimit;
            let null = std::ptr::null::<libc::rlimit>();
            // SAFETY: raw system calls with valid arguments; they only change this child.
            unsafe {
                // arg0 == 0xffffffff (query) is allowed, anything else denied.
                if libc::syscall(libc::SYS_personality, 0xffff_ffff_u64) < 0 {
                    return 1;
                }
                if !failed_with(libc::syscall(libc::SYS_personality, 0x0002_0000_u64), 38) {
                    return 2;
                }
                // Same index twice: the conditions are OR'ed.
                if libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, 0) < 0 {
                    return 3;
                }
                if !failed_with(libc::syscall(libc::SYS_getpriority, libc::PRIO_PGRP, 0), 38) {
                    return 4;
                }
                if !failed_with(libc::syscall(libc::SYS_getpriority, libc::PRIO_USER, 0), 38) {
                    return 5;
                }
                // Distinct indices: the conditions are AND'ed.
                if !failed_with(
                    libc::syscall(libc::SYS_prlimit64, 0, libc::RLIMIT_NOFILE, null, old),
                    38,
                ) {
                    return 6;
                }
                if libc::syscall(libc::SYS_prlimit64, 0, libc::RLIMIT_STACK, null, old) != 0 {
                    return 7;
                }
                // MASKED_EQ: (arg0 & 0o700) == 0o700 is denied.
                if libc::syscall(libc::SYS_umask, 0o022) < 0 {
                    return 8;
                }
                if !failed_with(libc::syscall(libc::SYS_umask, 0o777), 38) {
                    return 9;
                }
            }
            0
        });
        assert_eq!(code, 0, "child check {code} failed (100: prctl, 101: load)");
    }

    #[test]
    fn default_errno_ret_applies_to_unlisted_syscalls() {
        let program = SeccompProgram::compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                "syscalls": [{"names": ["exit", "exit_group", "getpid"],
                              "action": "SCMP_ACT_ALLOW"}]}"#,
        ))
        .unwrap();
        let code = in_child(|| {
            if let Err(code) = child_load(&program) {
                return code;
            }
            // SAFETY: raw system calls without arguments.
            unsafe {
                if libc::syscall(libc::SYS_getpid) <= 0 {
                    return 1;
                }
                if !failed_with(libc::syscall(libc::SYS_getppid), 38) {
                    return 2;
                }
            }
            0
        });
        assert_eq!(code, 0, "child check {code} failed (100: prctl, 101: load)");
    }
}
