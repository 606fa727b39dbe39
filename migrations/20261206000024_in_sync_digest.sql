-- The in-sync memo (src/reconcile/memo.rs): the SHA-256 of everything an agent's last in-sync
-- decision was made of (its row, its last applied body, the assistant's listed text, the voice
-- rules). A pass whose inputs hash the same has its answer without deciding again. Written only
-- with an in-sync status; any other status clears it. A cache: a stale value matches nothing.
alter table agent_status add column in_sync_digest bytea
    check (in_sync_digest is null or octet_length(in_sync_digest) = 32);
