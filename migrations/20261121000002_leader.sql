-- Leader election, written and read by the controller only (src/leader.rs).
-- The advisory lock decides who leads; this table records under which fencing epoch, so a write
-- can be checked against the epoch and a new leader can tell a graceful hand-over from a crash.

-- One row per lease name: who leads, under which fencing epoch.
create table leader_lease (
    name         text primary key,
    epoch        bigint not null,
    holder       text not null,
    acquired_at  timestamptz not null,
    renewed_at   timestamptz not null,
    released_at  timestamptz null      -- set by a graceful release; null while held or after a crash
);
