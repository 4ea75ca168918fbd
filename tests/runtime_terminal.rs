//! Terminals: a shell in a pty answering typed input, through a foreground `run`/`exec` (the
//! runtime relays the terminal) and through `--console-socket` (the master is sent to us).

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use common::terminal::{converse, pty, spawn_on_pty};
use common::*;
use serde_json::json;

#[test]
fn foreground_run_relays_a_terminal() {
    let mut b = Bundle::new(&["sh"]);
    b.spec["process"]["terminal"] = json!(true);
    b.write();
    let (master, slave) = pty(33, 99);
    let mut child = spawn_on_pty(
        b.cmd()
            .args(["run", "--bundle", b.dir.path().to_str().unwrap(), &b.id]),
        &slave,
    );
    drop(slave);
    let out = converse(
        &master,
        &["stty size; tty; echo hello-$((6*7))\n", "exit 3\n"],
        Duration::from_secs(15),
    );
    let status = child.wait().unwrap();
    assert!(
        out.contains("33 99"),
        "window size from our terminal: {out}"
    );
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("hello-42"), "typed input answered: {out}");
    assert_eq!(status.code(), Some(3));
}

#[test]
fn console_socket_receives_the_terminal_master() {
    let mut b = Bundle::new(&["sh"]);
    b.spec["process"]["terminal"] = json!(true);
    b.spec["process"]["consoleSize"] = json!({"height": 25, "width": 81});
    b.write();
    let sock_path = b.dir.path().join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let o = b.rt(&[
        "create",
        "--bundle",
        b.dir.path().to_str().unwrap(),
        "--console-socket",
        sock_path.to_str().unwrap(),
        &b.id,
    ]);
    stdout_ok(o);
    let (conn, _) = listener.accept().unwrap();
    let master = native_runner::console::recv_fd(conn.as_raw_fd()).unwrap();
    stdout_ok(b.rt(&["start", &b.id]));
    let out = converse(
        &master,
        &[
            "stty size; ls -l /dev/console | cut -c1; echo typed-$((2+2))\n",
            "exit\n",
        ],
        Duration::from_secs(15),
    );
    assert!(out.contains("25 81"), "consoleSize applied: {out}");
    assert!(out.contains("typed-4"), "{out}");
    assert!(
        out.lines().any(|l| l.trim() == "c"),
        "/dev/console is the pty: {out}"
    );
    // Without a console socket, a terminal container cannot be created detached.
    let mut b2 = Bundle::new(&["sh"]);
    b2.spec["process"]["terminal"] = json!(true);
    b2.write();
    let o = b2.rt(&[
        "create",
        "--bundle",
        b2.dir.path().to_str().unwrap(),
        &b2.id,
    ]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--console-socket"));
}

#[test]
fn exec_with_a_terminal() {
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.spec["hostname"] = json!("tty-box");
    b.run_detached();
    let (master, slave) = pty(21, 77);
    let mut child = spawn_on_pty(b.cmd().args(["exec", "-t", &b.id, "sh"]), &slave);
    drop(slave);
    let out = converse(
        &master,
        &["stty size; hostname\n", "exit 4\n"],
        Duration::from_secs(15),
    );
    assert_eq!(child.wait().unwrap().code(), Some(4));
    assert!(out.contains("21 77") && out.contains("tty-box"), "{out}");
}
