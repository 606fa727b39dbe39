//! Encryption at rest for secrets kept in Postgres: each organization's Vapi private key.
//!
//! A keyring holds one or more AES-256-GCM keys, each with an id. The first one is *current*:
//! every new seal uses it. The others only open what they sealed earlier, which is how keys are
//! rotated: put the new key first, keep the old one after it, run `vapi-reconciler org-key
//! rotate`, then drop the old one.
//!
//! The keyring comes from a file (`--encryption-keys-file` / `VAPI_RECONCILER_ENCRYPTION_KEYS_FILE`,
//! preferred) or the environment (`VAPI_RECONCILER_ENCRYPTION_KEYS`), as comma- or
//! newline-separated `id:base64` entries, each holding exactly 32 bytes.
//!
//! The organization's id is the associated data of every seal: a ciphertext copied into another
//! organization's row does not open. Nothing here prints key material or plaintext: errors name
//! the variable or file and the entry's position or id, `Debug` shows ids and fingerprints only.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretBox};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::credentials::ApiKey;

/// The environment variable holding the keyring itself.
pub const KEYS_ENV: &str = "VAPI_RECONCILER_ENCRYPTION_KEYS";
/// The environment variable naming a file that holds the keyring (wins over [`KEYS_ENV`]).
pub const KEYS_FILE_ENV: &str = "VAPI_RECONCILER_ENCRYPTION_KEYS_FILE";

/// Bytes in an AES-256 key.
const KEY_LEN: usize = 32;
/// Bytes in an AES-GCM nonce.
const NONCE_LEN: usize = 12;
const MAX_ID_LEN: usize = 32;

/// One AES-256 key and its id.
pub struct EncryptionKey {
    id: String,
    key: SecretBox<[u8; KEY_LEN]>,
    fingerprint: String,
}

impl EncryptionKey {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// First 8 hex digits of the key's SHA-256: tells keys apart, reveals nothing usable.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.key.expose_secret().into())
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EncryptionKey(id={:?}, fingerprint={})",
            self.id, self.fingerprint
        )
    }
}

/// Where the keyring was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringSource {
    Env,
    File(PathBuf),
}

impl fmt::Display for KeyringSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env => write!(f, "env:{KEYS_ENV}"),
            Self::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// A secret sealed under one key of the keyring: what a row stores.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Sealed(key_id={:?}, nonce={} bytes, ciphertext={} bytes)",
            self.key_id,
            self.nonce.len(),
            self.ciphertext.len()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "no encryption keys: set {KEYS_FILE_ENV} / --encryption-keys-file (preferred) or {KEYS_ENV}"
    )]
    Missing,
    #[error(
        "cannot read the encryption keys from {path} ({KEYS_FILE_ENV} / --encryption-keys-file): {source}"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `origin` names the variable or file, `message` the entry: never its key material.
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error(
        "the key of org {org_id} was sealed with encryption key id {key_id:?}, which is not in the keyring (it has {known}); add that key after the current one"
    )]
    UnknownKeyId {
        org_id: Uuid,
        key_id: String,
        known: String,
    },
    #[error(
        "cannot decrypt the key of org {org_id} with key id {key_id:?} (wrong encryption key or tampered row)"
    )]
    Decrypt { org_id: Uuid, key_id: String },
    #[error("the decrypted key of org {org_id} is not a usable Vapi key: {why}")]
    NotAKey { org_id: Uuid, why: String },
    #[error("cannot encrypt the key of org {org_id} with key id {key_id:?}")]
    Encrypt { org_id: Uuid, key_id: String },
}

/// The encryption keys: the current one seals, every one opens what it sealed.
pub struct Keyring {
    current: String,
    keys: BTreeMap<String, EncryptionKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("keys", &self.keys.values().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// Reads the keyring from the file if one is given, else from the environment value;
    /// `None` when neither is set.
    pub fn load(
        file: Option<&Path>,
        env_value: Option<&str>,
    ) -> Result<Option<(Self, KeyringSource)>, VaultError> {
        if let Some(path) = file {
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
                VaultError::Read {
                    path: path.to_owned(),
                    source,
                }
            })?);
            let origin = format!("encryption keys file {}", path.display());
            return Ok(Some((
                Self::parse(&text, &origin)?,
                KeyringSource::File(path.to_owned()),
            )));
        }
        match env_value {
            Some(text) => Ok(Some((Self::parse(text, KEYS_ENV)?, KeyringSource::Env))),
            None => Ok(None),
        }
    }

    /// Parses `id:base64` entries separated by commas or newlines; the first is current.
    /// `origin` names where the text came from, for errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, VaultError> {
        let fail = |message: String| VaultError::Parse {
            origin: origin.to_owned(),
            message,
        };
        let mut current = None;
        let mut keys = BTreeMap::new();
        let entries = text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty());
        for (i, entry) in entries.enumerate() {
            let n = i + 1;
            let Some((id, encoded)) = entry.split_once(':') else {
                return Err(fail(format!(
                    "entry {n} is not of the form id:base64 (no ':')"
                )));
            };
            let id = id.trim();
            if !valid_id(id) {
                // Not shown: a malformed id may be key material pasted in the wrong place.
                return Err(fail(format!(
                    "entry {n} has an invalid id (1 to {MAX_ID_LEN} characters of A-Z, a-z, 0-9, _ and -)"
                )));
            }
            if keys.contains_key(id) {
                return Err(fail(format!("entry {n} repeats the id {id:?}")));
            }
            let Some(key) = decode_key(encoded.trim()) else {
                return Err(fail(format!(
                    "entry {n} (id {id:?}) is not {KEY_LEN} bytes of base64"
                )));
            };
            let fingerprint = fingerprint(key.expose_secret());
            current.get_or_insert_with(|| id.to_owned());
            keys.insert(
                id.to_owned(),
                EncryptionKey {
                    id: id.to_owned(),
                    key,
                    fingerprint,
                },
            );
        }
        let Some(current) = current else {
            return Err(fail(
                "holds no keys (expected id:base64 entries)".to_owned(),
            ));
        };
        Ok(Self { current, keys })
    }

    /// The id of the key new seals use.
    pub fn current_id(&self) -> &str {
        &self.current
    }

    /// The key new seals use.
    pub fn current(&self) -> Option<&EncryptionKey> {
        self.keys.get(&self.current)
    }

    /// Every key, by id.
    pub fn keys(&self) -> impl Iterator<Item = &EncryptionKey> {
        self.keys.values()
    }

    /// How many keys the keyring holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Seals `plaintext` for `org_id` under the current key, with a fresh random nonce.
    pub fn seal(&self, org_id: Uuid, plaintext: &str) -> Result<Sealed, VaultError> {
        let failed = || VaultError::Encrypt {
            org_id,
            key_id: self.current.clone(),
        };
        let key = self.current().ok_or_else(failed)?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = key
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: org_id.as_bytes(),
                },
            )
            .map_err(|_| failed())?;
        Ok(Sealed {
            key_id: key.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Opens what [`Keyring::seal`] sealed for the same `org_id`.
    pub fn open(&self, org_id: Uuid, sealed: &Sealed) -> Result<ApiKey, VaultError> {
        let plaintext = self.decrypt(org_id, sealed)?;
        ApiKey::new(utf8(org_id, &plaintext)?).map_err(|e| VaultError::NotAKey {
            org_id,
            why: e.to_string(),
        })
    }

    /// Re-seals under the current key; `None` when it already is.
    pub fn reseal(&self, org_id: Uuid, sealed: &Sealed) -> Result<Option<Sealed>, VaultError> {
        if sealed.key_id == self.current {
            return Ok(None);
        }
        let plaintext = self.decrypt(org_id, sealed)?;
        self.seal(org_id, utf8(org_id, &plaintext)?).map(Some)
    }

    fn decrypt(&self, org_id: Uuid, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let Some(key) = self.keys.get(&sealed.key_id) else {
            return Err(VaultError::UnknownKeyId {
                org_id,
                key_id: sealed.key_id.clone(),
                known: self.describe_ids(),
            });
        };
        let failed = || VaultError::Decrypt {
            org_id,
            key_id: sealed.key_id.clone(),
        };
        if sealed.nonce.len() != NONCE_LEN {
            return Err(failed());
        }
        key.cipher()
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: org_id.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| failed())
    }

    fn describe_ids(&self) -> String {
        let ids: Vec<String> = self.keys.keys().map(|id| format!("{id:?}")).collect();
        format!("key id(s) {}", ids.join(", "))
    }
}

fn utf8(org_id: Uuid, plaintext: &[u8]) -> Result<&str, VaultError> {
    std::str::from_utf8(plaintext).map_err(|_| VaultError::NotAKey {
        org_id,
        why: "it is not UTF-8".to_owned(),
    })
}

fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// 32 bytes from standard or URL-safe base64, padded or not.
fn decode_key(encoded: &str) -> Option<SecretBox<[u8; KEY_LEN]>> {
    let decoded = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(encoded).ok())
        .map(Zeroizing::new)?;
    if decoded.len() != KEY_LEN {
        return None;
    }
    Some(SecretBox::init_with_mut(|key: &mut [u8; KEY_LEN]| {
        key.copy_from_slice(&decoded);
    }))
}

fn fingerprint(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const RAW: &str = "5b1c7a2e-9f3d-4c8b-a6e1-2d4f6a8c0e1f";

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; KEY_LEN])
    }

    fn ring(text: &str) -> Keyring {
        Keyring::parse(text, "test").expect("keyring")
    }

    #[test]
    fn round_trip() {
        let ring = ring(&format!("k1:{}", key(1)));
        let org = Uuid::new_v4();
        let sealed = ring.seal(org, RAW).unwrap();
        assert_eq!(sealed.key_id, "k1");
        assert_eq!(sealed.nonce.len(), NONCE_LEN);
        assert!(
            !sealed
                .ciphertext
                .windows(RAW.len())
                .any(|w| w == RAW.as_bytes())
        );
        let opened = ring.open(org, &sealed).unwrap();
        assert_eq!(opened.fingerprint(), crate::credentials::fingerprint(RAW));
        assert_eq!(opened.bearer(), format!("Bearer {RAW}"));
        let again = ring.seal(org, RAW).unwrap();
        assert_ne!(again.nonce, sealed.nonce, "a fresh nonce at every seal");
        assert_ne!(again.ciphertext, sealed.ciphertext);
    }

    #[test]
    fn another_orgs_row_does_not_open() {
        let ring = ring(&format!("k1:{}", key(1)));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let sealed = ring.seal(a, RAW).unwrap();
        let err = ring.open(b, &sealed).unwrap_err();
        assert!(matches!(err, VaultError::Decrypt { org_id, .. } if org_id == b));
        assert_eq!(
            err.to_string(),
            format!(
                "cannot decrypt the key of org {b} with key id \"k1\" (wrong encryption key or tampered row)"
            )
        );
        assert!(ring.open(a, &sealed).is_ok());
    }

    #[test]
    fn tampering_is_detected() {
        let ring = ring(&format!("k1:{}", key(1)));
        let org = Uuid::new_v4();
        let sealed = ring.seal(org, RAW).unwrap();
        for i in [0, sealed.ciphertext.len() / 2, sealed.ciphertext.len() - 1] {
            let mut bad = sealed.clone();
            bad.ciphertext[i] ^= 0x01;
            assert!(matches!(
                ring.open(org, &bad),
                Err(VaultError::Decrypt { .. })
            ));
        }
        let mut bad = sealed.clone();
        bad.nonce[0] ^= 0x01;
        assert!(matches!(
            ring.open(org, &bad),
            Err(VaultError::Decrypt { .. })
        ));
        let mut bad = sealed.clone();
        bad.nonce.pop();
        assert!(matches!(
            ring.open(org, &bad),
            Err(VaultError::Decrypt { .. })
        ));
        let mut bad = sealed;
        bad.ciphertext.truncate(3);
        assert!(matches!(
            ring.open(org, &bad),
            Err(VaultError::Decrypt { .. })
        ));
    }

    #[test]
    fn a_wrong_key_with_the_same_id_fails_to_open() {
        let org = Uuid::new_v4();
        let sealed = ring(&format!("k1:{}", key(1))).seal(org, RAW).unwrap();
        assert!(matches!(
            ring(&format!("k1:{}", key(2))).open(org, &sealed),
            Err(VaultError::Decrypt { .. })
        ));
    }

    #[test]
    fn rotation_opens_old_seals_and_seals_under_the_first_key() {
        let org = Uuid::new_v4();
        let old = ring(&format!("k1:{}", key(1)));
        let sealed = old.seal(org, RAW).unwrap();
        let rotated = ring(&format!("k2:{},k1:{}", key(2), key(1)));
        assert_eq!(rotated.current_id(), "k2");
        assert_eq!(
            rotated.open(org, &sealed).unwrap().fingerprint(),
            crate::credentials::fingerprint(RAW)
        );
        assert_eq!(rotated.seal(org, RAW).unwrap().key_id, "k2");

        let resealed = rotated.reseal(org, &sealed).unwrap().expect("re-sealed");
        assert_eq!(resealed.key_id, "k2");
        assert!(rotated.reseal(org, &resealed).unwrap().is_none());
        let only_new = ring(&format!("k2:{}", key(2)));
        assert!(only_new.open(org, &resealed).is_ok());
        let err = only_new.open(org, &sealed).unwrap_err();
        assert!(matches!(err, VaultError::UnknownKeyId { .. }));
        let shown = err.to_string();
        assert!(
            shown.contains("\"k1\"") && shown.contains(&org.to_string()),
            "{shown}"
        );
    }

    #[test]
    fn parse_accepts_commas_newlines_and_padding_variants() {
        let unpadded = URL_SAFE_NO_PAD.encode([3u8; KEY_LEN]);
        let ring = ring(&format!(
            "\n  a-1:{} ,\nb_2 : {}\n\nc:{unpadded}\n",
            key(1),
            key(2)
        ));
        assert_eq!(ring.current_id(), "a-1");
        assert_eq!(ring.len(), 3);
        let ids: Vec<&str> = ring.keys().map(EncryptionKey::id).collect();
        assert_eq!(ids, ["a-1", "b_2", "c"]);
    }

    #[test]
    fn parse_errors_name_the_origin_and_entry_never_the_key() {
        let good = key(1);
        let short = STANDARD.encode([9u8; 16]);
        let cases = [
            (
                format!("k1:{good},k2:{short}"),
                "entry 2 (id \"k2\") is not 32 bytes of base64",
            ),
            (
                format!("k1:{good},k2:not base64!"),
                "entry 2 (id \"k2\") is not 32 bytes of base64",
            ),
            (
                format!("k1:{good}\n{good}"),
                "entry 2 is not of the form id:base64",
            ),
            (
                format!("k1:{good},k1:{}", key(2)),
                "entry 2 repeats the id \"k1\"",
            ),
            (
                format!("k1:{good},bad id:{good}"),
                "entry 2 has an invalid id",
            ),
            (format!(":{good}"), "entry 1 has an invalid id"),
            (
                format!("{}:{good}", "x".repeat(33)),
                "entry 1 has an invalid id",
            ),
            (format!("{good}:k1"), "entry 1 has an invalid id"),
            (" , \n".to_owned(), "holds no keys"),
        ];
        for (text, want) in cases {
            let err = Keyring::parse(&text, KEYS_ENV).unwrap_err().to_string();
            assert!(err.starts_with(KEYS_ENV), "{err}");
            assert!(err.contains(want), "{err:?} should contain {want:?}");
            assert!(!err.contains(&good) && !err.contains(&short), "{err}");
            assert!(!err.contains(&good[..8]), "{err}");
        }
    }

    #[test]
    fn debug_shows_neither_key_material_nor_plaintext() {
        let k1 = key(7);
        let ring = ring(&format!("k1:{k1}"));
        let org = Uuid::new_v4();
        let sealed = ring.seal(org, RAW).unwrap();
        let opened = ring.open(org, &sealed).unwrap();
        let shown = format!("{ring:?} {sealed:?} {opened:?} {:?}", ring.current());
        assert!(shown.contains("k1"), "{shown}");
        assert!(shown.contains(&fingerprint(&[7u8; KEY_LEN])), "{shown}");
        for secret in [k1.as_str(), &k1[..8], RAW, &RAW[..8]] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(!shown.contains("[7, 7"), "{shown}");
    }

    #[test]
    fn load_prefers_the_file_and_names_it() {
        let dir = std::env::temp_dir().join(format!("vr-vault-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        std::fs::write(&path, format!("from-file:{}\n", key(1))).unwrap();
        let env = format!("from-env:{}", key(2));
        let (ring, source) = Keyring::load(Some(&path), Some(&env)).unwrap().unwrap();
        assert_eq!(
            (ring.current_id(), source),
            ("from-file", KeyringSource::File(path.clone()))
        );
        let (ring, source) = Keyring::load(None, Some(&env)).unwrap().unwrap();
        assert_eq!(
            (ring.current_id(), source),
            ("from-env", KeyringSource::Env)
        );
        assert!(Keyring::load(None, None).unwrap().is_none());
        std::fs::write(&path, "k1:short").unwrap();
        let err = Keyring::load(Some(&path), None).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("entry 1 (id \"k1\")"), "{err}");
        let missing = dir.join("missing");
        let err = Keyring::load(Some(&missing), None).unwrap_err().to_string();
        assert!(err.contains(KEYS_FILE_ENV), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_sealed_empty_or_binary_plaintext_is_not_a_key() {
        let ring = ring(&format!("k1:{}", key(1)));
        let org = Uuid::new_v4();
        let sealed = ring.seal(org, "  ").unwrap();
        assert!(matches!(
            ring.open(org, &sealed),
            Err(VaultError::NotAKey { .. })
        ));
    }
}
