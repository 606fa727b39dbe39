-- Liveness of lease holders and replicas, timed by Postgres (src/leader.rs, src/sharding.rs).
--
-- A session advisory lock outlives a frozen holder: its kernel keeps the TCP session alive.
-- These rows let a standby tell a hung holder from a busy one by Postgres's own clock
-- (`now()`), never by comparing two hosts' clocks, and name the backend to terminate. They are
-- apart from `leader_lease` on purpose: fenced writes share-lock that row back to back, and a
-- heartbeat that had to wait for them would age for being busy.

-- One row per lease: the backend that holds its lock and when that backend last proved it.
create table leader_heartbeat (
    name       text primary key,
    pid        integer not null,      -- pg_backend_pid() of the holder's dedicated session
    epoch      bigint null,           -- the holder's fencing epoch, once bumped
    holder     text not null,
    proven_at  timestamptz not null   -- now() of the holder's last proof
);

-- One row per live replica's member session (the shared lock that counts replicas).
create table leader_members (
    pid      integer primary key,     -- pg_backend_pid() of the member session
    holder   text not null,
    shards   integer not null,
    seen_at  timestamptz not null     -- now() of the member's last round
);
