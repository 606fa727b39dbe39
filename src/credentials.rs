//! Vapi API keys: where they come from, and how they are shown.
//!
//! A key is a secret; everything that can print (logs, errors, `Debug`, status rows) shows only
//! its fingerprint, the first 8 hex digits of its SHA-256. That is enough to tell two keys apart
//! ("the controller is using 1a2b3c4d, the new secret is 9f8e7d6c") and reveals nothing usable.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// A Vapi private key.
#[derive(Clone)]
pub struct ApiKey {
    secret: SecretString,
    fingerprint: String,
}

impl ApiKey {
    /// Surrounding whitespace is dropped: a trailing newline in a mounted secret file is the most
    /// common way a correct key turns into a 401.
    pub fn new(raw: &str) -> Result<Self, KeyError> {
        let key = raw.trim();
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self {
            fingerprint: fingerprint(key),
            secret: SecretString::from(key.to_owned()),
        })
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The value for an `Authorization` header; the only way to read the key.
    pub(crate) fn bearer(&self) -> String {
        format!("Bearer {}", self.secret.expose_secret())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey(fingerprint={})", self.fingerprint)
    }
}

/// First 8 hex digits of SHA-256: identifies a secret without revealing any of it.
pub fn fingerprint(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the platform key was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env => f.write_str("env:VAPI_PRIVATE_KEY"),
            Self::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the Vapi private key is empty")]
    Empty,
    #[error("cannot read the Vapi private key from {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no Vapi private key: set VAPI_PRIVATE_KEY_FILE (preferred) or VAPI_PRIVATE_KEY")]
    Missing,
}

/// The platform key as loaded, with where from and when.
#[derive(Debug, Clone)]
pub struct LoadedKey {
    pub key: ApiKey,
    pub source: KeySource,
    pub loaded_at: chrono::DateTime<chrono::Utc>,
}

impl serde::Serialize for LoadedKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_json::json!({
            "fingerprint": self.key.fingerprint(),
            "source": self.source.to_string(),
            "loadedAt": self.loaded_at,
        })
        .serialize(s)
    }
}

/// The platform key, kept current: a mounted Kubernetes Secret is updated by an atomic symlink
/// swap, and re-reading the path follows it, so polling the file picks up a rotation within one
/// interval with no restart. A file that turns unreadable or empty keeps the last good key (and
/// says so): a half-written rotation must not stop a working controller.
#[derive(Debug, Clone)]
pub struct PlatformKey {
    file: Option<PathBuf>,
    current: tokio::sync::watch::Sender<LoadedKey>,
}

impl PlatformKey {
    /// Reads the key once; a file wins over the environment because a mounted secret is what
    /// gets rotated.
    pub fn load(file: Option<&Path>, env_value: Option<&str>) -> Result<Self, KeyError> {
        let (key, source) = load_platform_key(file, env_value)?;
        tracing::info!(fingerprint = key.fingerprint(), source = %source, "loaded the Vapi platform key");
        Ok(Self::from_loaded(file.map(Path::to_owned), key, source))
    }

    /// A key that never changes (tests, the demo).
    pub fn fixed(key: ApiKey) -> Self {
        Self::from_loaded(None, key, KeySource::Env)
    }

    fn from_loaded(file: Option<PathBuf>, key: ApiKey, source: KeySource) -> Self {
        let loaded = LoadedKey {
            key,
            source,
            loaded_at: chrono::Utc::now(),
        };
        Self {
            file,
            current: tokio::sync::watch::Sender::new(loaded),
        }
    }

    pub fn current(&self) -> LoadedKey {
        self.current.borrow().clone()
    }

    /// Re-reads the file; `Ok(true)` when the key changed. Without a file there is nothing to do.
    pub fn reload(&self) -> Result<bool, KeyError> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        let (key, source) = load_platform_key(Some(path), None)?;
        if key.fingerprint() == self.current.borrow().key.fingerprint() {
            return Ok(false);
        }
        tracing::info!(
            fingerprint = key.fingerprint(),
            previous = self.current.borrow().key.fingerprint(),
            source = %source,
            "reloaded the Vapi platform key"
        );
        self.current.send_replace(LoadedKey {
            key,
            source,
            loaded_at: chrono::Utc::now(),
        });
        Ok(true)
    }

    /// Polls the file every `every` until `cancel`; calls `changed` after each new key.
    pub async fn watch(
        self,
        every: std::time::Duration,
        cancel: tokio_util::sync::CancellationToken,
        changed: impl Fn(),
    ) {
        let mut failing = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = cancel.cancelled() => return,
            }
            match self.reload() {
                Ok(true) => {
                    failing = false;
                    changed();
                }
                Ok(false) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, fingerprint = self.current.borrow().key.fingerprint(), "cannot reload the Vapi platform key; keeping the one loaded");
                }
                Err(_) => {}
            }
        }
    }
}

/// Reads the platform key; a file wins over the environment because a mounted secret is what
/// gets rotated.
pub fn load_platform_key(
    file: Option<&Path>,
    env_value: Option<&str>,
) -> Result<(ApiKey, KeySource), KeyError> {
    if let Some(path) = file {
        let raw = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        return Ok((ApiKey::new(&raw)?, KeySource::File(path.to_owned())));
    }
    match env_value {
        Some(raw) => Ok((ApiKey::new(raw)?, KeySource::Env)),
        None => Err(KeyError::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_fingerprint_never_show_the_key() {
        let raw = "5b1c7a2e-9f3d-4c8b-a6e1-2d4f6a8c0e1f";
        let key = ApiKey::new(&format!("{raw}\n")).expect("key");
        let shown = format!("{key:?}");
        assert!(
            !shown.contains(raw) && !shown.contains("5b1c7a2e"),
            "{shown}"
        );
        assert_eq!(key.fingerprint().len(), 8);
        assert_eq!(
            key.fingerprint(),
            fingerprint(raw),
            "whitespace is not part of the key"
        );
        assert_ne!(key.fingerprint(), &raw[..8]);
        assert_eq!(key.bearer(), format!("Bearer {raw}"));
    }

    #[test]
    fn file_wins_over_env_and_empty_is_refused() {
        let dir = std::env::temp_dir().join(format!("vr-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("key");
        std::fs::write(&path, "from-file\n").expect("write");
        let (key, source) = load_platform_key(Some(&path), Some("from-env")).expect("load");
        assert_eq!(key.fingerprint(), fingerprint("from-file"));
        assert_eq!(source, KeySource::File(path.clone()));
        let (key, source) = load_platform_key(None, Some("from-env")).expect("load");
        assert_eq!(
            (key.fingerprint(), source),
            (fingerprint("from-env").as_str(), KeySource::Env)
        );
        std::fs::write(&path, " \n").expect("write");
        assert!(matches!(
            load_platform_key(Some(&path), None),
            Err(KeyError::Empty)
        ));
        assert!(matches!(
            load_platform_key(None, None),
            Err(KeyError::Missing)
        ));
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
