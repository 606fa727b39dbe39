-- Per-organization Vapi private keys, encrypted (AES-256-GCM, AAD = org id). Written by
-- `vapi-reconciler org-key`, read by the controller at every pass; never stored in clear.
create table org_credentials (
    org_id       uuid primary key references organizations (id) on delete cascade,
    key_id       text not null,          -- which encryption key sealed it
    nonce        bytea not null,
    ciphertext   bytea not null,
    fingerprint  text not null,          -- SHA-256/8 of the Vapi key, for display
    updated_at   timestamptz not null default now()
);
