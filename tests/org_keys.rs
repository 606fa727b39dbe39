//! `vapi-reconciler org-key` as a user runs it, against a real database: keys go in through a
//! file or stdin, come out only as fingerprints, are stored only sealed, open for their own
//! organization only, and are re-sealed by `rotate`. No command's output ever holds a Vapi key
//! or an encryption key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Output, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::process::{command, url_of};
use serde_json::Value;
use sqlx::PgPool;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;
use vapi_reconciler::credentials::fingerprint;
use vapi_reconciler::store::Store;
use vapi_reconciler::vault::{KEYS_ENV, KEYS_FILE_ENV, Keyring};

/// A fresh 32-byte encryption key, base64.
fn encryption_key() -> String {
    STANDARD.encode(rand::random::<[u8; 32]>())
}

fn vapi_key() -> String {
    Uuid::new_v4().to_string()
}

/// Runs `org-key` commands and checks that none of them shows a secret it knows.
struct Cli {
    url: String,
    secrets: Vec<String>,
}

impl Cli {
    fn new(pool: &PgPool) -> Self {
        Self {
            url: url_of(pool),
            secrets: Vec::new(),
        }
    }

    fn secret(&mut self, s: &str) -> String {
        self.secrets.push(s.to_owned());
        s.to_owned()
    }

    /// `org-key ARGS` with `keys` (if any) in VAPI_RECONCILER_ENCRYPTION_KEYS and `stdin` (if
    /// any) on standard input.
    async fn run(&self, keys: Option<&str>, args: &[&str], stdin: Option<&str>) -> Output {
        self.run_with(keys, args, stdin, &[]).await
    }

    async fn run_with(
        &self,
        keys: Option<&str>,
        args: &[&str],
        stdin: Option<&str>,
        env: &[(&str, &str)],
    ) -> Output {
        let mut all = vec!["org-key"];
        all.extend_from_slice(args);
        let mut cmd = command(&all, &self.url, "http://127.0.0.1:9", "unused-platform-key");
        cmd.env_remove(KEYS_ENV)
            .env_remove(KEYS_FILE_ENV)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        if let Some(keys) = keys {
            cmd.env(KEYS_ENV, keys);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input.as_bytes()).await.unwrap();
            drop(pipe);
        }
        let out = child.wait_with_output().await.unwrap();
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for secret in &self.secrets {
            assert!(
                !text.contains(secret.as_str()),
                "`org-key {}` showed a secret:\n{text}",
                args.join(" ")
            );
        }
        out
    }

    async fn ok(&self, keys: Option<&str>, args: &[&str], stdin: Option<&str>) -> Value {
        let out = self.run(keys, args, stdin).await;
        assert!(
            out.status.success(),
            "`org-key {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    async fn fails(&self, keys: Option<&str>, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(keys, args, stdin).await;
        assert!(
            !out.status.success(),
            "`org-key {}` should fail: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn keyring(text: &str) -> Keyring {
    Keyring::parse(text, "test").unwrap()
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    org_id: Uuid,
    key_id: String,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
    fingerprint: String,
}

async fn rows(pool: &PgPool) -> Vec<Row> {
    sqlx::query_as(
        "select org_id, key_id, nonce, ciphertext, fingerprint from org_credentials order by org_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[sqlx::test]
async fn set_from_stdin_and_file_list_and_load_never_showing_the_key(pool: PgPool) {
    let mut cli = Cli::new(&pool);
    let k1 = cli.secret(&encryption_key());
    let keys = format!("k1:{k1}");
    let (a, b) = (
        common::org(&pool, "Harbor").await,
        common::org(&pool, "Lakeside").await,
    );
    let key_a = cli.secret(&vapi_key());
    let key_b = cli.secret(&vapi_key());

    let out = cli
        .ok(
            Some(&keys),
            &["set", "--org", &a.to_string(), "--stdin"],
            Some(&format!("  {key_a}\n")),
        )
        .await;
    assert_eq!(out["org_id"], a.to_string());
    assert_eq!(out["fingerprint"], fingerprint(&key_a));
    assert_eq!(out["key_id"], "k1");

    // From a file, with the keyring in a file too (which wins over a broken environment value).
    let dir = std::env::temp_dir().join(format!("vr-org-keys-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("vapi-key");
    std::fs::write(&key_file, format!("{key_b}\n")).unwrap();
    let keys_file = dir.join("encryption-keys");
    std::fs::write(&keys_file, format!("{keys}\n")).unwrap();
    let out = cli
        .run_with(
            Some("broken"),
            &[
                "set",
                "--org",
                &b.to_string(),
                "--from-file",
                key_file.to_str().unwrap(),
            ],
            None,
            &[(KEYS_FILE_ENV, keys_file.to_str().unwrap())],
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out["fingerprint"], fingerprint(&key_b));

    // Stored sealed: a nonce, a ciphertext that does not hold the key, its fingerprint.
    let stored = rows(&pool).await;
    assert_eq!(stored.len(), 2);
    for row in &stored {
        let raw = if row.org_id == a { &key_a } else { &key_b };
        assert_eq!(row.key_id, "k1");
        assert_eq!(row.nonce.len(), 12);
        assert_eq!(row.fingerprint, fingerprint(raw));
        assert!(!contains(&row.ciphertext, raw.as_bytes()));
        assert!(!contains(&row.ciphertext, &raw.as_bytes()[..8]));
    }
    assert_ne!(stored[0].nonce, stored[1].nonce);

    // list: fingerprints and names; with a keyring, whether each opens.
    let list = cli.ok(None, &["list"], None).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["org_name"], "Harbor");
    assert_eq!(list[0]["org_id"], a.to_string());
    assert_eq!(list[0]["fingerprint"], fingerprint(&key_a));
    assert_eq!(list[0]["key_id"], "k1");
    assert!(list[0]["updated_at"].is_string());
    assert!(list[0].get("opens").is_none(), "no keyring, no verdict");
    assert_eq!(list[1]["org_name"], "Lakeside");
    assert_eq!(list[1]["fingerprint"], fingerprint(&key_b));
    let list = cli.ok(Some(&keys), &["list"], None).await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|r| r["opens"] == true && r["error"].is_null()),
        "{list:#}"
    );

    // The controller's read: one query, each org's own key.
    let store = Store::new(pool.clone());
    let loaded = store.load_org_keys(Some(&keyring(&keys))).await.unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(
        loaded[&a].as_ref().unwrap().fingerprint(),
        fingerprint(&key_a)
    );
    assert_eq!(
        loaded[&b].as_ref().unwrap().fingerprint(),
        fingerprint(&key_b)
    );

    // Setting again replaces the key.
    let key_a2 = cli.secret(&vapi_key());
    cli.ok(
        Some(&keys),
        &["set", "--org", &a.to_string(), "--stdin"],
        Some(&key_a2),
    )
    .await;
    let loaded = store.load_org_keys(Some(&keyring(&keys))).await.unwrap();
    assert_eq!(
        loaded[&a].as_ref().unwrap().fingerprint(),
        fingerprint(&key_a2)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[sqlx::test]
async fn a_row_copied_to_another_org_fails_for_that_org_only(pool: PgPool) {
    let mut cli = Cli::new(&pool);
    let k1 = cli.secret(&encryption_key());
    let keys = format!("k1:{k1}");
    let (a, b) = (
        common::org(&pool, "Harbor").await,
        common::org(&pool, "Lakeside").await,
    );
    for org in [a, b] {
        let key = cli.secret(&vapi_key());
        cli.ok(
            Some(&keys),
            &["set", "--org", &org.to_string(), "--stdin"],
            Some(&key),
        )
        .await;
    }
    sqlx::query(
        "update org_credentials b
         set key_id = a.key_id, nonce = a.nonce, ciphertext = a.ciphertext
         from org_credentials a where a.org_id = $1 and b.org_id = $2",
    )
    .bind(a)
    .bind(b)
    .execute(&pool)
    .await
    .unwrap();

    let loaded = Store::new(pool.clone())
        .load_org_keys(Some(&keyring(&keys)))
        .await
        .unwrap();
    assert!(loaded[&a].is_ok(), "{:?}", loaded[&a]);
    let err = loaded[&b].as_ref().unwrap_err();
    assert_eq!(
        err,
        &format!(
            "cannot decrypt the key of org {b} with key id \"k1\" (wrong encryption key or tampered row)"
        )
    );

    let list = cli.ok(Some(&keys), &["list"], None).await;
    let by_org = |org: Uuid| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| r["org_id"] == org.to_string())
            .unwrap()
            .clone()
    };
    assert_eq!(by_org(a)["opens"], true);
    assert_eq!(by_org(b)["opens"], false);
    assert_eq!(by_org(b)["error"], err.as_str());

    // Rotation refuses while a row does not open, names it, and changes nothing.
    let k2 = cli.secret(&encryption_key());
    let stderr = cli
        .fails(Some(&format!("k2:{k2},k1:{k1}")), &["rotate"], None)
        .await;
    assert!(stderr.contains(&b.to_string()), "{stderr}");
    assert!(stderr.contains("nothing was re-sealed"), "{stderr}");
    assert!(rows(&pool).await.iter().all(|r| r.key_id == "k1"));
}

#[sqlx::test]
async fn rotate_reseals_under_the_current_key(pool: PgPool) {
    let mut cli = Cli::new(&pool);
    let k1 = cli.secret(&encryption_key());
    let k2 = cli.secret(&encryption_key());
    let (a, b) = (
        common::org(&pool, "Harbor").await,
        common::org(&pool, "Lakeside").await,
    );
    let mut raw = std::collections::HashMap::new();
    for org in [a, b] {
        let key = cli.secret(&vapi_key());
        cli.ok(
            Some(&format!("k1:{k1}")),
            &["set", "--org", &org.to_string(), "--stdin"],
            Some(&key),
        )
        .await;
        raw.insert(org, key);
    }
    let before = rows(&pool).await;

    let both = format!("k2:{k2}\nk1:{k1}\n");
    let out = cli.ok(Some(&both), &["rotate"], None).await;
    assert_eq!(out["rotated"], 2);
    assert_eq!(out["key_id"], "k2");
    let after = rows(&pool).await;
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(new.key_id, "k2");
        assert_ne!(new.ciphertext, old.ciphertext);
        assert_ne!(new.nonce, old.nonce);
        assert_eq!(new.fingerprint, old.fingerprint);
    }
    // Opens with the new key alone: k1 can be retired.
    let loaded = Store::new(pool.clone())
        .load_org_keys(Some(&keyring(&format!("k2:{k2}"))))
        .await
        .unwrap();
    for org in [a, b] {
        assert_eq!(
            loaded[&org].as_ref().unwrap().fingerprint(),
            fingerprint(&raw[&org])
        );
    }
    let out = cli.ok(Some(&both), &["rotate"], None).await;
    assert_eq!(out["rotated"], 0, "nothing left under an old key");

    // A keyring that lost the old key before rotating says which id is missing.
    let k3 = cli.secret(&encryption_key());
    let stderr = cli
        .fails(Some(&format!("k3:{k3}")), &["rotate"], None)
        .await;
    assert!(stderr.contains("\"k2\""), "{stderr}");
    assert!(stderr.contains("not in the keyring"), "{stderr}");
}

#[sqlx::test]
async fn clear_removes_the_key(pool: PgPool) {
    let mut cli = Cli::new(&pool);
    let keys = format!("k1:{}", cli.secret(&encryption_key()));
    let org = common::org(&pool, "Harbor").await;
    let key = cli.secret(&vapi_key());
    cli.ok(
        Some(&keys),
        &["set", "--org", &org.to_string(), "--stdin"],
        Some(&key),
    )
    .await;
    // Clearing needs no keyring.
    let out = cli
        .ok(None, &["clear", "--org", &org.to_string()], None)
        .await;
    assert_eq!(out["cleared"], true);
    assert!(rows(&pool).await.is_empty());
    assert_eq!(cli.ok(None, &["list"], None).await, serde_json::json!([]));
    let out = cli
        .ok(None, &["clear", "--org", &org.to_string()], None)
        .await;
    assert_eq!(out["cleared"], false);
    // The org's deletion takes its key along.
    cli.ok(
        Some(&keys),
        &["set", "--org", &org.to_string(), "--stdin"],
        Some(&key),
    )
    .await;
    sqlx::query("delete from organizations where id = $1")
        .bind(org)
        .execute(&pool)
        .await
        .unwrap();
    assert!(rows(&pool).await.is_empty());
}

#[sqlx::test]
async fn bad_input_fails_with_messages_that_name_the_problem(pool: PgPool) {
    let mut cli = Cli::new(&pool);
    let k1 = cli.secret(&encryption_key());
    let keys = format!("k1:{k1}");
    let org = common::org(&pool, "Harbor").await;
    let key = cli.secret(&vapi_key());

    let unknown = Uuid::new_v4();
    let stderr = cli
        .fails(
            Some(&keys),
            &["set", "--org", &unknown.to_string(), "--stdin"],
            Some(&key),
        )
        .await;
    assert!(
        stderr.contains(&format!("there is no organization with id {unknown}")),
        "{stderr}"
    );

    let stderr = cli
        .fails(
            None,
            &["set", "--org", &org.to_string(), "--stdin"],
            Some(&key),
        )
        .await;
    assert!(
        stderr.contains(KEYS_ENV) && stderr.contains(KEYS_FILE_ENV),
        "{stderr}"
    );
    assert!(
        cli.fails(None, &["rotate"], None)
            .await
            .contains(KEYS_FILE_ENV)
    );

    let stderr = cli
        .fails(
            Some(&keys),
            &["set", "--org", &org.to_string(), "--stdin"],
            Some(" \n"),
        )
        .await;
    assert!(
        stderr.contains("the Vapi key read from standard input is empty"),
        "{stderr}"
    );
    let stderr = cli
        .fails(
            Some(&keys),
            &["set", "--org", &org.to_string(), "--stdin"],
            Some(&format!("{key}\n{key}\n")),
        )
        .await;
    assert!(stderr.contains("one key on one line"), "{stderr}");

    let short = cli.secret(&STANDARD.encode([7u8; 16]));
    let stderr = cli
        .fails(
            Some(&format!("k1:{k1},k2:{short}")),
            &["set", "--org", &org.to_string(), "--stdin"],
            Some(&key),
        )
        .await;
    assert!(
        stderr.contains(&format!(
            "{KEYS_ENV}: entry 2 (id \"k2\") is not 32 bytes of base64"
        )),
        "{stderr}"
    );

    let missing = std::env::temp_dir().join(format!("vr-missing-{}", Uuid::new_v4()));
    let stderr = cli
        .fails(
            Some(&keys),
            &[
                "set",
                "--org",
                &org.to_string(),
                "--from-file",
                missing.to_str().unwrap(),
            ],
            None,
        )
        .await;
    assert!(
        stderr.contains(&format!(
            "cannot read the Vapi key from {}",
            missing.display()
        )),
        "{stderr}"
    );

    // The key is never an argument, and exactly one source is given.
    let stderr = cli
        .fails(Some(&keys), &["set", "--org", &org.to_string()], None)
        .await;
    assert!(
        stderr.contains("--from-file") && stderr.contains("--stdin"),
        "{stderr}"
    );
    let out = cli
        .run(
            Some(&keys),
            &["set", "--org", &org.to_string(), "--stdin", "not-a-flag"],
            Some(&key),
        )
        .await;
    assert!(!out.status.success());
    assert!(rows(&pool).await.is_empty(), "nothing was stored");
}
