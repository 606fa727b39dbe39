//! PURE reconcile core: desired agents + listed assistants → one [`Decision`] per agent.
//!
//! No I/O lives here (no tokio, sqlx or reqwest): the controller feeds in what it read and
//! executes what comes out, so every rule below is a plain `#[test]`.
//!
//! Rules, in order, for one agent:
//! 1. Its spec must be something the controller can send ([`desired_body`]); otherwise the agent
//!    is [`Action::Invalid`] and nothing is sent to Vapi.
//! 2. Its assistant is the one recorded in its status, if Vapi still lists it; else the oldest
//!    assistant whose ownership marker names the agent (adoption: a create whose answer was lost,
//!    or a lost status row, never turns into a second assistant); else there is none.
//! 3. No assistant: [`Action::Create`], or [`Action::Recreate`] when one was recorded (it is gone).
//! 4. Otherwise the desired body is compared with the assistant on parsed JSON, key by key; only
//!    keys the controller sets are looked at, so server-added fields never count as drift. Any
//!    difference gives [`Action::Patch`] carrying the differing **top-level keys whole**, because
//!    Vapi replaces each sent key wholesale (a partial `model` would wipe the system prompt).

pub mod json;

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use uuid::Uuid;

/// The `metadata.managedBy` value that marks an assistant as this controller's.
pub const MANAGED_BY: &str = "vapi-reconciler";

/// Fields Vapi assigns; a spec that sets them is refused rather than silently stripped.
const SERVER_FIELDS: &[&str] = &[
    "id",
    "orgId",
    "createdAt",
    "updatedAt",
    "isServerUrlSecretSet",
    "latestVersion",
    "modelDeprecations",
    "analyticsMetadata",
    "isDeleted",
    "workflowIds",
];

/// One agent as the writer saved it, plus what the controller recorded about it.
#[derive(Debug, Clone)]
pub struct DesiredAgent {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    /// As stored in `agents.spec` (any JSON: it is checked here), or why it could not be read.
    pub spec: Result<Value, String>,
    pub generation: i64,
    pub recorded_assistant_id: Option<String>,
}

/// One assistant as `GET /assistant` returned it.
#[derive(Debug, Clone)]
pub struct ActualAssistant {
    pub id: String,
    /// Vapi's ISO-8601 timestamp (fixed millisecond format, so string order is time order).
    pub created_at: String,
    pub body: Map<String, Value>,
}

impl ActualAssistant {
    /// Reads a listed object; `None` when it lacks an `id` (then it cannot be acted on anyway).
    pub fn from_value(value: Value) -> Option<Self> {
        let Value::Object(body) = value else {
            return None;
        };
        let id = body.get("id")?.as_str()?.to_owned();
        let created_at = body
            .get("createdAt")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Some(Self {
            id,
            created_at,
            body,
        })
    }

    /// The agent this assistant's ownership marker names, if it carries our marker.
    pub fn managed_agent(&self) -> Option<Uuid> {
        let metadata = self.body.get("metadata")?.as_object()?;
        if metadata.get("managedBy")?.as_str()? != MANAGED_BY {
            return None;
        }
        metadata.get("agentId")?.as_str()?.parse().ok()
    }
}

/// What to do for one agent.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The assistant already matches; `adopted` when it was found by marker, not by record.
    InSync {
        assistant_id: String,
        adopted: bool,
    },
    Create {
        body: Map<String, Value>,
    },
    /// The recorded assistant is gone from Vapi.
    Recreate {
        previous_id: String,
        body: Map<String, Value>,
    },
    Patch {
        assistant_id: String,
        /// Whole top-level keys, ready to send.
        patch: Map<String, Value>,
        /// Leaf paths that differ, for status and logs.
        drift: Vec<String>,
        adopted: bool,
    },
    /// The spec cannot be sent; every problem, each naming the field.
    Invalid {
        problems: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub agent_id: Uuid,
    pub generation: i64,
    pub action: Action,
}

/// Decides for every agent against one listing of the assistants its credential can see.
pub fn plan(agents: &[DesiredAgent], assistants: &[ActualAssistant]) -> Vec<Decision> {
    let index = Index::new(assistants);
    agents.iter().map(|agent| decide(agent, &index)).collect()
}

/// Lookup tables over one listing.
pub struct Index<'a> {
    by_id: HashMap<&'a str, &'a ActualAssistant>,
    /// Marked assistants per agent, oldest first.
    by_agent: HashMap<Uuid, Vec<&'a ActualAssistant>>,
}

impl<'a> Index<'a> {
    pub fn new(assistants: &'a [ActualAssistant]) -> Self {
        let mut by_agent: HashMap<Uuid, Vec<&ActualAssistant>> = HashMap::new();
        for a in assistants {
            if let Some(agent) = a.managed_agent() {
                by_agent.entry(agent).or_default().push(a);
            }
        }
        for list in by_agent.values_mut() {
            list.sort_by(|x, y| x.created_at.cmp(&y.created_at).then(x.id.cmp(&y.id)));
        }
        Self {
            by_id: assistants.iter().map(|a| (a.id.as_str(), a)).collect(),
            by_agent,
        }
    }
}

pub fn decide(agent: &DesiredAgent, index: &Index<'_>) -> Decision {
    let action = match desired_body(agent) {
        Err(problems) => Action::Invalid { problems },
        Ok(body) => {
            let recorded = agent.recorded_assistant_id.as_deref();
            let found = recorded
                .and_then(|id| index.by_id.get(id))
                .map(|a| (*a, false))
                .or_else(|| {
                    let marked = index.by_agent.get(&agent.id)?;
                    marked.first().map(|a| (*a, true))
                });
            match (found, recorded) {
                (Some((assistant, adopted)), _) => compare(body, assistant, adopted),
                (None, Some(previous)) => Action::Recreate {
                    previous_id: previous.to_owned(),
                    body,
                },
                (None, None) => Action::Create { body },
            }
        }
    };
    Decision {
        agent_id: agent.id,
        generation: agent.generation,
        action,
    }
}

fn compare(body: Map<String, Value>, assistant: &ActualAssistant, adopted: bool) -> Action {
    let mut drift = Vec::new();
    let mut patch = Map::new();
    for (key, desired) in body {
        let before = drift.len();
        json::diff_paths(&desired, assistant.body.get(&key), &key, &mut drift);
        if drift.len() > before {
            patch.insert(key, desired);
        }
    }
    let assistant_id = assistant.id.clone();
    if patch.is_empty() {
        Action::InSync {
            assistant_id,
            adopted,
        }
    } else {
        Action::Patch {
            assistant_id,
            patch,
            drift,
            adopted,
        }
    }
}

/// The full assistant body the controller wants for this agent: the spec, the agent's name and
/// the ownership marker. Errors list every structural problem, each naming the field.
pub fn desired_body(agent: &DesiredAgent) -> Result<Map<String, Value>, Vec<String>> {
    let spec = match &agent.spec {
        Ok(Value::Object(spec)) => spec,
        Ok(other) => {
            return Err(vec![format!(
                "spec must be a JSON object, found {}",
                json_type(other)
            )]);
        }
        Err(e) => return Err(vec![format!("spec cannot be read: {e}")]),
    };
    let mut problems = Vec::new();
    if spec.contains_key("name") {
        problems.push("spec.name is owned by the controller: set agents.name instead".to_owned());
    }
    if spec.contains_key("metadata") {
        problems.push(
            "spec.metadata is owned by the controller (it carries the ownership marker): remove it"
                .to_owned(),
        );
    }
    for field in SERVER_FIELDS.iter().filter(|f| spec.contains_key(**f)) {
        problems.push(format!(
            "spec.{field} is assigned by Vapi and cannot be set: remove it"
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut body = spec.clone();
    body.insert("name".to_owned(), Value::String(agent.name.clone()));
    body.insert(
        "metadata".to_owned(),
        json!({
            "managedBy": MANAGED_BY,
            "agentId": agent.id.to_string(),
            "orgId": agent.org_id.to_string(),
        }),
    );
    Ok(body)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
