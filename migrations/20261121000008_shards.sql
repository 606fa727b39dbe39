-- Sharding across replicas (src/sharding.rs): organizations are hashed onto a fixed number of
-- shards, each owned by one replica through its own lease. The hash is defined once here and
-- once in `reconcile::shard` (a test holds the two equal), so a replica can ask Postgres for
-- exactly its shards' agents in the same single query.

-- Shard of an organization: the first 32 bits of SHA-256 over the id's canonical text, modulo
-- the shard count. A hash and not the id's own bits, so time-ordered ids spread too.
create function vapi_reconciler_shard(org uuid, shards integer) returns integer
language sql immutable strict parallel safe as $$
    select (('x' || left(encode(sha256(convert_to(org::text, 'UTF8')), 'hex'), 8))::bit(32)::bigint
            % greatest(shards, 1))::integer
$$;

-- Epochs are per lease: a journal entry names the lease (the shard's) its epoch belongs to.
alter table journal add column lease text null;

-- An orphan belongs to the shard of the organization its marker names, so that each replica
-- keeps and forgets only its own shards' sightings.
alter table orphan_sightings add column org_id uuid null;
