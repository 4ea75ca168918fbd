//! Which namespaces a container creates and which it joins, from `linux.namespaces`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::{Linux, LinuxNamespaceType};

use crate::error::{Error, Result, SysContext};

/// The clone flag of a namespace type.
pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The spec's name of a namespace type (`"mount"`, `"network"`, …).
pub fn spec_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

/// A namespace to join: its type, the spec's path and an open descriptor of it.
#[derive(Debug)]
pub struct JoinedNamespace {
    /// The namespace type.
    pub typ: LinuxNamespaceType,
    /// `linux.namespaces[].path`.
    pub path: PathBuf,
    /// Opened in the runtime, so a wrong path fails `create` early.
    pub fd: OwnedFd,
}

/// The namespaces of one container: new ones (unshared) and existing ones (joined by path).
#[derive(Debug)]
pub struct NamespacePlan {
    /// Namespaces joined by path, user namespace first.
    pub joined: Vec<JoinedNamespace>,
    /// Namespaces created, as clone flags (user namespace excluded: see `new_user`).
    pub new: CloneFlags,
    /// Whether a new user namespace is created.
    pub new_user: bool,
}

impl NamespacePlan {
    /// Reads `linux.namespaces`; opens the paths to join. Errors name the entry.
    pub fn from_spec(linux: &Linux) -> Result<NamespacePlan> {
        let mut plan = NamespacePlan {
            joined: Vec::new(),
            new: CloneFlags::empty(),
            new_user: false,
        };
        let mut seen = Vec::new();
        for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
            let t = ns.typ();
            if seen.contains(&t) {
                return Err(Error::invalid(format!(
                    "linux.namespaces[{i}]: namespace type {:?} is listed twice; keep one entry per type",
                    spec_name(t)
                )));
            }
            seen.push(t);
            match ns.path() {
                Some(p) if !p.as_os_str().is_empty() => {
                    let fd = open(
                        p.as_path(),
                        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .ctx(|| {
                        format!(
                            "linux.namespaces[{i}]: open {} namespace path {}",
                            spec_name(t),
                            p.display()
                        )
                    })?;
                    plan.joined.push(JoinedNamespace {
                        typ: t,
                        path: p.clone(),
                        fd,
                    });
                }
                _ => {
                    if t == LinuxNamespaceType::User {
                        plan.new_user = true;
                    } else {
                        plan.new |= clone_flag(t);
                    }
                }
            }
        }
        // Join the user namespace first: the others may be owned by it.
        plan.joined
            .sort_by_key(|j| j.typ != LinuxNamespaceType::User);
        if plan.new_user
            && (linux.uid_mappings().as_ref().is_none_or(Vec::is_empty)
                || linux.gid_mappings().as_ref().is_none_or(Vec::is_empty))
        {
            return Err(Error::invalid(
                "linux.namespaces: a new user namespace needs linux.uidMappings and linux.gidMappings; add them or join an existing user namespace by path",
            ));
        }
        Ok(plan)
    }

    /// Whether the container gets (new or joined) a namespace of this type.
    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.creates(t) || self.joined.iter().any(|j| j.typ == t)
    }

    /// Whether the container's namespace of this type is not the runtime's own: created, or
    /// joined by a path that is not the namespace the runtime itself is in.
    pub fn is_private(&self, t: LinuxNamespaceType) -> bool {
        if self.creates(t) {
            return true;
        }
        let file = match t {
            LinuxNamespaceType::Mount => "mnt",
            LinuxNamespaceType::Network => "net",
            other => spec_name(other),
        };
        let ours = std::fs::read_link(format!("/proc/self/ns/{file}")).ok();
        self.joined
            .iter()
            .filter(|j| j.typ == t)
            .any(|j| std::fs::read_link(format!("/proc/self/fd/{}", j.fd.as_raw_fd())).ok() != ours)
    }

    /// Whether the container gets a new namespace of this type.
    pub fn creates(&self, t: LinuxNamespaceType) -> bool {
        if t == LinuxNamespaceType::User {
            self.new_user
        } else {
            self.new.contains(clone_flag(t))
        }
    }

    /// Joins every namespace given by path (setns), user namespace first.
    pub fn join_all(&self) -> Result<()> {
        for j in &self.joined {
            setns(j.fd.as_fd(), clone_flag(j.typ))
                .ctx(|| format!("join {} namespace {}", spec_name(j.typ), j.path.display()))?;
        }
        Ok(())
    }

    /// Creates the new user namespace (only that one).
    pub fn unshare_user(&self) -> Result<()> {
        if self.new_user {
            unshare(CloneFlags::CLONE_NEWUSER).ctx(|| "unshare user namespace".into())?;
        }
        Ok(())
    }

    /// Creates every other new namespace. The pid and time namespaces take effect for children.
    pub fn unshare_others(&self) -> Result<()> {
        if !self.new.is_empty() {
            unshare(self.new).ctx(|| format!("unshare namespaces {:?}", self.new))?;
        }
        Ok(())
    }
}

/// The text of a `/proc/<pid>/uid_map` (or gid_map) for the spec's mappings.
pub fn id_map_text(maps: &[oci_spec::runtime::LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(json: &str) -> Linux {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn plan_splits_new_and_joined() {
        let l = linux(
            r#"{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"network","path":"/proc/self/ns/net"}]}"#,
        );
        let p = NamespacePlan::from_spec(&l).unwrap();
        assert!(p.creates(LinuxNamespaceType::Pid));
        assert!(p.creates(LinuxNamespaceType::Mount));
        assert!(!p.creates(LinuxNamespaceType::Network));
        assert!(p.has(LinuxNamespaceType::Network));
        assert_eq!(p.joined.len(), 1);
    }

    #[test]
    fn duplicate_and_bad_path_are_named() {
        let e =
            NamespacePlan::from_spec(&linux(r#"{"namespaces":[{"type":"pid"},{"type":"pid"}]}"#))
                .unwrap_err()
                .to_string();
        assert!(
            e.contains("linux.namespaces[1]") && e.contains("twice"),
            "{e}"
        );
        let e = NamespacePlan::from_spec(&linux(
            r#"{"namespaces":[{"type":"ipc","path":"/nonexistent/ns"}]}"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("linux.namespaces[0]") && e.contains("/nonexistent/ns"),
            "{e}"
        );
    }

    #[test]
    fn user_namespace_needs_mappings() {
        let e = NamespacePlan::from_spec(&linux(r#"{"namespaces":[{"type":"user"}]}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("uidMappings"), "{e}");
    }
}
