//! Signal names and numbers as `kill` accepts them: `9`, `KILL`, `SIGKILL`, `sigkill`, and the
//! realtime signals `37`, `RTMIN+3`, `SIGRTMIN+3`, `RTMAX-2`.
//!
//! Signals are raw numbers (`i32`) throughout the runtime: nix's `Signal` has no realtime
//! signals, and `podman stop` of a systemd container sends `SIGRTMIN+3` (37).

use nix::sys::signal::Signal;

use super::Error;

/// The lowest realtime signal available to programs (34 with glibc, which keeps 32 and 33).
fn sigrtmin() -> i32 {
    libc::SIGRTMIN()
}

/// The highest signal number (64 on Linux).
fn sigrtmax() -> i32 {
    libc::SIGRTMAX()
}

/// Parses a signal given by number (1 to `SIGRTMAX`, 64) or name, with or without `SIG`, in any
/// case: `KILL`, `SIGTERM`, `RTMIN`, `RTMIN+3`, `SIGRTMAX-1`.
pub fn parse_signal(s: &str) -> Result<i32, Error> {
    let bad = || {
        Error::Other(format!(
            "unknown signal {s:?}: give a number from 1 to {} or a name (KILL, SIGTERM, RTMIN+3)",
            sigrtmax()
        ))
    };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<i32>() {
            Ok(n) if (1..=sigrtmax()).contains(&n) => Ok(n),
            _ => Err(bad()),
        };
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return realtime(sigrtmin(), rest, '+').ok_or_else(bad);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return realtime(sigrtmax(), rest, '-').ok_or_else(bad);
    }
    let n = match name {
        // Other names of the same signals (nix knows only one name for each).
        "IOT" => libc::SIGIOT,
        "POLL" => libc::SIGPOLL,
        "CLD" => libc::SIGCHLD,
        _ => format!("SIG{name}").parse::<Signal>().map_err(|_| bad())? as i32,
    };
    Ok(n)
}

/// `RTMIN` / `RTMIN+n` (`dir` `+`) or `RTMAX` / `RTMAX-n` (`dir` `-`), `rest` being what follows
/// the base name; the result must stay within the realtime range.
fn realtime(base: i32, rest: &str, dir: char) -> Option<i32> {
    let n = if rest.is_empty() {
        base
    } else {
        let digits = rest.strip_prefix(dir)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let off: i32 = digits.parse().ok()?;
        if dir == '+' {
            base.checked_add(off)?
        } else {
            base.checked_sub(off)?
        }
    };
    (sigrtmin()..=sigrtmax()).contains(&n).then_some(n)
}

/// The name of a signal for messages: `SIGKILL`, `SIGRTMIN+3`, or the number if it has none.
pub fn signal_name(sig: i32) -> String {
    if let Ok(s) = Signal::try_from(sig) {
        return s.as_str().to_string();
    }
    let (min, max) = (sigrtmin(), sigrtmax());
    if (min..=max).contains(&sig) {
        return if sig - min <= max - sig {
            format!("SIGRTMIN+{}", sig - min)
        } else {
            format!("SIGRTMAX-{}", max - sig)
        };
    }
    format!("signal {sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse_signal("9").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("KILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("hup").unwrap(), libc::SIGHUP);
        assert_eq!(parse_signal("sigwinch").unwrap(), libc::SIGWINCH);
        assert_eq!(parse_signal("IOT").unwrap(), libc::SIGABRT);
        assert_eq!(parse_signal("SIGCLD").unwrap(), libc::SIGCHLD);
        assert!(parse_signal("NOPE")
            .unwrap_err()
            .to_string()
            .contains("NOPE"));
        for bad in [
            "0",
            "-1",
            "65",
            "999",
            "99999999999",
            "",
            "SIG",
            "+9",
            "SIG9",
        ] {
            assert!(parse_signal(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn realtime_signals() {
        let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        assert_eq!((min, max), (34, 64), "glibc on Linux");
        // What `podman stop` sends to a systemd container.
        for s in [
            "37",
            "SIGRTMIN+3",
            "RTMIN+3",
            "rtmin+3",
            "SigRtMin+3",
            "RTMAX-27",
        ] {
            assert_eq!(parse_signal(s).unwrap(), 37, "{s}");
        }
        assert_eq!(parse_signal("34").unwrap(), 34);
        assert_eq!(parse_signal("RTMIN").unwrap(), 34);
        assert_eq!(parse_signal("SIGRTMAX").unwrap(), 64);
        assert_eq!(parse_signal("64").unwrap(), 64);
        assert_eq!(parse_signal("RTMIN+30").unwrap(), 64);
        for bad in [
            "RTMIN+31", "RTMIN-1", "RTMAX+1", "RTMAX-31", "RTMIN+", "RTMIN3", "RTMINX",
        ] {
            assert!(parse_signal(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(signal_name(37), "SIGRTMIN+3");
        assert_eq!(signal_name(63), "SIGRTMAX-1");
        assert_eq!(signal_name(9), "SIGKILL");
        for n in 1..=max {
            if n != 32 && n != 33 {
                assert_eq!(parse_signal(&signal_name(n)).unwrap(), n, "{n}");
            }
        }
    }
}
