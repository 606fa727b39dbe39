//! Survey (reads only): the desired state from Postgres and the actual state from Vapi, planned.
//!
//! In: the pass's scope. Out: a [`Survey`]: per credential one group (its lane, its agents, its
//! listing) planned by the pure [`reconcile::plan`], the decisions each paired with its lane,
//! and the outcomes that need no Vapi write (a key that cannot be used, a listing that failed).
//! Nothing here writes to Vapi or to controller state; a preview runs exactly this.
//!
//! A focused pass ([`Scope::Agents`]) stands in for the listing with what each named agent's
//! status records as applied ([`reconcile::assume_applied`]). That stand-in is an assumption, so
//! a decision it calls "in sync" is checked with one GET of that assistant and planned again
//! against the answer: only a listing, a GET or the answer to a write may say `synced`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::lane::{CallError, Lane};
use super::outcome::{self, Done, Outcome, Reason};
use super::pass::{PassContext, PassError, PassReport, Scope};
use crate::reconcile::tools::{Resolved, resolve};
use crate::reconcile::{self, Action, ActualAssistant, DesiredAgent, Plan, PlanInput};
use crate::store::{RecordedStatus, SyncState};
use crate::vapi::Unreadable;

use super::ASSISTANT;

/// What a pass found before acting: the plan over every key's listing, and the outcomes that
/// need no Vapi write (agents whose key is unusable or whose listing failed).
pub(crate) struct Survey {
    pub(super) started: Instant,
    pub(super) report: PassReport,
    pub(super) recorded: HashMap<Uuid, RecordedStatus>,
    pub(super) plan: Plan,
    pub(super) decision_lanes: Vec<Arc<Lane>>,
    pub(super) stray_lanes: Vec<Arc<Lane>>,
    pub(super) early: Vec<Done>,
    pub(super) orphans_known: bool,
    /// Each agent's name, for a preview, which shows them (a pass has no use for a copy).
    pub(super) names: HashMap<Uuid, String>,
    /// Every key a full pass found in use (`None` for a focused pass, which sees only some).
    pub(super) keys_in_use: Option<HashSet<String>>,
}

/// Reads the desired state, lists every key's assistants (or, focused, stands in for the
/// listing) and plans; writes nothing.
pub(crate) async fn survey(
    ctx: &PassContext<'_>,
    scope: Scope<'_>,
    with_names: bool,
) -> Result<Survey, PassError> {
    let started = Instant::now();
    let mut report = PassReport {
        dry_run: ctx.settings.dry_run,
        ..PassReport::default()
    };
    let rows = match scope {
        Scope::All => ctx.store.load_agents(ctx.owner.shards()).await?,
        Scope::Agents(ids) => {
            let mut rows = ctx.store.load_agents_by_id(ctx.owner.shards(), ids).await?;
            let loaded = rows.len();
            rows.retain(|(a, _)| reconcile::assume_applied(a).is_some());
            report.left_to_full_pass = loaded - rows.len();
            rows
        }
    };
    let full = matches!(scope, Scope::All);
    report.deleted_agents = rows.iter().filter(|(a, _)| a.deleted).count();
    report.agents = rows.len() - report.deleted_agents;
    let mut recorded: HashMap<Uuid, RecordedStatus> = HashMap::with_capacity(rows.len());
    let known: HashSet<Uuid> = rows.iter().map(|(a, _)| a.id).collect();
    let names: HashMap<Uuid, String> = if with_names {
        rows.iter().map(|(a, _)| (a.id, a.name.clone())).collect()
    } else {
        HashMap::new()
    };
    report.states = rows
        .iter()
        .map(|(a, r)| {
            let state = r
                .as_ref()
                .filter(|r| r.observed_generation >= a.generation)
                .and_then(|r| r.state)
                .unwrap_or(SyncState::Pending);
            (a.id, state)
        })
        .collect();

    // Each agent goes to its org's own key, or the platform key. An org whose stored key cannot
    // be read gets nothing: falling back to the platform key would write to another Vapi org.
    let mut groups: HashMap<String, (Arc<Lane>, Vec<DesiredAgent>)> = HashMap::new();
    let mut early = Vec::new();
    // Tool references resolve against what `tool_status` records now (the tools stage ran first
    // in a full pass): an agent whose tool has no id yet waits, and nothing is sent for it.
    let tool_states = if rows
        .iter()
        .any(|(a, _)| !a.deleted && !a.tool_names.is_empty())
    {
        ctx.store.tool_states(ctx.owner.shards()).await?
    } else {
        HashMap::new()
    };
    for (mut agent, status) in rows {
        if let Some(status) = status {
            recorded.insert(agent.id, status);
        }
        let (key, scope) = match ctx.org_keys.get(&agent.org_id) {
            Some(Ok(key)) => (key, format!("org {}", agent.org_id)),
            Some(Err(why)) => {
                early.push(Done::status(Outcome::failed(
                    agent.id,
                    agent.generation,
                    Reason::CredentialsUnavailable,
                    format!("The organization's own Vapi key cannot be used: {why}. Nothing was sent; the platform key is never used in its place."),
                    false,
                )));
                continue;
            }
            None => (&ctx.platform.key, "platform".to_owned()),
        };
        if !agent.deleted && !agent.tool_names.is_empty() {
            match resolve(&agent.tool_names, tool_states.get(&agent.org_id)) {
                Resolved::Ids(ids) => agent.tool_ids = ids,
                Resolved::Waiting { tool, why } => {
                    early.push(Done::status(Outcome::other(
                        agent.id,
                        agent.generation,
                        SyncState::Pending,
                        Reason::WaitingForTool,
                        format!("Waiting for tool {tool:?}: {why}. Nothing is sent until every tool the agent names is synced (a partial toolIds would unlink the others)."),
                        false,
                    )));
                    continue;
                }
            }
        }
        groups
            .entry(key.fingerprint().to_owned())
            .or_insert_with(|| (ctx.lanes.lane(key, &scope), Vec::new()))
            .1
            .push(agent);
    }
    let orphans_seen = if full {
        // The platform key is listed even with no agent on it: its orphans are found only so.
        let platform = &ctx.platform.key;
        groups
            .entry(platform.fingerprint().to_owned())
            .or_insert_with(|| (ctx.lanes.lane(platform, "platform"), Vec::new()));
        ctx.store.orphan_sightings().await?
    } else {
        HashMap::new()
    };
    let keys_in_use = full.then(|| groups.keys().cloned().collect::<HashSet<String>>());
    let now = Utc::now();
    let mut plan = Plan::default();
    let mut decision_lanes = Vec::new();
    let mut stray_lanes = Vec::new();
    let mut list_errors = Vec::new();
    let rules = reconcile::memo::rules_digest(&ctx.settings.plan.voices);
    for (lane, agents) in groups.into_values() {
        let listed = if full {
            // An assistant whose text reproduces its agent's memo keeps only the digest, page by
            // page: a steady pass never holds the fleet's texts at once.
            let by_recorded: HashMap<&str, &DesiredAgent> = agents
                .iter()
                .filter(|a| a.in_sync_digest.is_some())
                .filter_map(|a| Some((a.recorded_assistant_id.as_deref()?, a)))
                .collect();
            let mut dropped = 0;
            let listed = list(&lane, ctx.cancel, |mut a| {
                if let Some(agent) = by_recorded.get(a.id.as_str()) {
                    reconcile::remember(agent, &mut a, &rules);
                    dropped += usize::from(a.is_forgotten());
                }
                a
            })
            .await;
            report.assistants_remembered += dropped;
            listed
        } else {
            Ok((
                agents
                    .iter()
                    .filter_map(reconcile::assume_applied)
                    .collect(),
                Vec::new(),
            ))
        };
        let (mut assistants, mut agents) = match listed {
            Ok((assistants, unreadable)) => {
                (assistants, hold_unreadable(agents, &unreadable, &mut early))
            }
            // Stopping: nothing was learned, so nothing is recorded for these agents.
            Err(CallError::Stopped) => continue,
            Err(err) => {
                // Without the actual state nothing can be decided; every agent says why, except
                // an agent whose spec is unsendable, which keeps saying so (that needs no listing).
                if !matches!(err, CallError::Quarantined { .. }) {
                    tracing::warn!(error = %err, kind = err.kind(), fingerprint = lane.fingerprint(), "listing assistants failed");
                }
                list_errors.push(format!("key {}: {err}", lane.fingerprint()));
                early.extend(agents.iter().map(|a| {
                    Done::status(
                        // An agent whose texts were left out was sendable when last found in
                        // sync: the listing's failure is what there is to say.
                        match reconcile::desired_body(a, &ctx.settings.plan.voices) {
                            Err(problems) if !a.deleted && a.texts_read() => {
                                outcome::invalid(a.id, a.generation, &problems)
                            }
                            _ => Outcome::call_failed(
                                a.id,
                                a.generation,
                                "list assistants",
                                &err,
                                lane.fingerprint(),
                            ),
                        },
                    )
                }));
                continue;
            }
        };
        if full {
            report.assistants_listed += assistants.len();
        }
        // What the plan reads besides this key's agents and listing (which change, below, when
        // a miss is read again).
        let base = PlanInput {
            agents: &[],
            assistants: &[],
            known_agents: &known,
            orphans_seen: &orphans_seen,
            shards: ctx.owner.shards(),
            now,
            settings: &ctx.settings.plan,
        };
        let planned = {
            let index = reconcile::Index::new(&assistants, &ctx.settings.plan.voices);
            let found = index.found(&agents);
            let misses = reconcile::misses(&agents, &index, &found);
            if misses.is_empty() {
                let input = PlanInput {
                    agents: &agents,
                    assistants: &assistants,
                    ..base
                };
                Ok(reconcile::plan_found(&input, &index, &found))
            } else {
                Err(misses)
            }
        };
        let mut part = match planned {
            Ok(part) => part,
            Err(misses) => {
                report.texts_read_again += misses.texts.len();
                report.assistants_read_again += misses.assistants.len();
                if !misses.texts.is_empty() {
                    read_texts(ctx, &mut agents, &misses.texts).await?;
                }
                for id in &misses.assistants {
                    read_assistant(
                        &lane,
                        id,
                        &mut assistants,
                        &mut agents,
                        &mut early,
                        ctx.cancel,
                    )
                    .await;
                }
                reconcile::plan(&PlanInput {
                    agents: &agents,
                    assistants: &assistants,
                    ..base
                })
            }
        };
        if !full {
            // Planned against what was last applied, not against Vapi: "in sync" here is an
            // assumption, never a status. Such agents are looked at (one GET each, never a
            // listing) and planned again against what Vapi answered; one that cannot be read
            // so is left to a full pass.
            let (assumed, mut decided): (Vec<_>, Vec<_>) = std::mem::take(&mut part.decisions)
                .into_iter()
                .partition(|d| matches!(d.action, Action::InSync { .. }));
            let mut observed = Vec::with_capacity(assumed.len());
            for d in &assumed {
                let Action::InSync { assistant_id, .. } = &d.action else {
                    continue;
                };
                match lane.get(ASSISTANT, assistant_id, ctx.cancel).await {
                    Ok(found) => match ActualAssistant::from_value(found) {
                        Some(a) => observed.push(a),
                        None => report.left_to_full_pass += 1,
                    },
                    Err(_) => report.left_to_full_pass += 1,
                }
            }
            if !observed.is_empty() {
                let seen: HashSet<Uuid> = assumed
                    .iter()
                    .filter(|d| {
                        observed.iter().any(|a| {
                            matches!(&d.action, Action::InSync { assistant_id, .. } if *assistant_id == a.id)
                        })
                    })
                    .map(|d| d.agent_id)
                    .collect();
                let again: Vec<DesiredAgent> = agents
                    .iter()
                    .filter(|a| seen.contains(&a.id))
                    .cloned()
                    .collect();
                decided.extend(
                    reconcile::plan(&PlanInput {
                        agents: &again,
                        assistants: &observed,
                        known_agents: &known,
                        orphans_seen: &orphans_seen,
                        shards: ctx.owner.shards(),
                        now,
                        settings: &ctx.settings.plan,
                    })
                    .decisions,
                );
            }
            part.decisions = decided;
        }
        decision_lanes.extend(std::iter::repeat_n(lane.clone(), part.decisions.len()));
        stray_lanes.extend(std::iter::repeat_n(lane.clone(), part.strays.len()));
        // Moved, not copied, when it is the first (most often the only) key's: a copy would
        // hold the fleet's decisions twice for a moment, the pass's peak.
        if plan.decisions.is_empty() {
            plan.decisions = part.decisions;
        } else {
            plan.decisions.extend(part.decisions);
        }
        plan.strays.extend(part.strays);
        plan.managed += part.managed;
        plan.unmanaged += part.unmanaged;
        plan.other_shards += part.other_shards;
    }
    if !list_errors.is_empty() {
        report.list_error = Some(list_errors.join("; "));
    }
    report.managed = plan.managed;
    report.unmanaged = plan.unmanaged;
    report.other_shards = plan.other_shards;
    report.orphans = plan.strays.len();
    for d in &plan.decisions {
        let differs = match &d.action {
            Action::Create { .. } | Action::Recreate { .. } | Action::AwaitCreate { .. } => {
                report.missing += 1;
                true
            }
            Action::Patch { .. } => {
                report.diverged += 1;
                true
            }
            Action::Delete { .. } => true,
            _ => false,
        };
        report.duplicates += d.duplicates.len();
        if differs || !d.duplicates.is_empty() {
            report.drifting.push(d.agent_id);
        }
    }
    Ok(Survey {
        started,
        report,
        recorded,
        plan,
        decision_lanes,
        stray_lanes,
        early,
        orphans_known: !orphans_seen.is_empty(),
        names,
        keys_in_use,
    })
}

/// Reads the spec and applied texts of `ids` (agents whose memo missed against the listing) in
/// one query, and puts them in place. A row that changed since the pass first read it (a save
/// in between: another generation or spec, or another applied body) is not decided by this pass
/// at all: its save wakes a pass of its own, and deciding it on a mix of two reads could claim
/// what neither saw.
async fn read_texts(
    ctx: &PassContext<'_>,
    agents: &mut Vec<DesiredAgent>,
    ids: &[Uuid],
) -> Result<(), PassError> {
    let mut read: HashMap<Uuid, DesiredAgent> = ctx
        .store
        .load_agents_by_id(ctx.owner.shards(), ids)
        .await?
        .into_iter()
        .map(|(a, _)| (a.id, a))
        .collect();
    let wanted: HashSet<&Uuid> = ids.iter().collect();
    agents.retain_mut(|agent| {
        if !wanted.contains(&agent.id) {
            return true;
        }
        let Some(fresh) = read.remove(&agent.id) else {
            return false;
        };
        let same = fresh.generation == agent.generation
            && fresh.org_id == agent.org_id
            && fresh.spec.sha() == agent.spec.sha()
            && fresh.last_applied.as_ref().map(|l| l.sha())
                == agent.last_applied.as_ref().map(|l| l.sha());
        if same {
            agent.spec = fresh.spec;
            agent.last_applied = fresh.last_applied;
        } else {
            tracing::info!(agent = %agent.id, "saved during the pass: left to the pass its save wakes");
        }
        same
    });
    Ok(())
}

/// Lists with one lane; a quarantined key is probed at most once per probe interval. Items the
/// controller cannot read come back apart, with their id and whatever top-level fields could be
/// read, so one hostile assistant fails only its own agent.
async fn list(
    lane: &Lane,
    stop: &CancellationToken,
    mut each: impl FnMut(ActualAssistant) -> ActualAssistant,
) -> Result<(Vec<ActualAssistant>, Vec<Unreadable>), CallError> {
    if let Some(r) = lane.rejection().filter(|_| !lane.may_probe()) {
        return Err(CallError::Quarantined {
            fingerprint: lane.fingerprint().to_owned(),
            status: r.status,
            message: r.message,
        });
    }
    lane.list_all_into(ASSISTANT, stop, |item| {
        each(ActualAssistant::from_item(item))
    })
    .await
}

/// Reads again, with one GET, a listed assistant whose text the pass dropped for its memo
/// digest, now that the decision needs it (a duplicate came on a later page, or the agent's
/// texts changed since). What the GET answers takes the listed one's place; an assistant it
/// cannot read leaves its agent undecided this pass, saying why.
async fn read_assistant(
    lane: &Lane,
    id: &str,
    assistants: &mut Vec<ActualAssistant>,
    agents: &mut Vec<DesiredAgent>,
    early: &mut Vec<Done>,
    stop: &CancellationToken,
) {
    let Some(at) = assistants.iter().position(|a| a.id == id) else {
        return;
    };
    let owner = assistants[at].managed_agent();
    let err = match lane.get(ASSISTANT, id, stop).await {
        Ok(found) => match ActualAssistant::from_value(found) {
            Some(a) if a.id == id => {
                assistants[at] = a;
                return;
            }
            _ => CallError::from(crate::vapi::VapiError::Decode(format!(
                "GET /assistant/{id} did not answer with that assistant"
            ))),
        },
        Err(e) => e,
    };
    assistants.remove(at);
    agents.retain(|a| {
        let holds = Some(a.id) == owner || a.recorded_assistant_id.as_deref() == Some(id);
        if holds && !matches!(err, CallError::Stopped) {
            early.push(Done::status(Outcome::call_failed(
                a.id,
                a.generation,
                "read the listed assistant again",
                &err,
                lane.fingerprint(),
            )));
        }
        !holds
    });
}

/// An agent whose assistant is listed but cannot be read (its marker or its status names it) is
/// failed, not planned: planned without it, it would get a second assistant.
fn hold_unreadable(
    agents: Vec<DesiredAgent>,
    unreadable: &[Unreadable],
    early: &mut Vec<Done>,
) -> Vec<DesiredAgent> {
    if unreadable.is_empty() {
        return agents;
    }
    let owner = |u: &Unreadable| {
        let shell = ActualAssistant::from_parts(
            u.id.clone().unwrap_or_default(),
            String::new(),
            u.fields.clone(),
        );
        shell.managed_agent()
    };
    let owners: Vec<_> = unreadable.iter().map(|u| (u, owner(u))).collect();
    let mut rest = Vec::with_capacity(agents.len());
    for a in agents {
        let holder = owners.iter().find(|(u, owner)| {
            *owner == Some(a.id) || (u.id.is_some() && u.id == a.recorded_assistant_id)
        });
        let Some((u, _)) = holder else {
            rest.push(a);
            continue;
        };
        early.push(Done::status(Outcome::failed(
            a.id,
            a.generation,
            Reason::VapiBadResponse,
            format!("Vapi lists this agent's {u}. Nothing was sent (a create would duplicate it); fix or delete that assistant in Vapi, or fix the spec if it caused it."),
            false,
        )));
    }
    rest
}
