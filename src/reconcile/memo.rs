//! The in-sync memo: a decision remembered by the digest of everything it was made of.
//!
//! A steady pass finds nearly every agent in sync, and deciding so costs building the body (the
//! spec, the voice rules, the tools, the marker) and scanning the listed text against it. Yet
//! [`super::decide`] is a pure function: the same agent row, the same recorded third side, the
//! same listed text and the same rules give the same answer. So when an agent is found in sync
//! with nothing new to record, its status keeps the SHA-256 of those inputs; the next pass hashes
//! the inputs it has and, when they are the same bytes, has its answer without deciding again.
//! Any change — a byte of the spec, a tool id, a voice rule, the listed text, the planning code
//! ([`VERSION`]) — changes the digest, and the agent is decided in full.
//!
//! The spec and the last applied body enter by their SHA-256, which Postgres computes as it reads
//! the row (`store`): a full pass then reads neither text for an agent whose status holds a memo,
//! and reads them for the few whose memo misses before deciding anything
//! ([`super::misses`]). Likewise the listed text of an assistant whose agent's memo it
//! reproduces is dropped as its page arrives, its digest kept in its place
//! ([`super::remember`]).
//!
//! What the digest speaks of was observed: it is taken over the text Vapi listed, never over what
//! the controller sent. It is a cache, not a claim: a stale one matches nothing.

use sha2::{Digest, Sha256};

use super::{ActualAssistant, DesiredAgent, VoiceRules};

/// Bumped whenever `decide`'s in-sync path changes meaning (what it builds, how it compares), so
/// digests written by an older controller match nothing.
const VERSION: &[u8] = b"in-sync/2";

pub(crate) type InSyncDigest = [u8; 32];

/// The voice rules' share of every digest, hashed once per plan.
pub(crate) fn rules_digest(voices: &VoiceRules) -> InSyncDigest {
    let mut h = Sha256::new();
    // Serialization of the rules is deterministic (ordered maps), so equal rules hash equal.
    field(&mut h, &serde_json::to_vec(voices).unwrap_or_default());
    h.finalize().into()
}

/// The digest of one in-sync decision's inputs: the agent as stored, the assistant as listed.
/// `None` when the assistant did not come from a listing (no text to hash).
pub(crate) fn digest(
    agent: &DesiredAgent,
    assistant: &ActualAssistant,
    rules: &InSyncDigest,
) -> Option<InSyncDigest> {
    let text = match assistant.text() {
        Some(text) => text,
        // The text was dropped as it was listed because it gave this very digest.
        None => return assistant.remembered_for(agent.id).copied(),
    };
    let mut h = Sha256::new();
    field(&mut h, VERSION);
    field(&mut h, env!("CARGO_PKG_VERSION").as_bytes());
    field(&mut h, rules);
    field(&mut h, agent.id.as_bytes());
    field(&mut h, agent.org_id.as_bytes());
    field(&mut h, &agent.generation.to_le_bytes());
    field(&mut h, agent.name.as_bytes());
    // The spec and the applied body by their SHA-256, as Postgres takes it: a full pass reads
    // neither text for an agent whose memo holds.
    field(&mut h, agent.spec.sha());
    field(&mut h, &(agent.tool_ids.len() as u64).to_le_bytes());
    for id in &agent.tool_ids {
        field(&mut h, id.as_bytes());
    }
    field(&mut h, &[u8::from(agent.voice_fallback)]);
    field(
        &mut h,
        agent
            .recorded_assistant_id
            .as_deref()
            .unwrap_or("")
            .as_bytes(),
    );
    match &agent.last_applied {
        Some(l) => {
            field(&mut h, b"applied");
            field(&mut h, l.sha());
        }
        None => field(&mut h, b"none"),
    }
    field(&mut h, assistant.id.as_bytes());
    field(&mut h, text.as_bytes());
    Some(h.finalize().into())
}

/// The SHA-256 of a text: what `sha256(convert_to(text, 'UTF8'))` gives in Postgres.
pub(crate) fn sha(text: &str) -> InSyncDigest {
    Sha256::digest(text.as_bytes()).into()
}

/// Length-prefixed, so no two sequences of fields hash alike.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}
