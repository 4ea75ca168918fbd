//! The runtime's log, in runc's two formats, because its callers parse it: containerd's runc
//! shim reads the last `msg` of `--log-format json` to report why a command failed.
//!
//! - text: `time="2026-11-28T21:00:00.000000000Z" level=error msg="…"`
//! - json: `{"level":"error","msg":"…","time":"2026-11-28T21:00:00.000000000Z"}`

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// logfmt-style lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

struct RuncLayer {
    out: Mutex<Box<dyn Write + Send>>,
    format: LogFormat,
    max: Level,
}

#[derive(Default)]
struct Fields {
    msg: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.msg, "{value:?}");
        } else {
            self.rest
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg.push_str(value);
        } else {
            self.rest
                .push((field.name().to_string(), value.to_string()));
        }
    }
}

/// Formats one log line (without the newline).
pub fn format_line(
    format: LogFormat,
    level: &Level,
    msg: &str,
    fields: &[(String, String)],
) -> String {
    let time = crate::runtime::state::now_rfc3339();
    let level = level.as_str().to_ascii_lowercase();
    match format {
        LogFormat::Json => {
            let mut m = serde_json::Map::new();
            m.insert("level".into(), level.into());
            m.insert("msg".into(), msg.into());
            m.insert("time".into(), time.into());
            for (k, v) in fields {
                m.insert(k.clone(), v.clone().into());
            }
            serde_json::Value::Object(m).to_string()
        }
        LogFormat::Text => {
            let mut s = format!("time={time:?} level={level} msg={msg:?}");
            for (k, v) in fields {
                let _ = write!(s, " {k}={v:?}");
            }
            s
        }
    }
}

impl<S: Subscriber> Layer<S> for RuncLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().level() > &self.max {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let line = format_line(self.format, event.metadata().level(), &f.msg, &f.rest);
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// Installs the global logger: to `log` (appended) or stderr, in `format`; debug events only
/// with `debug`. Returns an error if the log file cannot be opened.
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) -> std::io::Result<()> {
    let out: Box<dyn Write + Send> = match log {
        Some(p) => Box::new(OpenOptions::new().create(true).append(true).open(p)?),
        None => Box::new(std::io::stderr()),
    };
    let layer = RuncLayer {
        out: Mutex::new(out),
        format,
        max: if debug { Level::DEBUG } else { Level::WARN },
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_have_runc_fields() {
        let l = format_line(
            LogFormat::Json,
            &Level::ERROR,
            "container \"x\" does not exist",
            &[],
        );
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container \"x\" does not exist");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        let t = format_line(
            LogFormat::Text,
            &Level::DEBUG,
            "hi",
            &[("id".into(), "a".into())],
        );
        assert!(t.contains("level=debug msg=\"hi\" id=\"a\""), "{t}");
    }
}
