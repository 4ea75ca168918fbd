//! Arbitrary UTF-8 to `Template::parse` (the `--format` of `pouch ps/inspect/images`), and what
//! parses rendered against a fixed container-like JSON value. Must never panic.

use pouch::container::template::Template;
use std::sync::OnceLock;

fn value() -> &'static serde_json::Value {
    static V: OnceLock<serde_json::Value> = OnceLock::new();
    V.get_or_init(|| {
        serde_json::json!({
            "ID": "0123456789abcdef",
            "Name": "Ünïcödé-ß-İ",
            "Image": "docker.io/library/busybox:latest",
            "State": { "Status": "running", "Pid": 42, "ExitCode": null, "Running": true },
            "Config": { "Env": ["A=1", "B=2"], "Labels": { "k": "v", "K": "w" } },
            "Mounts": [ { "Source": "/a", "Destination": "/b" } ],
            "Size": 1.5e300,
            "": "empty key"
        })
    })
}

pub fn check(data: &[u8]) {
    let s = super::utf8_prefix(data);
    if let Ok(t) = Template::parse(s) {
        let _ = t.render(value());
    }
}
