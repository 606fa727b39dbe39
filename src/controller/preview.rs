//! What a pass would do, without doing it: the same survey a pass makes (one query, one listing
//! per key, the pure plan), rendered as changes. Backs `vapi-reconciler plan` and `GET /v1/plan`.

use uuid::Uuid;

use super::apply::Gate;
use super::pass::{PassContext, PassError, Scope};
use super::survey::survey;
use crate::reconcile::guard::{self, Impact};
use crate::reconcile::{Action, Drift, Mode, StrayAction, describe_normalization};

/// Which agents to show.
#[derive(Debug, Clone, Default)]
pub struct PlanFilter {
    pub org: Option<Uuid>,
    pub agent: Option<Uuid>,
}

impl PlanFilter {
    fn admits(&self, org: Uuid, agent: Uuid) -> bool {
        self.org.is_none_or(|o| o == org) && self.agent.is_none_or(|a| a == agent)
    }

    fn is_empty(&self) -> bool {
        self.org.is_none() && self.agent.is_none()
    }
}

/// One agent's planned change.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    pub agent_id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    /// `create`, `recreate`, `patch`, `delete`, `adopt` or `delete-duplicates`.
    pub action: &'static str,
    pub assistant_id: Option<String>,
    /// For a patch: the differing fields, each classified.
    pub fields: Vec<Drift>,
    pub duplicates: Vec<String>,
    /// Voice rewrites the write would carry.
    pub voice: Vec<String>,
    /// For a plan of one agent: the whole body the assistant should have, and the assistant as
    /// Vapi has it now (one GET; absent when there is none), so a diff can show both sides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<serde_json::Value>,
}

/// An agent the plan cannot act on, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Blocker {
    pub agent_id: Uuid,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PlanView {
    pub changes: Vec<Change>,
    /// Marked assistants whose agent is gone, to be deleted now (`delete`) or later.
    pub orphans: Vec<serde_json::Value>,
    /// Agents whose spec is refused, whose key is unusable, or whose listing failed.
    pub blocked_agents: Vec<Blocker>,
    /// Agents left alone on purpose (observe-only, paused, dry-run) that differ.
    pub not_enforced: Vec<Uuid>,
    pub guard: Impact,
    /// The guard would stop this pass until an operator confirms.
    pub guard_exceeded: bool,
    /// Agents that wait for a tool (its change is among `tool_changes`, or it is failing there).
    pub waiting_agents: Vec<Blocker>,
    /// Tools the tools stage would create, patch, recreate or delete, and those it cannot act on.
    pub tool_changes: Vec<ResourceChange>,
    /// What the guard counts of the tools (deletes and recreates, against the tool fleet).
    pub tool_guard: Impact,
    /// Phone numbers that would be re-pointed (or cannot be found).
    pub number_changes: Vec<ResourceChange>,
}

/// One tool's or phone number's planned change.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ResourceChange {
    /// `tool` or `phone_number`.
    pub kind: &'static str,
    /// The row (`tools.id`, `phone_numbers.id`).
    pub id: Uuid,
    pub org_id: Uuid,
    /// The tool's name, or the number.
    pub name: String,
    /// `create`, `recreate`, `patch`, `delete`, `adopt`, `delete-duplicates`, `point`, `unbind`,
    /// or, for what cannot be acted on, `invalid`, `blocked`, `not-found`, `ambiguous`.
    pub action: &'static str,
    /// The Vapi object it concerns.
    pub vapi_id: Option<String>,
    pub fields: Vec<Drift>,
    pub detail: String,
}

impl PlanView {
    /// Terraform's `-detailed-exitcode`: 0 nothing to do, 2 changes pending, 1 errors.
    pub fn exit_code(&self) -> u8 {
        let failing =
            |c: &ResourceChange| matches!(c.action, "invalid" | "not-found" | "ambiguous");
        if !self.blocked_agents.is_empty()
            || self.tool_changes.iter().any(failing)
            || self.number_changes.iter().any(failing)
        {
            1
        } else if !self.changes.is_empty()
            || !self.waiting_agents.is_empty()
            || !self.tool_changes.is_empty()
            || !self.number_changes.is_empty()
            || self.orphans.iter().any(|o| o["action"] == "delete")
        {
            2
        } else {
            0
        }
    }
}

struct NoWrites;

impl Gate for NoWrites {
    fn may_write(&self) -> bool {
        false
    }
}

pub(super) async fn preview(
    ctx: &PassContext<'_>,
    filter: &PlanFilter,
) -> Result<PlanView, PassError> {
    let tools = super::tools::survey_tools(ctx).await?;
    let survey = survey(ctx, Scope::All, true).await?;
    let enforcing = |mode: Mode| mode == Mode::Enforce && !ctx.settings.dry_run;
    let mut view = PlanView {
        waiting_agents: Vec::new(),
        tool_changes: tool_changes(&tools, filter),
        tool_guard: super::tools::assess(&tools.groups, ctx),
        number_changes: super::numbers::preview(ctx, filter).await?,
        changes: Vec::new(),
        orphans: Vec::new(),
        blocked_agents: Vec::new(),
        not_enforced: Vec::new(),
        guard: guard::assess(&survey.plan, ctx.settings.dry_run, ctx.settings.guard),
        guard_exceeded: false,
    };
    view.guard_exceeded = view.guard.exceeded();
    for (i, d) in survey.plan.decisions.iter().enumerate() {
        if !filter.admits(d.org_id, d.agent_id) {
            continue;
        }
        let (action, assistant_id, fields) = match &d.action {
            Action::Create { .. } => ("create", None, Vec::new()),
            Action::Recreate { previous_id, .. } => {
                ("recreate", Some(previous_id.clone()), Vec::new())
            }
            Action::Patch {
                assistant_id,
                drift,
                ..
            } => ("patch", Some(assistant_id.clone()), drift.clone()),
            Action::Delete { assistant_ids } => {
                ("delete", Some(assistant_ids.join(",")), Vec::new())
            }
            Action::InSync {
                assistant_id,
                adopted: true,
            } => ("adopt", Some(assistant_id.clone()), Vec::new()),
            Action::Invalid { problems } => {
                view.blocked_agents.push(Blocker {
                    agent_id: d.agent_id,
                    reason: "InvalidSpec",
                    message: problems.join("; "),
                });
                continue;
            }
            _ if !d.duplicates.is_empty() => ("delete-duplicates", None, Vec::new()),
            _ => continue,
        };
        if !enforcing(d.mode) {
            view.not_enforced.push(d.agent_id);
            continue;
        }
        // One agent asked for: both sides of its diff. The listing kept no body, so the
        // assistant is read once more (a GET, as a focused pass reads one).
        let (desired, actual) = match (filter.agent, &assistant_id, survey.decision_lanes.get(i)) {
            (Some(_), Some(id), Some(lane)) if action == "patch" => (
                d.desired.clone().map(serde_json::Value::Object),
                lane.get(super::ASSISTANT, id, ctx.cancel).await.ok(),
            ),
            (Some(_), _, _) => (d.desired.clone().map(serde_json::Value::Object), None),
            _ => (None, None),
        };
        view.changes.push(Change {
            desired,
            actual,
            agent_id: d.agent_id,
            org_id: d.org_id,
            name: survey.names.get(&d.agent_id).cloned().unwrap_or_default(),
            action,
            assistant_id,
            fields,
            duplicates: d.duplicates.clone(),
            voice: d
                .normalizations
                .iter()
                .map(describe_normalization)
                .collect(),
        });
    }
    for done in &survey.early {
        if let Some(o) = done.status.as_ref() {
            let list = if o.reason == super::Reason::WaitingForTool {
                &mut view.waiting_agents
            } else {
                &mut view.blocked_agents
            };
            list.push(Blocker {
                agent_id: o.agent_id,
                reason: o.reason.as_str(),
                message: o.message.clone(),
            });
        }
    }
    if filter.is_empty() {
        view.orphans = survey
            .plan
            .strays
            .iter()
            .map(|s| {
                let action = match s.action {
                    StrayAction::Delete if !ctx.settings.dry_run => "delete",
                    StrayAction::Delete | StrayAction::Wait { .. } => "wait",
                    StrayAction::Keep => "keep",
                };
                serde_json::json!({
                    "assistantId": s.assistant_id,
                    "agentId": s.agent_id,
                    "firstSeen": s.first_seen,
                    "action": action,
                })
            })
            .collect();
    }
    Ok(view)
}

fn tool_changes(tools: &super::tools::ToolSurvey, filter: &PlanFilter) -> Vec<ResourceChange> {
    use crate::reconcile::tools::ToolAction;
    let mut out = Vec::new();
    for d in tools.groups.iter().flat_map(|(_, p)| &p.decisions) {
        if filter.agent.is_some() || filter.org.is_some_and(|o| o != d.org_id) {
            continue;
        }
        let (action, vapi_id, fields, detail) = match &d.action {
            ToolAction::Create { .. } => ("create", None, Vec::new(), String::new()),
            ToolAction::Recreate { previous_id, .. } => (
                "recreate",
                Some(previous_id.clone()),
                Vec::new(),
                "gone from Vapi; the assistants calling it take the new id".to_owned(),
            ),
            ToolAction::Patch { tool_id, drift, .. } => {
                ("patch", Some(tool_id.clone()), drift.clone(), String::new())
            }
            ToolAction::Delete { tool_ids } => (
                "delete",
                Some(tool_ids.join(",")),
                Vec::new(),
                String::new(),
            ),
            ToolAction::InSync {
                tool_id,
                adopted: true,
            } => ("adopt", Some(tool_id.clone()), Vec::new(), String::new()),
            ToolAction::Invalid { problems } => ("invalid", None, Vec::new(), problems.join("; ")),
            ToolAction::StillReferenced { agents } => (
                "blocked",
                None,
                Vec::new(),
                format!("deleted but still called by {}", agents.join(", ")),
            ),
            _ if !d.duplicates.is_empty() => (
                "delete-duplicates",
                None,
                Vec::new(),
                d.duplicates.join(","),
            ),
            _ => continue,
        };
        out.push(ResourceChange {
            kind: "tool",
            id: d.tool_id,
            org_id: d.org_id,
            name: d.name.clone(),
            action,
            vapi_id,
            fields,
            detail,
        });
    }
    for s in &tools.early {
        out.push(ResourceChange {
            kind: "tool",
            id: s.id,
            org_id: Uuid::nil(),
            name: String::new(),
            action: "invalid",
            vapi_id: None,
            fields: Vec::new(),
            detail: s.message.clone(),
        });
    }
    out
}

/// The gate a preview runs under: it never writes.
pub(super) fn no_writes() -> &'static (dyn Gate + Sync) {
    &NoWrites
}
