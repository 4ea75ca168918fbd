//! Registry credentials: `pouch login` stores them; Docker's `config.json` is read too.
//!
//! Files, in lookup order:
//! 1. pouch's own auth file: `$POUCH_AUTH_FILE`, else `$XDG_CONFIG_HOME/pouch/auth.json`,
//!    else `~/.config/pouch/auth.json` (Docker's format: `{"auths":{"HOST":{"auth":"base64(user:pass)"}}}`,
//!    written with mode 0600);
//! 2. Docker's: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json` (inline `auth` or
//!    `username`/`password` entries; credential helpers are not run).

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}:***)", self.username)
    }
}

impl std::str::FromStr for Credentials {
    type Err = String;
    /// `USER:PASSWORD`.
    fn from_str(s: &str) -> Result<Credentials, String> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }),
            _ => Err("credentials must be USER:PASSWORD".to_string()),
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Default, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// The key a registry has in an auth file, compared without scheme or path; Docker Hub's
/// historical key `https://index.docker.io/v1/` matches `docker.io`.
fn normalise_key(k: &str) -> String {
    let k = k
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// Where `pouch login` writes.
pub fn pouch_auth_file() -> PathBuf {
    if let Some(p) = std::env::var_os("POUCH_AUTH_FILE") {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".config")))
        .unwrap_or_else(|| PathBuf::from("/root/.config"));
    base.join("pouch/auth.json")
}

/// Docker's config file.
pub fn docker_config_file() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(d).join("config.json"));
    }
    home().map(|h| h.join(".docker/config.json"))
}

fn read_config(path: &Path) -> Result<ConfigFile, String> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| format!("{}: not a valid auth file: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(format!("read {}: {e}", path.display())),
    }
}

fn lookup_in(path: &Path, registry: &str) -> Result<Option<Credentials>, String> {
    let cfg = read_config(path)?;
    for (k, e) in cfg.auths {
        if normalise_key(&k) != registry {
            continue;
        }
        if let Some(a) = e.auth.filter(|a| !a.is_empty()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .map_err(|err| format!("{}: auth for {k} is not base64: {err}", path.display()))?;
            let s = String::from_utf8(raw)
                .map_err(|_| format!("{}: auth for {k} is not UTF-8", path.display()))?;
            return s
                .parse()
                .map(Some)
                .map_err(|e| format!("{}: auth for {k}: {e}", path.display()));
        }
        if let (Some(u), Some(p)) = (e.username, e.password) {
            return Ok(Some(Credentials {
                username: u,
                password: p,
            }));
        }
    }
    Ok(None)
}

/// The stored credentials for `registry` (pouch's file first, then Docker's).
pub fn lookup(registry: &str) -> Result<Option<Credentials>, String> {
    if let Some(c) = lookup_in(&pouch_auth_file(), registry)? {
        return Ok(Some(c));
    }
    match docker_config_file() {
        Some(p) => lookup_in(&p, registry),
        None => Ok(None),
    }
}

fn write_config(path: &Path, cfg: &ConfigFile) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let data = serde_json::to_vec_pretty(cfg).expect("serialises");
    let r = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    r.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("write {}: {e}", path.display())
    })
}

/// Stores credentials for `registry` in pouch's auth file (mode 0600).
pub fn store(registry: &str, creds: &Credentials) -> Result<PathBuf, String> {
    let path = pouch_auth_file();
    let mut cfg = read_config(&path)?;
    cfg.auths.retain(|k, _| normalise_key(k) != registry);
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", creds.username, creds.password));
    cfg.auths.insert(
        registry.to_string(),
        AuthEntry {
            auth: Some(auth),
            ..Default::default()
        },
    );
    write_config(&path, &cfg)?;
    Ok(path)
}

/// Removes the credentials for `registry` from pouch's auth file; whether there were any.
pub fn remove(registry: &str) -> Result<bool, String> {
    let path = pouch_auth_file();
    let mut cfg = read_config(&path)?;
    let before = cfg.auths.len();
    cfg.auths.retain(|k, _| normalise_key(k) != registry);
    if cfg.auths.len() == before {
        return Ok(false);
    }
    write_config(&path, &cfg)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_entries() {
        assert_eq!(normalise_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalise_key("http://127.0.0.1:5000"), "127.0.0.1:5000");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"},"r.example:5000":{"username":"a","password":"b:c"}},"credsStore":"x"}"#,
        )
        .unwrap();
        let c = lookup_in(&p, "docker.io").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
        let c = lookup_in(&p, "r.example:5000").unwrap().unwrap();
        assert_eq!(c.password, "b:c");
        assert!(lookup_in(&p, "other").unwrap().is_none());
    }
}
