//! Runtime-spec conformance, checked from inside real containers: each feature of the spec is
//! set in config.json and observed by a busybox shell in the container (and, where it makes
//! sense, from the host side too).

mod common;

use std::os::unix::process::CommandExt;

use common::*;
use serde_json::json;

/// Runs `script` with `sh -c` in a container after `tweak` edits the spec; returns stdout.
fn sh(script: &str, tweak: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut b = Bundle::new(&["sh", "-c", script]);
    tweak(&mut b.spec);
    b.run_ok()
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in {status}"))
        .trim()
        .to_string()
}

#[test]
fn capabilities_all_five_sets() {
    let out = sh("cat /proc/self/status", |s| {
        s["process"]["capabilities"] = json!({
            "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE", "CAP_CHOWN"],
            "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
            "effective": ["CAP_KILL", "CAP_CHOWN"],
            "inheritable": ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
            "ambient": ["CAP_CHOWN"]
        });
        s["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    });
    let bit = |n: u32| 1u64 << n;
    let (chown, kill, nbs, audit) = (bit(0), bit(5), bit(10), bit(29));
    let hex = |k: &str| u64::from_str_radix(&status_field(&out, k), 16).unwrap();
    assert_eq!(hex("CapBnd"), kill | nbs | audit | chown);
    assert_eq!(hex("CapAmb"), chown);
    assert_eq!(hex("CapInh"), nbs | chown);
    // A non-root program after execve: permitted and effective = ambient.
    assert_eq!(hex("CapPrm"), chown);
    assert_eq!(hex("CapEff"), chown);
}

#[test]
fn no_new_privileges_and_seccomp_from_the_profile() {
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "args": [{"index": 1, "value": 511, "op": "SCMP_CMP_EQ"}]},
            {"names": ["fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "args": [{"index": 2, "value": 511, "op": "SCMP_CMP_EQ"}]}
        ]
    });
    let script = "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; \
                  mkdir /tmp/d 2>&1 || echo mkdir-denied; \
                  touch /tmp/f; chmod 644 /tmp/f && echo chmod644-ok; \
                  chmod 777 /tmp/f 2>&1 || echo chmod777-denied";
    for nnp in [true, false] {
        let p = profile.clone();
        let out = sh(script, |s| {
            s["linux"]["seccomp"] = p;
            s["process"]["noNewPrivileges"] = json!(nnp);
        });
        assert_eq!(
            status_field(&out, "NoNewPrivs"),
            if nnp { "1" } else { "0" },
            "{out}"
        );
        assert_eq!(status_field(&out, "Seccomp"), "2", "{out}");
        assert!(
            out.contains("Operation not permitted") && out.contains("mkdir-denied"),
            "{out}"
        );
        assert!(
            out.contains("chmod644-ok"),
            "arg condition must let 0644 through: {out}"
        );
        assert!(
            out.contains("Permission denied") && out.contains("chmod777-denied"),
            "{out}"
        );
    }
    // Without a profile: no filter.
    let out = sh("grep Seccomp: /proc/self/status", |_| {});
    assert_eq!(status_field(&out, "Seccomp"), "0");
}

#[test]
fn seccomp_errors_name_the_field() {
    let mut b = Bundle::new(&["true"]);
    b.spec["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]});
    b.write();
    let o = b.rt(&["create", "--bundle", b.dir.path().to_str().unwrap(), &b.id]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("linux.seccomp.syscalls[0]"),
        "{e}"
    );
}

#[test]
fn hostname_domainname_and_namespaces() {
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    let out = sh(
        "hostname; cat /proc/sys/kernel/domainname; echo pid=$$; readlink /proc/self/ns/net; readlink /proc/self/ns/ipc; \
         tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '",
        |s| {
            s["hostname"] = json!("box1");
            s["domainname"] = json!("example.test");
        },
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "box1");
    assert_eq!(lines[1], "example.test");
    assert_eq!(
        lines[2], "pid=1",
        "the process is pid 1 of a new pid namespace"
    );
    assert_ne!(lines[3], host_net.to_str().unwrap());
    assert_ne!(lines[4], host_ipc.to_str().unwrap());
    assert_eq!(&lines[5..], ["lo"], "a new network namespace has only lo");
}

#[test]
fn joining_a_namespace_by_path() {
    let a = Bundle::new(&["sleep", "1000"]);
    a.create();
    let pid = a.state()["pid"].as_i64().unwrap();
    let a_net = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let a_uts = std::fs::read_link(format!("/proc/{pid}/ns/uts")).unwrap();
    let out = sh(
        "readlink /proc/self/ns/net; readlink /proc/self/ns/uts",
        |s| {
            let ns = s["linux"]["namespaces"].as_array_mut().unwrap();
            for n in ns.iter_mut() {
                if n["type"] == "network" {
                    n["path"] = json!(format!("/proc/{pid}/ns/net"));
                }
                if n["type"] == "uts" {
                    n["path"] = json!(format!("/proc/{pid}/ns/uts"));
                }
            }
            s["hostname"] = json!(null);
        },
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, [a_net.to_str().unwrap(), a_uts.to_str().unwrap()]);
}

#[test]
fn user_namespace_with_id_mappings() {
    let out = sh(
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; echo x > /tmp/f && stat -c %u /tmp/f",
        |s| {
            s["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            s["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            s["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            // cgroup v1 cannot be mounted from a user namespace.
            s["mounts"]
                .as_array_mut()
                .unwrap()
                .retain(|m| m["type"] != "cgroup");
        },
    );
    let maps: Vec<Vec<&str>> = out
        .lines()
        .take(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(maps, [["0", "100000", "65536"], ["0", "100000", "65536"]]);
    assert_eq!(out.lines().nth(2), Some("0"));
    assert_eq!(
        out.lines().nth(3),
        Some("0"),
        "files created as root inside: {out}"
    );
}

#[test]
fn user_groups_umask_cwd_env() {
    let out = sh("id; umask; pwd; echo $FOO; echo $PATH", |s| {
        s["process"]["user"] =
            json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 63});
        s["process"]["cwd"] = json!("/tmp");
        s["process"]["env"] = json!(["PATH=/bin:/sbin", "FOO=bar baz"]);
    });
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("uid=1000(pouch) gid=1000(pouch) groups="),
        "{out}"
    );
    assert!(lines[0].contains("10") && lines[0].contains("20"), "{out}");
    assert_eq!(&lines[1..], ["0077", "/tmp", "bar baz", "/bin:/sbin"]);
}

#[test]
fn rlimits_and_oom_score_adj() {
    let out = sh("ulimit -n; ulimit -c; cat /proc/self/oom_score_adj", |s| {
        s["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 768},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
        ]);
        s["process"]["oomScoreAdj"] = json!(300);
    });
    assert_eq!(out.lines().collect::<Vec<_>>(), ["512", "0", "300"]);
    let mut b = Bundle::new(&["true"]);
    b.spec["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]);
    let (code, _, err) = b.run();
    assert_ne!(code, 0);
    assert!(
        err.contains("process.rlimits[0]") && err.contains("soft"),
        "{err}"
    );
}

#[test]
fn cgroup_limits_inside_and_on_the_host() {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max \
         /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpuset/cpuset.cpus; \
         cat /proc/self/cgroup | grep memory",
    ]);
    b.spec["linux"]["resources"] = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "memory": {"limit": 67108864},
        "pids": {"limit": 50},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"}
    });
    b.spec["process"]["args"][2] = json!(format!(
        "{}; cat /sys/fs/cgroup/memory/memory.limit_in_bytes > /dev/null",
        b.spec["process"]["args"][2].as_str().unwrap()
    ));
    let out = b.run_ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..5],
        ["67108864", "50", "512", "50000", "0"],
        "{out}"
    );
    assert_eq!(
        lines[5], "4:memory:/",
        "a cgroup namespace rooted at the container's cgroup"
    );

    // The same limits from the host side while the container runs.
    let b = Bundle::new(&["sleep", "1000"]);
    let mut b = b;
    b.spec["linux"]["resources"] = json!({"memory": {"limit": 33554432}, "pids": {"limit": 20}});
    b.create();
    let dir = |ctrl: &str| {
        b.cgroup_dirs()
            .into_iter()
            .find(|p| p.starts_with(format!("/sys/fs/cgroup/{ctrl}")))
            .unwrap()
    };
    assert_eq!(
        std::fs::read_to_string(dir("memory").join("memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        "33554432"
    );
    assert_eq!(
        std::fs::read_to_string(dir("pids").join("pids.max"))
            .unwrap()
            .trim(),
        "20"
    );
    // Hybrid host: the init is in the cgroup2 hierarchy too.
    let pid = b.state()["pid"].as_i64().unwrap();
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        own.lines()
            .any(|l| l == format!("0::{CGROUP_TEST_ROOT}/{}", b.id)),
        "{own}"
    );
}

#[test]
fn pids_limit_is_enforced() {
    let out = sh(
        "sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done' 2>/dev/null; \
         echo procs=$(cat /sys/fs/cgroup/pids/pids.current)",
        |s| s["linux"]["resources"] = json!({"pids": {"limit": 5}}),
    );
    let n: u32 = out.trim().trim_start_matches("procs=").parse().unwrap();
    assert!(n <= 5, "pids.max=5 but {n} processes");
}

#[test]
fn readonly_root_masked_and_readonly_paths_and_mounts() {
    let out = sh(
        "touch /newfile 2>&1; wc -c < /proc/timer_list; grep ' /sys/firmware ' /proc/self/mountinfo | wc -l; \
         echo 1 2>&1 > /proc/sys/kernel/domainname; \
         echo hi 2>&1 > /data/x; cat /data/marker; \
         grep ' /tmp ' /proc/self/mountinfo; grep ' /dev ' /proc/self/mountinfo",
        |s| {
            let host = tempfile::tempdir().unwrap().keep();
            std::fs::write(host.join("marker"), "from-host\n").unwrap();
            s["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/data", "type": "bind", "source": host, "options": ["rbind", "ro"]}));
            s["mounts"].as_array_mut().unwrap().retain(|m| m["destination"] != "/tmp");
            s["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "noexec", "size=1m", "mode=1777"]}));
        },
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 8, "{out}");
    assert!(lines[0].contains("Read-only file system"), "{out}");
    assert!(!std::fs::read_to_string("/proc/timer_list")
        .unwrap()
        .is_empty());
    assert_eq!(lines[1].trim(), "0", "masked /proc/timer_list reads empty");
    assert_eq!(
        lines[2].trim(),
        "1",
        "masked /sys/firmware has a mount over it"
    );
    assert!(lines[3].contains("Read-only file system"), "{out}");
    assert!(lines[4].contains("Read-only file system"), "{out}");
    assert_eq!(lines[5], "from-host");
    assert!(
        lines[6].contains("nosuid")
            && lines[6].contains("noexec")
            && lines[6].contains("size=1024k"),
        "{out}"
    );
    assert!(
        lines[7].contains("tmpfs") && lines[7].contains("mode=755"),
        "{out}"
    );
}

#[test]
fn writable_root_when_not_readonly() {
    // A private copy of the rootfs: this test writes into it.
    let mut b = Bundle::new(&["sh", "-c", "echo ok > /written && cat /written"]);
    let copy = private_rootfs(&mut b);
    b.spec["root"]["readonly"] = json!(false);
    assert_eq!(b.run_ok(), "ok\n");
    assert_eq!(
        std::fs::read_to_string(copy.join("written")).unwrap(),
        "ok\n"
    );
}

#[test]
fn devices_default_and_from_the_spec() {
    let out = sh(
        "stat -c '%n %t:%T %a %u:%g' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty /dev/mine; \
         readlink /dev/ptmx; readlink /dev/fd; echo x > /dev/null && echo write-ok; \
         echo x 2>&1 > /dev/mine || echo mine-denied; head -c 4 /dev/zero | wc -c",
        |s| {
            s["linux"]["devices"] = json!([{"path": "/dev/mine", "type": "c", "major": 1, "minor": 3,
                                             "fileMode": 416, "uid": 1, "gid": 2}]);
        },
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..7],
        [
            "/dev/null 1:3 666 0:0",
            "/dev/zero 1:5 666 0:0",
            "/dev/full 1:7 666 0:0",
            "/dev/random 1:8 666 0:0",
            "/dev/urandom 1:9 666 0:0",
            "/dev/tty 5:0 666 0:0",
            "/dev/mine 1:3 640 1:2"
        ]
    );
    // /dev/mine is 0640 owned by 1:2 and root has no CAP_DAC_OVERRIDE here.
    assert_eq!(&lines[7..10], ["pts/ptmx", "/proc/self/fd", "write-ok"]);
    assert!(lines[10].contains("Permission denied"), "{out}");
    assert_eq!(&lines[11..], ["mine-denied", "4"]);
}

#[test]
fn device_cgroup_denies_what_the_spec_denies() {
    let out = sh(
        "head -c 1 /dev/mine 2>&1; echo; head -c 1 /dev/zero | wc -c",
        |s| {
            s["linux"]["devices"] =
                json!([{"path": "/dev/mine", "type": "c", "major": 1, "minor": 5}]);
            s["linux"]["resources"] = json!({"devices": [
                {"allow": false, "access": "rwm"},
                {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "r"}
            ]});
        },
    );
    // /dev/mine is created (mknod allowed) but reading 1:5 is denied... except that the runtime's
    // default allow for /dev/zero (1:5 rwm) comes after the spec's rules, as in runc.
    assert!(out.lines().last() == Some("1"), "{out}");
    let out = sh("head -c 1 /dev/mine 2>&1 | od -c | head -1; echo", |s| {
        s["linux"]["devices"] = json!([{"path": "/dev/mine", "type": "c", "major": 1, "minor": 7}]);
        s["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    });
    assert!(
        !out.contains("Operation not permitted"),
        "spec devices are allowed: {out}"
    );
    let out = sh(
        "mknod /dev/sda b 8 0 && head -c 1 /dev/sda 2>&1; true",
        |s| {
            s["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
            s["process"]["capabilities"]["bounding"]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_MKNOD"));
            s["process"]["capabilities"]["effective"]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_MKNOD"));
            s["process"]["capabilities"]["permitted"]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_MKNOD"));
        },
    );
    assert!(
        out.contains("Operation not permitted"),
        "a block device outside the allow list: {out}"
    );
}

#[test]
fn sysctls_in_the_containers_namespaces() {
    let out = sh(
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni",
        |s| {
            s["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"});
        },
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), ["1", "1234"]);
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/shmmni")
            .unwrap()
            .trim(),
        "1234",
        "the host's value is untouched"
    );
}

#[test]
fn no_pivot_and_preserved_fds() {
    let b = Bundle::new(&["sh", "-c", "cat <&3; cat <&4 2>&1 || echo no-fd-4"]);
    b.write();
    let secret = b.dir.path().join("secret");
    std::fs::write(&secret, "passed-fd\n").unwrap();
    let f3 = std::fs::File::open(&secret).unwrap();
    let f4 = std::fs::File::open(&secret).unwrap();
    use std::os::fd::AsRawFd;
    let (r3, r4) = (f3.as_raw_fd(), f4.as_raw_fd());
    let mut c = b.cmd();
    c.args([
        "run",
        "--no-pivot",
        "--preserve-fds",
        "1",
        "--bundle",
        b.dir.path().to_str().unwrap(),
        &b.id,
    ]);
    // SAFETY: dup2 only, between fork and exec.
    unsafe {
        c.pre_exec(move || {
            // Through high numbers first: r3 and r4 may themselves be 3 or 4.
            if libc::dup2(r3, 100) < 0 || libc::dup2(r4, 101) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::dup2(100, 3) < 0 || libc::dup2(101, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(100);
            libc::close(101);
            Ok(())
        });
    }
    let out = stdout_ok(run_captured(&mut c));
    assert_eq!(out.lines().next(), Some("passed-fd"));
    assert!(out.contains("no-fd-4"), "fd 4 was not preserved: {out}");
}

#[test]
fn rootfs_propagation_and_cgroup_mount() {
    let out = sh(
        "grep ' / / ' /proc/self/mountinfo; ls /sys/fs/cgroup",
        |s| {
            s["linux"]["rootfsPropagation"] = json!("rprivate");
        },
    );
    let root_line = out.lines().next().unwrap();
    assert!(
        !root_line.contains("shared:") && !root_line.contains("master:"),
        "{root_line}"
    );
    for c in ["cpu", "memory", "pids", "devices", "unified"] {
        assert!(
            out.lines().any(|l| l == c),
            "/sys/fs/cgroup lacks {c}: {out}"
        );
    }
}
