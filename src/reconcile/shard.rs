//! Which organizations a replica reconciles: organizations are hashed onto a fixed number of
//! shards, and a replica owns a set of them (leases in `src/sharding.rs`).
//!
//! The hash is the first 32 bits of SHA-256 over the organization id's canonical text, modulo the
//! shard count; Postgres computes the same with `vapi_reconciler_shard(org, shards)` (migration
//! `…08_shards.sql`), so a pass loads only its shards' agents in its one query. An assistant
//! belongs to the shard of the organization its ownership marker names; a marker without a
//! readable organization belongs to shard 0, so that exactly one owner looks after it.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The shard of `org` among `count` shards (`count` 0 is taken as 1).
pub fn shard_of(org: Uuid, count: u32) -> u32 {
    let digest = Sha256::digest(org.hyphenated().to_string().as_bytes());
    let head = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    head % count.max(1)
}

/// The shards one replica owns, out of how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shards {
    count: u32,
    owned: BTreeSet<u32>,
}

impl Shards {
    /// Every shard of `count`: a single replica, or a one-shot command holding them all.
    pub fn all(count: u32) -> Self {
        let count = count.max(1);
        Self {
            count,
            owned: (0..count).collect(),
        }
    }

    /// Some of `count` shards; numbers not below `count` are ignored.
    pub fn some(count: u32, owned: impl IntoIterator<Item = u32>) -> Self {
        let count = count.max(1);
        Self {
            count,
            owned: owned.into_iter().filter(|s| *s < count).collect(),
        }
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn owned(&self) -> impl Iterator<Item = u32> + '_ {
        self.owned.iter().copied()
    }

    pub fn is_all(&self) -> bool {
        self.owned.len() == self.count as usize
    }

    pub fn owns(&self, shard: u32) -> bool {
        self.owned.contains(&shard)
    }

    pub fn owns_org(&self, org: Uuid) -> bool {
        self.is_all() || self.owns(shard_of(org, self.count))
    }

    /// The shard of an assistant whose marker names `org` (as written in its metadata).
    pub fn shard_of_marker(&self, org: Option<&str>) -> u32 {
        org.and_then(|o| o.parse::<Uuid>().ok())
            .map_or(0, |o| shard_of(o, self.count))
    }

    pub fn owns_marker(&self, org: Option<&str>) -> bool {
        self.is_all() || self.owns(self.shard_of_marker(org))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_the_documented_definition() {
        // The same value as Postgres's `vapi_reconciler_shard` input for this id (checked there
        // by `tests/sharding.rs` over many ids); pinned here so a change to either side shows.
        let org: Uuid = "7f0c3a9e-1111-4222-8333-944455556666"
            .parse()
            .expect("uuid");
        // The first 8 hex digits of the SHA-256 of the id's text are 3_619_408_845.
        assert_eq!(shard_of(org, 1000), 845);
        assert_eq!(shard_of(org, 16), 13);
        assert_eq!(shard_of(org, 1), 0);
        assert_eq!(shard_of(org, 0), 0);
    }

    #[test]
    fn shards_spread_organizations_evenly() {
        let mut counts = [0u32; 8];
        for _ in 0..8000 {
            counts[shard_of(Uuid::new_v4(), 8) as usize] += 1;
        }
        // Binomial(8000, 1/8): mean 1000, sd ≈ 30; ±200 is far outside chance.
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    #[test]
    fn ownership_of_orgs_and_markers() {
        let org: Uuid = "7f0c3a9e-1111-4222-8333-944455556666"
            .parse()
            .expect("uuid");
        let home = shard_of(org, 4);
        let mine = Shards::some(4, [home]);
        let other = Shards::some(4, (0..4).filter(|s| *s != home));
        assert!(mine.owns_org(org) && !other.owns_org(org));
        let text = org.to_string();
        assert!(mine.owns_marker(Some(&text)) && !other.owns_marker(Some(&text)));
        // Unreadable or missing organizations belong to shard 0, owned by exactly one replica.
        let zero = Shards::some(4, [0]);
        let rest = Shards::some(4, [1, 2, 3]);
        for marker in [None, Some("not-a-uuid")] {
            assert!(zero.owns_marker(marker) && !rest.owns_marker(marker));
        }
        assert!(Shards::all(4).is_all() && Shards::all(4).owns_org(org));
        assert_eq!(Shards::some(4, [7]).owned().count(), 0);
    }
}
