//! Signal names and numbers as `kill` accepts them: `9`, `KILL`, `SIGKILL`, `sigkill`.

use nix::sys::signal::Signal;

use super::Error;

/// Parses a signal given by number or name (with or without `SIG`, any case).
pub fn parse_signal(s: &str) -> Result<Signal, Error> {
    let bad = || {
        Error::Other(format!(
            "unknown signal {s:?}: give a number (9) or a name (KILL, SIGTERM)"
        ))
    };
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("hup").unwrap(), Signal::SIGHUP);
        assert!(parse_signal("NOPE")
            .unwrap_err()
            .to_string()
            .contains("NOPE"));
        assert!(parse_signal("999").is_err());
    }
}
