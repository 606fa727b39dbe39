//! Per-organization Vapi keys, sealed by [`crate::vault`]: written by `vapi-reconciler org-key`,
//! read by the controller at every pass. Only ciphertexts and fingerprints are stored.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError};
use crate::credentials::ApiKey;
use crate::vault::{Keyring, Sealed, VaultError};

#[derive(Debug, thiserror::Error)]
pub enum OrgKeyError {
    #[error("there is no organization with id {0}")]
    UnknownOrg(Uuid),
    #[error(
        "nothing was re-sealed: {} stored key(s) do not open with this keyring: {}; add the missing encryption key(s) after the current one, or set or clear those organizations' keys, then rotate again",
        .0.len(),
        .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Unopenable(Vec<VaultError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for OrgKeyError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Database(e))
    }
}

/// What `org-key list` shows about one stored key: never the key.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct OrgKeyInfo {
    pub org_id: Uuid,
    pub org_name: String,
    pub key_id: String,
    pub fingerprint: String,
    /// When the organization's Vapi key was last set (rotation re-seals without changing it).
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct SealedRow {
    org_id: Uuid,
    key_id: String,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
}

impl SealedRow {
    fn split(self) -> (Uuid, Sealed) {
        (
            self.org_id,
            Sealed {
                key_id: self.key_id,
                nonce: self.nonce,
                ciphertext: self.ciphertext,
            },
        )
    }
}

impl Store {
    /// Stores (or replaces) an organization's sealed key.
    pub async fn set_org_key(
        &self,
        org_id: Uuid,
        sealed: &Sealed,
        fingerprint: &str,
    ) -> Result<(), OrgKeyError> {
        let written = sqlx::query(
            "insert into org_credentials (org_id, key_id, nonce, ciphertext, fingerprint, updated_at)
             select o.id, $2, $3, $4, $5, now() from organizations o where o.id = $1
             on conflict (org_id) do update set
                 key_id      = excluded.key_id,
                 nonce       = excluded.nonce,
                 ciphertext  = excluded.ciphertext,
                 fingerprint = excluded.fingerprint,
                 updated_at  = now()",
        )
        .bind(org_id)
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(fingerprint)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if written == 0 {
            return Err(OrgKeyError::UnknownOrg(org_id));
        }
        Ok(())
    }

    /// Removes an organization's key; whether there was one.
    pub async fn clear_org_key(&self, org_id: Uuid) -> Result<bool, StoreError> {
        let deleted = sqlx::query("delete from org_credentials where org_id = $1")
            .bind(org_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }

    /// Every stored key's metadata, by organization name.
    pub async fn list_org_keys(&self) -> Result<Vec<OrgKeyInfo>, StoreError> {
        Ok(sqlx::query_as(
            "select c.org_id, o.name as org_name, c.key_id, c.fingerprint, c.updated_at
             from org_credentials c join organizations o on o.id = c.org_id
             order by o.name, c.org_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every organization's key, opened, in one query. A row that does not open fails its own
    /// organization only, with a message that names it; so does every row when no keyring is
    /// configured (an org with its own key must never silently fall back to the platform key).
    pub async fn load_org_keys(
        &self,
        keyring: Option<&Keyring>,
    ) -> Result<HashMap<Uuid, Result<ApiKey, String>>, StoreError> {
        let rows: Vec<SealedRow> =
            sqlx::query_as("select org_id, key_id, nonce, ciphertext from org_credentials")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let (org_id, sealed) = row.split();
                let key = match keyring {
                    Some(keyring) => keyring.open(org_id, &sealed).map_err(|e| e.to_string()),
                    None => Err(format!(
                        "a key sealed with encryption key {:?} is stored, but no encryption keys are configured (set {} or {})",
                        sealed.key_id,
                        crate::vault::KEYS_FILE_ENV,
                        crate::vault::KEYS_ENV
                    )),
                };
                (org_id, key)
            })
            .collect())
    }

    /// Re-seals every key not under the keyring's current key, in one transaction; how many.
    /// If any of them does not open, nothing changes and the error names each one.
    pub async fn rotate_org_keys(&self, keyring: &Keyring) -> Result<usize, OrgKeyError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<SealedRow> = sqlx::query_as(
            "select org_id, key_id, nonce, ciphertext from org_credentials
             where key_id <> $1 order by org_id for update",
        )
        .bind(keyring.current_id())
        .fetch_all(&mut *tx)
        .await?;
        let mut orgs = Vec::with_capacity(rows.len());
        let mut key_ids = Vec::with_capacity(rows.len());
        let mut nonces = Vec::with_capacity(rows.len());
        let mut ciphertexts = Vec::with_capacity(rows.len());
        let mut failures = Vec::new();
        for row in rows {
            let (org_id, sealed) = row.split();
            match keyring.reseal(org_id, &sealed) {
                Ok(Some(new)) => {
                    orgs.push(org_id);
                    key_ids.push(new.key_id);
                    nonces.push(new.nonce);
                    ciphertexts.push(new.ciphertext);
                }
                Ok(None) => {}
                Err(e) => failures.push(e),
            }
        }
        if !failures.is_empty() {
            return Err(OrgKeyError::Unopenable(failures));
        }
        if orgs.is_empty() {
            return Ok(0);
        }
        sqlx::query(
            "update org_credentials c
             set key_id = u.key_id, nonce = u.nonce, ciphertext = u.ciphertext
             from unnest($1::uuid[], $2::text[], $3::bytea[], $4::bytea[])
                  as u(org_id, key_id, nonce, ciphertext)
             where c.org_id = u.org_id",
        )
        .bind(&orgs)
        .bind(&key_ids)
        .bind(&nonces)
        .bind(&ciphertexts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(orgs.len())
    }
}
