//! Wiring for per-organization Vapi keys: the encryption keyring, and `vapi-reconciler org-key`.
//!
//! The Vapi key is read from a file or standard input, never the command line; only its
//! fingerprint and the encryption key's id are ever printed or logged.

use std::env::VarError;

use anyhow::{Context, bail};
use secrecy::zeroize::Zeroizing;
use serde_json::json;
use tokio::io::AsyncReadExt;
use uuid::Uuid;

use super::{connect, ensure_migrated};
use crate::config::{DatabaseArgs, KeyInput, OrgKeyArgs, OrgKeyCommand, VaultArgs};
use crate::credentials::{ApiKey, fingerprint};
use crate::store::Store;
use crate::vault::{KEYS_ENV, Keyring, VaultError};

/// The encryption keyring: from `--encryption-keys-file` / VAPI_RECONCILER_ENCRYPTION_KEYS_FILE
/// if given, else from VAPI_RECONCILER_ENCRYPTION_KEYS; `None` when neither is set.
pub fn keyring(args: &VaultArgs) -> anyhow::Result<Option<Keyring>> {
    let env = match std::env::var(KEYS_ENV) {
        Ok(value) => Some(Zeroizing::new(value)),
        Err(VarError::NotPresent) => None,
        Err(VarError::NotUnicode(_)) => bail!("{KEYS_ENV} is not valid UTF-8"),
    };
    let Some((keyring, source)) = Keyring::load(
        args.encryption_keys_file.as_deref(),
        env.as_deref().map(String::as_str),
    )?
    else {
        return Ok(None);
    };
    tracing::info!(
        current = keyring.current_id(),
        fingerprint = keyring.current().map(|k| k.fingerprint()),
        keys = keyring.len(),
        source = %source,
        "loaded encryption keys"
    );
    Ok(Some(keyring))
}

fn require_keyring(args: &VaultArgs) -> anyhow::Result<Keyring> {
    Ok(keyring(args)?.ok_or(VaultError::Missing)?)
}

/// `vapi-reconciler org-key`. Configuration and input are checked before connecting: a missing
/// keyring or an empty key fails at once.
pub async fn org_key(args: OrgKeyArgs) -> anyhow::Result<()> {
    let OrgKeyArgs {
        database,
        vault,
        command,
    } = args;
    match command {
        OrgKeyCommand::Set { org, input } => {
            let keyring = require_keyring(&vault)?;
            let new_key = read_key(&input).await?;
            set(&open_store(&database).await?, &keyring, org, &new_key).await
        }
        OrgKeyCommand::Clear { org } => {
            let cleared = open_store(&database).await?.clear_org_key(org).await?;
            if cleared {
                tracing::info!(org_id = %org, "cleared the organization's Vapi key");
            } else {
                tracing::warn!(org_id = %org, "the organization had no stored Vapi key");
            }
            print_json(&json!({"org_id": org, "cleared": cleared}))
        }
        OrgKeyCommand::List => {
            let keyring = keyring(&vault)?;
            list(&open_store(&database).await?, keyring.as_ref()).await
        }
        OrgKeyCommand::Rotate => {
            let keyring = require_keyring(&vault)?;
            let rotated = open_store(&database)
                .await?
                .rotate_org_keys(&keyring)
                .await?;
            tracing::info!(
                rotated,
                key_id = keyring.current_id(),
                "re-sealed organization keys under the current encryption key"
            );
            print_json(&json!({"rotated": rotated, "key_id": keyring.current_id()}))
        }
    }
}

async fn open_store(database: &DatabaseArgs) -> anyhow::Result<Store> {
    let pool = connect(&database.database_url).await?;
    ensure_migrated(&pool, false).await?;
    Ok(Store::new(pool))
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A key as read, with where it came from (for messages).
struct NewKey {
    raw: Zeroizing<String>,
    from: String,
}

async fn read_key(input: &KeyInput) -> anyhow::Result<NewKey> {
    let (raw, from) = match &input.from_file {
        Some(path) => {
            let raw = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the Vapi key from {}", path.display()))?;
            (Zeroizing::new(raw), format!("file {}", path.display()))
        }
        None => {
            let mut raw = Zeroizing::new(String::new());
            tokio::io::stdin()
                .read_to_string(&mut raw)
                .await
                .context("cannot read the Vapi key from standard input")?;
            (raw, "standard input".to_owned())
        }
    };
    Ok(NewKey { raw, from })
}

async fn set(store: &Store, keyring: &Keyring, org: Uuid, new: &NewKey) -> anyhow::Result<()> {
    let key = new.raw.trim();
    if key.is_empty() {
        bail!("the Vapi key read from {} is empty", new.from);
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!(
            "the Vapi key read from {} has whitespace or control characters inside it (fingerprint {}): expected one key on one line",
            new.from,
            fingerprint(key)
        );
    }
    let api_key = ApiKey::new(key)?;
    let sealed = keyring.seal(org, key)?;
    store
        .set_org_key(org, &sealed, api_key.fingerprint())
        .await?;
    tracing::info!(
        org_id = %org,
        fingerprint = api_key.fingerprint(),
        key_id = %sealed.key_id,
        "stored the organization's Vapi key"
    );
    print_json(&json!({
        "org_id": org,
        "fingerprint": api_key.fingerprint(),
        "key_id": sealed.key_id,
    }))
}

/// The stored keys; with a keyring, whether each one opens with it.
async fn list(store: &Store, keyring: Option<&Keyring>) -> anyhow::Result<()> {
    let infos = store.list_org_keys().await?;
    let opened = match keyring {
        Some(keyring) => Some(store.load_org_keys(Some(keyring)).await?),
        None => None,
    };
    let rows: Vec<serde_json::Value> = infos
        .into_iter()
        .map(|info| {
            let mut row = json!(&info);
            if let Some(opened) = &opened {
                let error = match opened.get(&info.org_id) {
                    Some(Ok(_)) => None,
                    Some(Err(e)) => Some(e.clone()),
                    None => Some("deleted while listing".to_owned()),
                };
                row["opens"] = json!(error.is_none());
                row["error"] = json!(error);
            }
            row
        })
        .collect();
    print_json(&serde_json::Value::Array(rows))
}
