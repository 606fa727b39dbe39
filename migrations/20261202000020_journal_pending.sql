-- The journal holds what reached Vapi, not what a pass remembers afterwards: each POST, PATCH and
-- DELETE gets its row, outcome `pending`, before the request is sent, and the row is completed
-- when the answer (or its absence) is known. A crash between the two leaves `pending`; the next
-- leader of the shard resolves it: a create by what its create intent turns into (adopted → ok,
-- absent after the grace period → failed), a patch or delete as `unknown`.
alter table journal drop constraint journal_outcome_check;
alter table journal add constraint journal_outcome_check
    check (outcome in ('pending', 'ok', 'failed', 'unknown', 'gone'));
-- A pending row has no finish; nor has a row a later leader settled, since when its request
-- ended nobody knows.
alter table journal alter column finished_at drop not null;
alter table journal add constraint journal_pending_unfinished
    check (outcome <> 'pending' or finished_at is null);

-- The rows a new leader must resolve, found without a scan.
create index journal_pending_idx on journal (lease, epoch) where outcome = 'pending';
create index journal_pending_operation_idx on journal (operation_id) where outcome = 'pending';
