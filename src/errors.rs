//! Saying an error with its causes.

use std::error::Error;

/// An error and its causes, `error: cause: cause's cause`, each said once: a cause whose text
/// is already in what was said so far is left out. (Many errors already include their cause in
/// their own message, as thiserror's `{source}` does, and still return it as their source; the
/// plain chain, as anyhow's `{:#}`, then says it twice or more.)
pub fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(c) = next {
        let t = c.to_string();
        if !t.is_empty() && !s.contains(&t) {
            if !s.is_empty() {
                s.push_str(": ");
            }
            s.push_str(&t);
        }
        next = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::chain;
    use std::io;

    #[derive(Debug, thiserror::Error)]
    #[error("write file data failed: {source}")]
    struct Write {
        source: io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("layer entry {name:?}: {source}")]
    struct Entry {
        name: String,
        source: Write,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("unpack layer {layer}")]
    struct Unpack {
        layer: String,
        source: Entry,
    }

    fn disk_full() -> Entry {
        Entry {
            name: "usr/lib/big".into(),
            source: Write {
                source: io::Error::from_raw_os_error(libc::ENOSPC),
            },
        }
    }

    #[test]
    fn a_cause_already_said_is_left_out() {
        let os = io::Error::from_raw_os_error(libc::ENOSPC).to_string();
        let s = chain(&disk_full());
        assert_eq!(
            s,
            format!("layer entry \"usr/lib/big\": write file data failed: {os}")
        );
        assert_eq!(s.matches(&os).count(), 1, "{s}");
    }

    #[test]
    fn a_cause_not_said_yet_is_added() {
        let os = io::Error::from_raw_os_error(libc::ENOSPC).to_string();
        let e = Unpack {
            layer: "sha256:abc".into(),
            source: disk_full(),
        };
        assert_eq!(
            chain(&e),
            format!(
                "unpack layer sha256:abc: layer entry \"usr/lib/big\": write file data failed: {os}"
            )
        );
    }

    #[test]
    fn anyhow_contexts_each_said_once() {
        let os = io::Error::from_raw_os_error(libc::ENOSPC);
        let text = os.to_string();
        let e = anyhow::Error::new(os)
            .context(format!("write /data/x: {text}"))
            .context("pull example.com/x:1");
        assert_eq!(
            format!("{e:#}"),
            format!("pull example.com/x:1: write /data/x: {text}: {text}")
        );
        assert_eq!(
            chain(e.as_ref()),
            format!("pull example.com/x:1: write /data/x: {text}")
        );
        // Without causes: the message alone.
        assert_eq!(chain(&io::Error::other("plain")), "plain");
    }

    #[test]
    fn an_empty_message_takes_no_separator() {
        #[derive(Debug, thiserror::Error)]
        #[error("")]
        struct Empty {
            source: io::Error,
        }
        let e = Empty {
            source: io::Error::other("the cause"),
        };
        assert_eq!(chain(&e), "the cause");
    }
}
