//! Escape attempts: a hostile workload (Linux or wasm) tries to reach the host's files,
//! processes or kernel state. Each test fails if the escape works. See SECURITY.md.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::json;

/// A host directory holding `secret` with a unique content; returns (dir, secret path, content).
fn host_secret() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::Builder::new()
        .prefix("escape-host")
        .tempdir()
        .unwrap();
    let content = unique("HOST-SECRET");
    let path = dir.path().join("secret");
    std::fs::write(&path, &content).unwrap();
    (dir, path, content)
}

/// Runs `script` with `sh -c` in the bundle: (exit code, stdout, stderr).
fn sh(b: &mut Bundle, script: &str) -> (i32, String, String) {
    b.spec["process"]["args"] = json!(["sh", "-c", script]);
    b.run()
}

/// The mount points of the caller's mount namespace.
fn host_mount_points() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect()
}

/// The entries of a directory, by name.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// 1. Host files through /proc/<pid>/root and /proc/<pid>/cwd

#[test]
fn proc_root_and_cwd_links_lead_to_the_containers_root_not_the_hosts() {
    let (_host, secret, content) = host_secret();
    let mut b = Bundle::new(&["true"]);
    let rootfs = private_rootfs(&mut b);
    std::fs::write(rootfs.join("ESCAPE-MARKER"), "inside").unwrap();
    let s = secret.display();
    let script = format!(
        "cat /proc/1/root{s}; cat /proc/self/root{s}; cat /proc/$$/cwd{s}; \
         cat /proc/1/root/../../../../..{s}; cat /proc/self/cwd/../../../..{s}; \
         cat /proc/1/root/proc/1/root{s}; \
         echo root-link=$(readlink /proc/1/root); echo cwd-link=$(readlink /proc/1/cwd); \
         echo LS; ls -a /proc/1/root/; echo LS2; ls -a /proc/self/root/..; echo END"
    );
    let (_, out, err) = sh(&mut b, &script);
    assert!(
        !out.contains(&content) && !err.contains(&content),
        "the host's secret was read from inside the container: {out}"
    );
    assert!(
        err.contains("No such file or directory"),
        "the secret's path does not exist in the container: {err}"
    );
    assert!(out.contains("root-link=/\n"), "{out}");
    assert!(out.contains("cwd-link=/\n"), "{out}");
    // /proc/1/root lists the container's rootfs (with its marker), not the host's /.
    let listing = |from: &str, to: &str| -> Vec<String> {
        let start = out.find(from).unwrap() + from.len();
        let end = out[start..].find(to).unwrap() + start;
        let mut v: Vec<String> = out[start..end]
            .split_whitespace()
            .map(str::to_string)
            .filter(|e| e != "." && e != "..")
            .collect();
        v.sort();
        v
    };
    let rootfs_entries = entries(&rootfs);
    for l in [listing("LS\n", "LS2\n"), listing("LS2\n", "END")] {
        assert_eq!(l, rootfs_entries, "/proc/1/root is the container's rootfs");
        assert!(l.contains(&"ESCAPE-MARKER".to_string()));
    }
    let host_only: Vec<String> = entries(Path::new("/"))
        .into_iter()
        .filter(|e| !rootfs_entries.contains(e))
        .collect();
    assert!(
        !host_only.is_empty(),
        "the host's / has entries the rootfs lacks"
    );
}

#[test]
fn without_a_pid_namespace_host_processes_roots_and_cwds_are_still_refused() {
    // A host process (root, full capabilities) whose working directory holds the secret.
    let (host, secret, content) = host_secret();
    let mut sleeper = Command::new("sleep")
        .arg("1000")
        .current_dir(host.path())
        .spawn()
        .unwrap();
    let p = sleeper.id();
    let mut b = Bundle::new(&["true"]);
    b.without_pid_namespace();
    let s = secret.display();
    let script = format!(
        "test -d /proc/{p} && echo sees-host-pid; \
         cat /proc/{p}/cwd/secret; cat /proc/{p}/root{s}; cat /proc/1/root{s}; \
         ls /proc/{p}/cwd/; ls /proc/1/root/; readlink /proc/{p}/cwd; true"
    );
    let (_, out, err) = sh(&mut b, &script);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(
        out.contains("sees-host-pid"),
        "the host's pids are visible without a pid namespace: {out} {err}"
    );
    assert!(
        !out.contains(&content) && !out.contains("secret\n") && !err.contains(&content),
        "read a host process's files from the container: {out}"
    );
    assert!(
        !out.contains(&host.path().display().to_string()),
        "resolved a host process's cwd: {out}"
    );
    // The ptrace access check: the container lacks the host process's capabilities.
    assert!(err.contains("Permission denied"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// 2. Mount destinations that are symlinks out of the rootfs

#[test]
fn symlinked_mount_targets_are_resolved_inside_the_rootfs() {
    let abs_target = tempfile::Builder::new()
        .prefix("escape-target")
        .tempdir()
        .unwrap();
    let rel_target = tempfile::Builder::new()
        .prefix("escape-target")
        .tempdir()
        .unwrap();
    let source = tempfile::Builder::new()
        .prefix("escape-source")
        .tempdir()
        .unwrap();
    for d in [&abs_target, &rel_target] {
        std::fs::write(d.path().join("untouched"), "host").unwrap();
    }
    std::fs::write(source.path().join("from-source"), "source").unwrap();
    let mut b = Bundle::new(&["true"]);
    let rootfs = private_rootfs(&mut b);
    std::fs::create_dir_all(rootfs.join("mnt")).unwrap();
    std::os::unix::fs::symlink(abs_target.path(), rootfs.join("mnt/target")).unwrap();
    std::os::unix::fs::symlink(
        format!("../../../../../../..{}", rel_target.path().display()),
        rootfs.join("mnt/rel"),
    )
    .unwrap();
    // No tmpfs on /tmp: the targets resolve to directories of the rootfs copy itself.
    b.spec["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["destination"] != "/tmp");
    let base_mounts = b.spec["mounts"].clone();
    let tmpfs = json!({"destination": "/mnt/target", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev"]});
    let bind = json!({"destination": "/mnt/rel", "type": "bind", "source": source.path(),
        "options": ["rbind"]});
    let host_paths = [abs_target.path(), rel_target.path()];
    let check_host = |when: &str| {
        for d in host_paths {
            assert_eq!(
                entries(d),
                ["untouched"],
                "{when}: the host directory {} was written",
                d.display()
            );
            assert!(
                !host_mount_points()
                    .iter()
                    .any(|m| m.starts_with(&*d.to_string_lossy())),
                "{when}: a mount landed on the host's {}",
                d.display()
            );
        }
    };
    // The symlinks' in-root resolutions do not exist: refused, never created through the link.
    for (m, dest) in [(&tmpfs, "/mnt/target"), (&bind, "/mnt/rel")] {
        b.spec["mounts"] = base_mounts.clone();
        b.spec["mounts"].as_array_mut().unwrap().push(m.clone());
        b.write();
        let o = b.rt(&["create", "--bundle", b.dir.path().to_str().unwrap(), &b.id]);
        let err = String::from_utf8_lossy(&o.stderr);
        check_host(&format!("{dest} refused"));
        assert!(!o.status.success(), "{dest}: created through the symlink");
        assert!(err.contains(dest) && err.contains("ENOENT"), "{err}");
        let _ = b.rt(&["delete", "--force", &b.id]);
    }
    // They exist inside the rootfs copy: the mounts land there.
    for d in host_paths {
        std::fs::create_dir_all(rootfs.join(d.strip_prefix("/").unwrap())).unwrap();
    }
    b.spec["mounts"] = base_mounts;
    b.spec["mounts"].as_array_mut().unwrap().push(tmpfs);
    b.spec["mounts"].as_array_mut().unwrap().push(bind);
    // Mounts done, program not started: nothing on the host.
    b.create();
    check_host("after create");
    stdout_ok(b.rt(&["delete", "--force", &b.id]));
    // Running: the program writes through both targets.
    let (a, r) = (
        abs_target.path().display().to_string(),
        rel_target.path().display().to_string(),
    );
    let script = format!(
        "echo inside > /mnt/target/proof && echo inside > /mnt/rel/proof && \
         ls /mnt/rel/ && grep -E ' ({a}|{r}) ' /proc/self/mountinfo"
    );
    let (code, out, err) = sh(&mut b, &script);
    check_host("after run");
    assert_eq!(code, 0, "{out} {err}");
    // Inside, the mounts sit on the in-root resolution of the symlinks.
    assert!(out.contains("from-source"), "the bind mount works: {out}");
    assert!(
        out.contains(&format!(" {a} ")) && out.contains(&format!(" {r} ")),
        "mounted on the paths resolved in the root: {out}"
    );
    assert!(
        entries(&rootfs.join(abs_target.path().strip_prefix("/").unwrap())).is_empty(),
        "the tmpfs was mounted over the in-root directory, not written into it"
    );
    assert_eq!(
        std::fs::read_to_string(source.path().join("proof")).unwrap(),
        "inside\n"
    );
}

/// A mount whose destination is the container's root, directly or through a symlink in the
/// image (`/host -> /`), would become the container's `/`; a read-only one would not even be
/// made read-only (its remount would reach the rootfs beneath). Refused.
#[test]
fn a_mount_over_the_containers_root_is_refused() {
    let volume = tempfile::Builder::new()
        .prefix("escape-volume")
        .tempdir()
        .unwrap();
    std::fs::write(volume.path().join("untouched"), "host").unwrap();
    for (dest, link) in [("/", None), ("/host", Some("/")), ("/up", Some("../../.."))] {
        let mut b = Bundle::new(&["sh", "-c", "echo PROGRAM-RAN > /untouched"]);
        let rootfs = private_rootfs(&mut b);
        if let Some(target) = link {
            std::os::unix::fs::symlink(target, rootfs.join(dest.trim_start_matches('/'))).unwrap();
        }
        b.spec["mounts"].as_array_mut().unwrap().push(
            json!({"destination": dest, "type": "bind", "source": volume.path(), "options": ["rbind", "ro"]}),
        );
        let (code, out, err) = b.run();
        assert_ne!(code, 0, "{dest}: ran: {out}");
        assert!(
            err.contains("is the container's root directory"),
            "{dest}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(volume.path().join("untouched")).unwrap(),
            "host",
            "{dest}: the volume was written"
        );
    }
}

/// CVE-2021-30465's pattern: between the moment the runtime resolved a mount destination and
/// the mount itself, something that can write the rootfs (another container sharing it as a
/// volume) swaps the destination for a symlink to the host. The runtime is held in that window
/// by a test hook (`POUCH_TEST_PAUSE_MOUNT`), so the race is won every time: the mount must
/// land where the destination was resolved, and the runtime must notice and refuse to go on.
#[test]
fn a_mount_destination_swapped_for_a_symlink_mid_setup_is_not_followed() {
    let decoy = tempfile::Builder::new()
        .prefix("escape-decoy")
        .tempdir()
        .unwrap();
    std::fs::write(decoy.path().join("untouched"), "host").unwrap();
    let volume = tempfile::Builder::new()
        .prefix("escape-volume")
        .tempdir()
        .unwrap();
    std::fs::write(volume.path().join("from-volume"), "volume").unwrap();
    let pause = tempfile::tempdir().unwrap();
    for (kind, options) in [
        ("bind", json!(["rbind", "ro"])),
        ("tmpfs", json!(["nosuid"])),
    ] {
        let mut b = Bundle::new(&["sh", "-c", "echo PROGRAM-RAN; ls /data"]);
        let rootfs = private_rootfs(&mut b);
        std::fs::create_dir_all(rootfs.join("data")).unwrap();
        if kind == "tmpfs" {
            // The link also resolves inside the root: still not where it was resolved before.
            std::fs::create_dir_all(rootfs.join(decoy.path().strip_prefix("/").unwrap())).unwrap();
        }
        // No tmpfs on /tmp: the link's in-root resolution is a directory of the rootfs copy.
        b.spec["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["destination"] != "/tmp");
        let source = if kind == "bind" {
            json!(volume.path())
        } else {
            json!("tmpfs")
        };
        b.spec["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/data", "type": kind, "source": source, "options": options}),
        );
        b.write();
        let _ = std::fs::remove_file(pause.path().join("paused"));
        let _ = std::fs::remove_file(pause.path().join("go"));
        let out = tempfile::NamedTempFile::new().unwrap();
        let err = tempfile::NamedTempFile::new().unwrap();
        let mut child = b
            .cmd()
            .args(["run", "--bundle", b.dir.path().to_str().unwrap(), &b.id])
            .env(
                "POUCH_TEST_PAUSE_MOUNT",
                format!("{}:/data", pause.path().display()),
            )
            .stdin(std::process::Stdio::null())
            .stdout(out.reopen().unwrap())
            .stderr(err.reopen().unwrap())
            .spawn()
            .unwrap();
        let t = std::time::Instant::now();
        while !pause.path().join("paused").exists() {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(20),
                "{kind}: the setup never reached the mount of /data"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "{kind}: run ended early"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // The swap: the resolved directory moves aside, /data becomes a link to the host.
        std::fs::rename(rootfs.join("data"), rootfs.join("data.resolved")).unwrap();
        std::os::unix::fs::symlink(decoy.path(), rootfs.join("data")).unwrap();
        std::fs::write(pause.path().join("go"), "").unwrap();
        let status = child.wait().unwrap();
        let stdout = std::fs::read_to_string(out.path()).unwrap();
        let stderr = std::fs::read_to_string(err.path()).unwrap();
        assert_eq!(
            entries(decoy.path()),
            ["untouched"],
            "{kind}: the host directory was written"
        );
        assert!(
            !host_mount_points()
                .iter()
                .any(|m| m.starts_with(&*decoy.path().to_string_lossy())),
            "{kind}: a mount landed on the host's {}",
            decoy.path().display()
        );
        assert!(
            !status.success() && !stdout.contains("PROGRAM-RAN"),
            "{kind}: the container started on a swapped mount destination: {stdout} {stderr}"
        );
        assert!(
            stderr.contains("mounts[")
                && stderr.contains("(/data)")
                && stderr.contains("changed while it was being mounted"),
            "{kind}: {stderr}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Masked and read-only paths

#[test]
fn masked_and_readonly_proc_paths_cannot_be_written_or_uncovered() {
    let mut b = Bundle::new(&["true"]);
    let script = "\
        echo h > /proc/sysrq-trigger; echo sysrq=$?; \
        echo evil > /proc/sys/kernel/hostname; echo hostname=$?; \
        cat /proc/sys/kernel/core_pattern > /tmp/cp; cat /tmp/cp > /proc/sys/kernel/core_pattern; \
        echo core_pattern=$?; \
        echo 1 > /proc/sys/vm/drop_caches; echo drop_caches=$?; \
        for f in /proc/kcore /proc/keys /proc/timer_list /proc/timer_stats /proc/sched_debug \
                 /proc/latency_stats; do \
            [ -e $f ] && echo masked $f $(cat $f | wc -c); done; \
        for d in /proc/acpi /proc/scsi /sys/firmware; do \
            [ -e $d ] && echo masked-dir $d $(ls -A $d | wc -l); done; \
        mount -o remount,rw /proc/sys; echo remount_sys=$?; \
        mount -o remount,rw /proc/sysrq-trigger; echo remount_sysrq=$?; \
        umount /proc/sys; echo umount_sys=$?; \
        umount /proc/timer_list; echo umount_timer_list=$?; \
        umount -l /proc/keys; echo umount_keys=$?; \
        mount -t proc proc /mnt 2>/dev/null || mount -t proc proc /tmp; echo mount_proc=$?; \
        echo hostname-now=$(cat /proc/sys/kernel/hostname)";
    let (_, out, err) = sh(&mut b, script);
    let value = |k: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} missing: {out} {err}"))
            .to_string()
    };
    for k in ["sysrq", "hostname", "core_pattern", "drop_caches"] {
        assert_ne!(value(k), "0", "{k}: a read-only /proc path was written");
    }
    // (/proc/sysrq-trigger exists only on kernels built with CONFIG_MAGIC_SYSRQ.)
    let sysrq = Path::new("/proc/sysrq-trigger").exists();
    assert!(
        err.matches("Read-only file system").count() >= 3 + usize::from(sysrq),
        "writes fail with EROFS: {err}"
    );
    for k in [
        "remount_sys",
        "remount_sysrq",
        "umount_sys",
        "umount_timer_list",
        "umount_keys",
        "mount_proc",
    ] {
        assert_ne!(
            value(k),
            "0",
            "{k}: a mount operation succeeded without CAP_SYS_ADMIN"
        );
    }
    assert_eq!(value("hostname-now"), "pouch");
    let masked: Vec<&str> = out.lines().filter(|l| l.starts_with("masked")).collect();
    assert!(
        masked.iter().any(|l| l.contains("/proc/timer_list")),
        "{out}"
    );
    for l in &masked {
        assert!(l.ends_with(" 0"), "a masked path is not empty: {l}");
    }
    if Path::new("/proc/keys").exists() {
        assert!(masked.iter().any(|l| l.contains("/proc/keys")), "{out}");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Seccomp: `pouch run`'s default profile in the spec

const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs f in a child process (so that a successful unshare changes nothing here) and prints
   name=0 on success, name=<errno> on failure. */
static void attempt(const char *name, long (*f)(void)) {
    pid_t pid = fork();
    if (pid == 0) {
        long r = f();
        _exit(r < 0 ? errno : 0);
    }
    int st;
    waitpid(pid, &st, 0);
    printf("%s=%d\n", name, WIFEXITED(st) ? WEXITSTATUS(st) : 255);
    fflush(stdout);
}

static long raw_clone(unsigned long flags) {
    long r = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (r == 0) _exit(0);
    if (r > 0) waitpid(r, 0, 0);
    return r < 0 ? -1 : 0;
}

static long do_keyctl(void) { return syscall(SYS_keyctl, 1 /* JOIN_SESSION_KEYRING */, 0); }
static long do_add_key(void) {
    return syscall(SYS_add_key, "user", "pouch-escape", "x", 1, -2 /* PROCESS_KEYRING */);
}
static long do_unshare_user(void) { return syscall(SYS_unshare, CLONE_NEWUSER); }
static long do_unshare_net(void) { return syscall(SYS_unshare, CLONE_NEWNET); }
static long do_clone_user(void) { return raw_clone(CLONE_NEWUSER); }
static long do_clone_ns(void) { return raw_clone(CLONE_NEWNS); }
static long do_clone3_user(void) {
    struct clone_args a;
    memset(&a, 0, sizeof a);
    a.flags = CLONE_NEWUSER;
    a.exit_signal = SIGCHLD;
    long r = syscall(SYS_clone3, &a, sizeof a);
    if (r == 0) _exit(0);
    if (r > 0) waitpid(r, 0, 0);
    return r < 0 ? -1 : 0;
}
static long do_ptrace_traceme(void) { return ptrace(PTRACE_TRACEME, 0, 0, 0); }
static long do_userfaultfd(void) { return syscall(SYS_userfaultfd, 0); }
static long do_bpf(void) { return syscall(SYS_bpf, 0, 0, 0); }

int main(void) {
    attempt("keyctl", do_keyctl);
    attempt("add_key", do_add_key);
    attempt("unshare_user", do_unshare_user);
    attempt("unshare_net", do_unshare_net);
    attempt("clone_newuser", do_clone_user);
    attempt("clone_newns", do_clone_ns);
    attempt("clone3_newuser", do_clone3_user);
    attempt("ptrace_traceme", do_ptrace_traceme);
    attempt("userfaultfd", do_userfaultfd);
    attempt("bpf", do_bpf);
    return 0;
}
"#;

/// Compiles the probe statically into `dir/probe`.
fn build_probe(dir: &Path) -> PathBuf {
    let src = dir.join("probe.c");
    let bin = dir.join("probe");
    std::fs::write(&src, PROBE_C).unwrap();
    let o = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("gcc (build-essential) is needed to build the seccomp probe");
    assert!(
        o.status.success(),
        "gcc -static failed (libc6-dev's libc.a?): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    bin
}

/// A bundle with Docker's default capabilities and, if `confined`, `pouch run`'s default
/// seccomp profile for them; the probe in /probe of a private rootfs copy.
fn seccomp_bundle(confined: bool, probe: &Path) -> Bundle {
    let mut b = Bundle::new(&["/probe"]);
    let rootfs = private_rootfs(&mut b);
    std::fs::copy(probe, rootfs.join("probe")).unwrap();
    let caps: Vec<String> = pouch::container::spec_gen::DEFAULT_CAPS
        .iter()
        .map(|c| c.to_string())
        .collect();
    let cap_names: Vec<String> = caps.iter().map(|c| format!("CAP_{c}")).collect();
    b.spec["process"]["capabilities"] = json!({"bounding": cap_names, "effective": cap_names,
        "permitted": cap_names});
    if confined {
        b.spec["linux"]["seccomp"] =
            serde_json::to_value(pouch::container::seccomp_default::profile(&caps)).unwrap();
    }
    b
}

fn probe_results(out: &str) -> std::collections::HashMap<String, i32> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

#[test]
fn the_default_seccomp_profile_denies_namespaces_keyrings_and_ptrace() {
    let dir = tempfile::tempdir().unwrap();
    let probe = build_probe(dir.path());
    // Unconfined (same capabilities): the unprivileged ones of these calls work, so the
    // denials below are the filter's.
    let b = seccomp_bundle(false, &probe);
    let free = probe_results(&b.run_ok());
    for k in [
        "keyctl",
        "add_key",
        "unshare_user",
        "clone_newuser",
        "clone3_newuser",
        "ptrace_traceme",
    ] {
        assert_eq!(free[k], 0, "{k} works without the profile: {free:?}");
    }
    let b = seccomp_bundle(true, &probe);
    let r = probe_results(&b.run_ok());
    let eperm = libc::EPERM;
    for k in [
        "keyctl",
        "add_key",
        "unshare_user",
        "unshare_net",
        "clone_newuser",
        "clone_newns",
        "ptrace_traceme",
        "userfaultfd",
        "bpf",
    ] {
        assert_eq!(r[k], eperm, "{k} is not denied with EPERM: {r:?}");
    }
    // clone3's flags are out of the filter's reach: ENOSYS makes libc fall back to clone.
    assert_eq!(r["clone3_newuser"], libc::ENOSYS, "{r:?}");
}

#[test]
fn the_default_seccomp_profile_stops_busybox_unshare_nsenter_and_mount() {
    let dir = tempfile::tempdir().unwrap();
    let probe = build_probe(dir.path());
    let mut b = seccomp_bundle(true, &probe);
    let script = "\
        unshare -U true; echo unshare_user=$?; unshare -U -r id -u; \
        unshare -m true; echo unshare_mnt=$?; \
        unshare -n true; echo unshare_net=$?; \
        unshare -p -f true; echo unshare_pid=$?; \
        nsenter -t 1 -m true; echo nsenter=$?; \
        mount -t tmpfs tmpfs /tmp; echo mount=$?; \
        echo ns=$(readlink /proc/self/ns/user)";
    let (_, out, err) = sh(&mut b, script);
    for k in [
        "unshare_user",
        "unshare_mnt",
        "unshare_net",
        "unshare_pid",
        "nsenter",
        "mount",
    ] {
        let v = out
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k}: {out} {err}"));
        assert_ne!(v, "0", "{k} succeeded under the default profile: {out}");
    }
    assert!(
        err.matches("Operation not permitted").count() >= 5,
        "denied with EPERM: {err}"
    );
    assert_eq!(
        out.lines().filter(|l| l.trim() == "0").count(),
        0,
        "a new user namespace gave root: {out}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. The wasm guest

use common::wasm_bundle::WasmBundle;

#[test]
fn a_wasm_guest_cannot_leave_its_preopens() {
    let (host, secret, content) = host_secret();
    let s = secret.display().to_string();
    let climb = format!("../../../../../../..{s}");
    let reads = [
        s.clone(),
        format!("/..{s}"),
        format!("/app/../../../../..{s}"),
        climb.clone(),
        format!("/app/{climb}"),
        format!("/proc/1/root{s}"),
        format!("/proc/self/root{s}"),
        format!("/proc/self/cwd/{climb}"),
        "/link-abs".to_string(),
        "/link-rel".to_string(),
        "/app/link-dir/secret".to_string(),
    ];
    for path in &reads {
        let w = WasmBundle::new(&["/app/fs.wasm", "read", path]);
        std::os::unix::fs::symlink(&secret, w.rootfs.join("link-abs")).unwrap();
        std::os::unix::fs::symlink(&climb, w.rootfs.join("link-rel")).unwrap();
        std::os::unix::fs::symlink(host.path(), w.rootfs.join("app/link-dir")).unwrap();
        let (code, out, err) = w.run();
        assert!(
            !out.contains(&content) && !err.contains(&content),
            "the guest read the host's secret through {path}"
        );
        assert_eq!(code, 2, "{path}: {out} {err}");
    }
    // Writes through the same tricks: nothing reaches the host directory.
    let target = host.path().join("pwned");
    for path in [
        target.display().to_string(),
        format!("/tmp/../../../../..{}", target.display()),
        "/app/link-dir/pwned".to_string(),
        "/tmp/../link-abs".to_string(),
    ] {
        let w = WasmBundle::new(&["/app/fs.wasm", "write", &path, "pwned"]);
        std::os::unix::fs::symlink(&secret, w.rootfs.join("link-abs")).unwrap();
        std::os::unix::fs::symlink(host.path(), w.rootfs.join("app/link-dir")).unwrap();
        let (code, out, err) = w.run();
        assert_ne!(code, 0, "{path}: {out} {err}");
        assert!(
            !target.exists(),
            "the guest created {} on the host",
            target.display()
        );
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), content);
    }
    // The guest's / is the rootfs, and `..` of / is / itself.
    for dir in ["/", "/..", "/app/../.."] {
        let w = WasmBundle::new(&["/app/fs.wasm", "ls", dir]);
        let (code, out, err) = w.run();
        if dir != "/" && code == 2 {
            // WASI refuses to climb above the preopen (cap-std: EPERM).
            assert!(
                out.contains("Operation not permitted"),
                "{dir}: {out} {err}"
            );
            continue;
        }
        assert_eq!(code, 0, "{dir}: {out} {err}");
        let mut names: Vec<&str> = out.lines().filter(|n| *n != "." && *n != "..").collect();
        names.sort();
        let host_only: Vec<String> = entries(Path::new("/"))
            .into_iter()
            .filter(|e| !names.contains(&e.as_str()))
            .collect();
        assert!(names.contains(&"app"), "{dir}: {out}");
        assert!(
            !host_only.is_empty() && !names.contains(&"work") && !names.contains(&"usr"),
            "{dir} lists the host's root: {out}"
        );
    }
}

#[test]
fn a_huge_wasm_allocation_fails_cleanly_under_the_memory_limit() {
    for limit_mib in [64u64, 256] {
        let mut w = WasmBundle::new(&["/app/alloc.wasm", "65535"]);
        w.b.spec["linux"]["resources"]["memory"] = json!({"limit": limit_mib * 1024 * 1024});
        let (code, out, err) = w.run();
        assert_eq!(
            code, 12,
            "{limit_mib} MiB: not a clean allocation failure (137 is the OOM killer): {out} {err}"
        );
        let last = out.lines().last().unwrap_or_default();
        let mib: u64 = last
            .trim_start_matches("allocation failed at ")
            .trim_end_matches(" MiB")
            .parse()
            .unwrap_or_else(|_| panic!("{out}"));
        assert!(mib < limit_mib, "grew to {mib} MiB past {limit_mib} MiB");
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Host processes

#[test]
fn host_processes_are_invisible_and_cannot_be_signalled() {
    let mut sleeper = Command::new("sleep").arg("1000").spawn().unwrap();
    let p = sleeper.id();
    let mut b = Bundle::new(&["true"]);
    let script = format!(
        "kill -9 {p}; echo kill=$?; kill -0 {p}; echo kill0=$?; \
         echo PS; ps -o pid,comm; echo PROC; ls /proc | grep '^[0-9]'; echo END"
    );
    let (_, out, err) = sh(&mut b, &script);
    let alive = sleeper.try_wait().unwrap().is_none();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(alive, "the container killed the host's process {p}: {out}");
    assert!(
        out.contains("kill=1\n") && out.contains("kill0=1\n"),
        "{out}"
    );
    assert!(err.contains("No such process"), "{err}");
    let between = |a: &str, z: &str| -> Vec<String> {
        let s = out.find(a).unwrap() + a.len();
        let e = out[s..].find(z).unwrap() + s;
        out[s..e].lines().map(str::to_string).collect()
    };
    let ps = between("PS\n", "PROC\n");
    assert!(
        !ps.iter().any(|l| l.contains("sleep")),
        "ps shows a host process: {ps:?}"
    );
    // The header, the shell (pid 1) and ps itself.
    assert!(ps.len() <= 3, "ps shows more than the container's: {ps:?}");
    assert!(ps.iter().any(|l| l.trim() == "1 sh"), "{ps:?}");
    let pids: Vec<u32> = between("PROC\n", "END")
        .iter()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert!(
        !pids.contains(&p) && pids.iter().all(|&x| x < 10),
        "/proc lists host pids: {pids:?}"
    );
}
