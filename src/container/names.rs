//! Container names: `<data-root>/containers/names/<name>` holds the id; created with O_EXCL,
//! so two `pouch run --name x` at once cannot both get it.

use super::record::ContainerStore;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

fn dir(store: &ContainerStore) -> std::path::PathBuf {
    store.data_root().join("containers/names")
}

/// Whether `name` is a valid container name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`, ≤ 128).
pub fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Reserves `name` for `id`; an error names the container that has it.
pub fn reserve(store: &ContainerStore, name: &str, id: &str) -> Result<(), String> {
    if !valid(name) {
        return Err(format!(
            "invalid container name {name:?}: use letters, digits, _ . - (starting with a letter or digit)"
        ));
    }
    let d = dir(store);
    fs::create_dir_all(&d).map_err(|e| format!("create {}: {e}", d.display()))?;
    let p = d.join(name);
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&p)
    {
        Ok(mut f) => f
            .write_all(id.as_bytes())
            .map_err(|e| format!("write {}: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let other = fs::read_to_string(&p).unwrap_or_default();
            Err(format!(
                "the container name {name:?} is already in use by container {}: remove it (pouch rm) or choose another name",
                &other[..other.len().min(12)]
            ))
        }
        Err(e) => Err(format!("create {}: {e}", p.display())),
    }
}

/// The id a name points to.
pub fn lookup(store: &ContainerStore, name: &str) -> Option<String> {
    if !valid(name) {
        return None;
    }
    fs::read_to_string(dir(store).join(name)).ok()
}

/// Frees a name (if it still points to `id`).
pub fn release(store: &ContainerStore, name: &str, id: &str) {
    if lookup(store, name).as_deref() == Some(id) {
        let _ = fs::remove_file(dir(store).join(name));
    }
}

/// A name for a container that was given none: `<adjective>_<noun>` as Docker does, made
/// unique with the id if needed.
pub fn generate(store: &ContainerStore, id: &str) -> String {
    const A: &[&str] = &[
        "agile", "bold", "brave", "calm", "clever", "eager", "fair", "gentle", "happy", "keen",
        "lucid", "merry", "nimble", "proud", "quiet", "sharp", "swift", "tidy", "vivid", "wise",
    ];
    const N: &[&str] = &[
        "badger", "crane", "dingo", "egret", "ferret", "gecko", "heron", "ibis", "jackal", "koala",
        "lemur", "marten", "numbat", "otter", "panda", "quokka", "raven", "stoat", "tapir",
        "wombat",
    ];
    let b = u64::from_str_radix(&id[..8], 16).unwrap_or(0);
    let base = format!(
        "{}_{}",
        A[(b % A.len() as u64) as usize],
        N[((b / 97) % N.len() as u64) as usize]
    );
    if lookup(store, &base).is_none() {
        base
    } else {
        format!("{base}_{}", &id[..6])
    }
}
