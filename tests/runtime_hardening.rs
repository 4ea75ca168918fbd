//! Hostile or unusual input that must not reach the host: symlinks in the image, descriptors
//! left open by the caller, missing device rules, shared propagation, a bind on /dev.

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;

use common::*;
use serde_json::json;

#[test]
fn a_dangling_symlink_in_the_image_cannot_create_host_files() {
    let host_dir = tempfile::tempdir().unwrap();
    let victim = host_dir.path().join("CREATED_BY_CONTAINER");
    let mut b = Bundle::new(&["true"]);
    let rootfs = private_rootfs(&mut b);
    std::fs::remove_file(rootfs.join("etc/hosts")).ok();
    std::os::unix::fs::symlink(&victim, rootfs.join("etc/hosts")).unwrap();
    std::os::unix::fs::symlink(
        format!("../../../../../..{}", victim.display()),
        rootfs.join("etc/relative"),
    )
    .unwrap();
    let src = b.dir.path().join("hosts");
    std::fs::write(&src, "127.0.0.1 localhost\n").unwrap();
    for dest in ["/etc/hosts", "/etc/relative"] {
        let mut b2 = Bundle::new(&["true"]);
        b2.spec = b.spec.clone();
        b2.spec["root"]["path"] = json!(rootfs);
        b2.spec["linux"]["cgroupsPath"] = json!(format!("{CGROUP_TEST_ROOT}/{}", b2.id));
        b2.spec["mounts"].as_array_mut().unwrap().push(json!({
            "destination": dest, "type": "bind", "source": src, "options": ["rbind", "ro"]}));
        let _ = b2.run();
        assert!(
            !victim.exists(),
            "{dest}: the runtime created {} on the host",
            victim.display()
        );
    }
}

#[test]
fn descriptors_left_open_by_the_caller_do_not_reach_the_container() {
    let host_dir = tempfile::tempdir().unwrap();
    std::fs::write(host_dir.path().join("secret"), "host-secret").unwrap();
    // The working directory through an inherited descriptor of a host directory: refused.
    let mut b = Bundle::new(&["cat", "secret"]);
    b.spec["process"]["cwd"] = json!("/proc/self/fd/9");
    b.write();
    let dir = std::fs::File::open(host_dir.path()).unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&dir);
    let mut c = b.cmd();
    c.args(["run", "--bundle", b.dir.path().to_str().unwrap(), &b.id]);
    // SAFETY: dup2 only.
    unsafe {
        c.pre_exec(move || {
            if libc::dup2(raw, 9) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = run_captured(&mut c);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("host-secret"),
        "escaped through fd 9"
    );
    assert!(!o.status.success());
    // And nothing but stdio is open in the program (a seccomp profile denying close_range
    // changes nothing: descriptors are closed before it is loaded).
    let mut b = Bundle::new(&["ls", "/proc/self/fd"]);
    b.spec["process"]["noNewPrivileges"] = json!(false);
    b.spec["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["close_range"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]});
    b.write();
    let mut c = b.cmd();
    c.args(["run", "--bundle", b.dir.path().to_str().unwrap(), &b.id]);
    // SAFETY: dup2 only.
    unsafe {
        c.pre_exec(move || {
            if libc::dup2(raw, 9) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = stdout_ok(run_captured(&mut c));
    let fds: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        fds,
        ["0", "1", "2", "3"],
        "only stdio (and ls's own directory)"
    );
}

#[test]
fn no_device_rules_in_the_spec_still_means_deny_all_but_the_defaults() {
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.spec["linux"].as_object_mut().unwrap().remove("resources");
    b.create();
    let devices = b
        .cgroup_dirs()
        .into_iter()
        .find(|p| p.starts_with("/sys/fs/cgroup/devices"))
        .unwrap();
    let list = std::fs::read_to_string(devices.join("devices.list")).unwrap();
    assert!(
        !list.contains("a *:* rwm"),
        "the container may use every device: {list}"
    );
    assert!(list.contains("c 1:3 rwm"), "/dev/null is allowed: {list}");
}

#[test]
fn shared_rootfs_propagation_leaks_no_mount_to_the_caller() {
    let mut b = Bundle::new(&["true"]);
    b.spec["linux"]["rootfsPropagation"] = json!("rshared");
    b.write();
    // In a mount namespace of our own whose / is shared, as on a systemd host.
    let script = format!(
        "mount --make-rshared / && {} --root {} run --bundle {} {} && grep -c {} /proc/self/mountinfo; true",
        runtime_bin(),
        b.root.path().display(),
        b.dir.path().display(),
        b.id,
        busybox_rootfs().display()
    );
    let o = run_captured(Command::new("unshare").args(["-m", "sh", "-c", &script]));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        out.trim(),
        "0",
        "mounts of the container left in the caller's namespace"
    );
}

#[test]
fn a_bind_mount_on_dev_is_not_repopulated() {
    let fake = tempfile::tempdir().unwrap();
    std::fs::write(fake.path().join("null"), "a regular file").unwrap();
    let mut b = Bundle::new(&["true"]);
    let mounts = b.spec["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| !m["destination"].as_str().unwrap().starts_with("/dev"));
    mounts.push(
        json!({"destination": "/dev", "type": "bind", "source": fake.path(), "options": ["rbind"]}),
    );
    let _ = b.run();
    let meta = std::fs::symlink_metadata(fake.path().join("null")).unwrap();
    assert!(
        meta.is_file(),
        "the bound directory's files were replaced by device nodes"
    );
    assert_eq!(
        std::fs::read_dir(fake.path()).unwrap().count(),
        1,
        "nothing added to the source"
    );
}
