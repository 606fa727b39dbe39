//! PURE tool core: desired tools + one listing of a key's tools → one [`ToolDecision`] per tool;
//! and the agents' tool references resolved to Vapi ids ([`resolve`]).
//!
//! **Ownership.** A Vapi tool has no `metadata` (see the OpenAPI), so the assistants' marker has
//! no place on it. Two ways stand in, by what the tool's type allows:
//! - A tool with a `server` (function, code, mcp, …) carries the marker in its own request
//!   headers: `server.headers["X-Vapi-Reconciler-Tool"]` = the `tools.id` of its row. The marker
//!   is in Vapi, not in our database, so it survives a lost create answer *and* a database
//!   restored from a backup: the tool is adopted by it, the oldest marked one kept and every other
//!   marked one deleted as a duplicate. The clinic backend sees the header on each webhook, which
//!   is harmless (a tool row's id is not a secret) and names the row that made the call.
//! - A tool without a `server` (transferCall, endCall, dtmf, …) can carry nothing. Its create
//!   follows the assistants' intent protocol: the intent (operation id, time) is committed before
//!   the POST; after a lost answer the plan adopts the one tool that nobody else claims, that was
//!   created at or after the intent, and whose body equals the intended body exactly. A database
//!   restored from a backup has lost that intent: such a tool is created again, and the old one,
//!   which nothing marks, is left as it is and counted unmanaged (a name is not unique in Vapi,
//!   so adopting by name or body alone could take a tool someone else made).
//!
//! Rules for one tool, in order: a deleted tool still referenced by a live agent is
//! [`ToolAction::StillReferenced`] (never deleted under an assistant that calls it); a deleted
//! tool has every tool it owns deleted; an unsendable spec is [`ToolAction::Invalid`]; then the
//! recorded tool, else the marked (or intent-matched) one, is compared three-way exactly as an
//! assistant is ([`super::compare`]), and a difference is a PATCH of the differing top-level keys
//! whole — the tool keeps its id, so the assistants calling it keep pointing at it. No tool: a
//! create (a recreate when one was recorded), unless an unknown create may still land.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{
    Action, ActualAssistant, CreateIntent, Drift, LastApplied, Mode, compare, json, validate::show,
};

/// The request header that marks a tool with a `server` as this controller's.
pub const TOOL_MARKER_HEADER: &str = "X-Vapi-Reconciler-Tool";

/// Fields Vapi assigns to a tool; a spec that sets them is refused.
const TOOL_SERVER_FIELDS: &[&str] = &["id", "orgId", "createdAt", "updatedAt"];

/// One tool as the writer saved it, plus what the controller recorded about it.
#[derive(Debug, Clone)]
pub struct DesiredTool {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub spec: Result<Value, String>,
    pub generation: i64,
    pub mode: Mode,
    pub deleted: bool,
    pub recorded_id: Option<String>,
    pub last_applied: Option<LastApplied>,
    pub intent: Option<CreateIntent>,
}

/// What to do for one tool.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolAction {
    InSync {
        tool_id: String,
        adopted: bool,
    },
    Create {
        body: Map<String, Value>,
    },
    /// The recorded tool is gone from Vapi: a new one, whose id the assistants then take.
    Recreate {
        previous_id: String,
        body: Map<String, Value>,
    },
    AwaitCreate {
        operation_id: Uuid,
        until: DateTime<Utc>,
    },
    Patch {
        tool_id: String,
        patch: Map<String, Value>,
        drift: Vec<Drift>,
        adopted: bool,
    },
    /// The tool is deleted and these tools of it still exist.
    Delete {
        tool_ids: Vec<String>,
    },
    Deleted,
    Invalid {
        problems: Vec<String>,
    },
    /// The tool is deleted but live agents still call it: nothing is deleted.
    StillReferenced {
        agents: Vec<String>,
    },
}

impl ToolAction {
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Self::Create { .. } | Self::Recreate { .. } | Self::Patch { .. } | Self::Delete { .. }
        )
    }

    pub fn verb(&self) -> &'static str {
        match self {
            Self::InSync { adopted: true, .. } => "adopt",
            Self::Create { .. } => "create",
            Self::Recreate { .. } => "recreate",
            Self::AwaitCreate { .. } => "await-create",
            Self::Patch { .. } => "patch",
            Self::Delete { .. } => "delete",
            Self::InSync { .. } | Self::Deleted | Self::Invalid { .. } => "none",
            Self::StillReferenced { .. } => "blocked",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolDecision {
    pub tool_id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub generation: i64,
    pub mode: Mode,
    pub action: ToolAction,
    /// Other tools marked as this one's, to be deleted.
    pub duplicates: Vec<String>,
    /// The outstanding create intent this decision settles (found, or to be replaced).
    pub intent: Option<CreateIntent>,
    /// The full body the tool should have, when the spec can be sent.
    pub desired: Option<Map<String, Value>>,
}

/// Everything the tool stage would do against one key's listing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolPlan {
    pub decisions: Vec<ToolDecision>,
    /// Listed tools that are the controller's (marked, recorded or adopted).
    pub managed: usize,
    /// Listed tools nobody here claims: never touched.
    pub unmanaged: usize,
}

pub struct ToolPlanInput<'a> {
    pub tools: &'a [DesiredTool],
    pub listed: &'a [ActualAssistant],
    /// Per tool row: the live agents that reference it by name.
    pub referenced_by: &'a HashMap<Uuid, Vec<String>>,
    /// Every tool row that exists under any key (a marked tool of another row is never adopted).
    pub known_tools: &'a HashSet<Uuid>,
    pub now: DateTime<Utc>,
    pub create_grace: TimeDelta,
}

/// The tool row a listed tool's marker header names.
pub fn tool_marker(body: &Map<String, Value>) -> Option<Uuid> {
    let headers = body.get("server")?.get("headers")?.as_object()?;
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(TOOL_MARKER_HEADER))
        .and_then(|(_, v)| v.as_str())
        .and_then(|s| s.parse().ok())
}

/// The body the controller wants for a tool: the spec, checked against Vapi's tool DTOs, with the
/// marker header added when the tool has a `server`. Errors name each field and value.
pub fn desired_tool_body(tool: &DesiredTool) -> Result<Map<String, Value>, Vec<String>> {
    let spec = match &tool.spec {
        Ok(Value::Object(spec)) => spec,
        Ok(other) => {
            return Err(vec![format!(
                "tools.spec must be a JSON object, found {}",
                show(other)
            )]);
        }
        Err(e) => return Err(vec![format!("tools.spec cannot be read: {e}")]),
    };
    let limits = super::validate::spec_limits(spec);
    if !limits.is_empty() {
        return Err(limits.into_iter().map(|m| format!("tools.{m}")).collect());
    }
    let mut problems = Vec::new();
    for field in TOOL_SERVER_FIELDS.iter().filter(|f| spec.contains_key(**f)) {
        problems.push(format!(
            "tools.spec.{field} is assigned by Vapi and cannot be set: remove it"
        ));
    }
    let mut body = spec.clone();
    if let Some(server) = spec.get("server") {
        match server {
            Value::Object(server) => {
                let mut server = server.clone();
                match server.get("url") {
                    Some(Value::String(url)) if !is_allowed_url(url) => problems.push(format!(
                        "tools.spec.server.url must be an absolute https URL (http only to a loopback address), found {}",
                        show(&Value::String(without_userinfo(url)))
                    )),
                    _ => {}
                }
                let mut headers = match server.get("headers") {
                    None | Some(Value::Null) => Map::new(),
                    Some(Value::Object(h)) => h.clone(),
                    Some(other) => {
                        problems.push(format!(
                            "tools.spec.server.headers must be an object, found {}",
                            show(other)
                        ));
                        Map::new()
                    }
                };
                if headers
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case(TOOL_MARKER_HEADER))
                {
                    problems.push(format!(
                        "tools.spec.server.headers.{TOOL_MARKER_HEADER} is owned by the controller (it marks the tool as managed): remove it"
                    ));
                }
                headers.insert(
                    TOOL_MARKER_HEADER.to_owned(),
                    Value::String(tool.id.to_string()),
                );
                server.insert("headers".to_owned(), Value::Object(headers));
                body.insert("server".to_owned(), Value::Object(server));
            }
            other => problems.push(format!(
                "tools.spec.server must be an object, found {}",
                show(other)
            )),
        }
    }
    if problems.is_empty() {
        if let Err(msgs) = crate::simulator::validate_tool(&body) {
            problems.extend(msgs.into_iter().map(|m| format!("tools.spec: {m}")));
        }
    }
    if problems.is_empty() {
        Ok(body)
    } else {
        Err(problems)
    }
}

/// The URL with any `user:password@` replaced: a message never repeats a credential.
fn without_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((_, host)) if !scheme.is_empty() => format!("{scheme}://***@{host}{}", &rest[end..]),
        _ => url.to_owned(),
    }
}

/// `https://…`, or `http://` to a loopback host (the simulator's own, and a local test backend).
fn is_allowed_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("https://") {
        return !rest.is_empty();
    }
    let Some(rest) = lower.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split(']').next().map(|h| &h[1..]).unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Decides for every tool against one listing of the tools a key can see.
pub fn plan_tools(input: &ToolPlanInput<'_>) -> ToolPlan {
    let mut by_marker: HashMap<Uuid, Vec<&ActualAssistant>> = HashMap::new();
    let by_id: HashMap<&str, &ActualAssistant> =
        input.listed.iter().map(|t| (t.id.as_str(), t)).collect();
    for t in input.listed {
        if let Some(m) = tool_marker(t.body()) {
            by_marker.entry(m).or_default().push(t);
        }
    }
    for list in by_marker.values_mut() {
        list.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    }
    // Listed tools some row already claims (recorded or marked): never adopted by another row.
    let mut claimed: HashSet<&str> = input
        .tools
        .iter()
        .filter_map(|t| t.recorded_id.as_deref())
        .filter(|id| by_id.contains_key(id))
        .collect();
    for (m, list) in &by_marker {
        if input.known_tools.contains(m) {
            claimed.extend(list.iter().map(|t| t.id.as_str()));
        }
    }
    let mut managed: HashSet<&str> = claimed.clone();
    let mut decisions = Vec::with_capacity(input.tools.len());
    for tool in input.tools {
        let d = decide(tool, input, &by_id, &by_marker, &claimed);
        if let ToolAction::InSync { tool_id, .. } | ToolAction::Patch { tool_id, .. } = &d.action {
            if let Some(t) = by_id.get(tool_id.as_str()) {
                managed.insert(t.id.as_str());
                claimed.insert(t.id.as_str());
            }
        }
        decisions.push(d);
    }
    ToolPlan {
        decisions,
        managed: managed.len(),
        unmanaged: input.listed.len() - managed.len(),
    }
}

fn decide<'l>(
    tool: &DesiredTool,
    input: &ToolPlanInput<'l>,
    by_id: &HashMap<&str, &'l ActualAssistant>,
    by_marker: &HashMap<Uuid, Vec<&'l ActualAssistant>>,
    claimed: &HashSet<&str>,
) -> ToolDecision {
    let mut d = ToolDecision {
        tool_id: tool.id,
        org_id: tool.org_id,
        name: tool.name.clone(),
        generation: tool.generation,
        mode: tool.mode,
        action: ToolAction::Deleted,
        duplicates: Vec::new(),
        intent: None,
        desired: None,
    };
    let recorded = tool
        .recorded_id
        .as_deref()
        .and_then(|id| by_id.get(id).copied());
    let marked: &[&ActualAssistant] = by_marker.get(&tool.id).map_or(&[], Vec::as_slice);
    let waiting = tool
        .intent
        .as_ref()
        .filter(|i| input.now < i.started_at + input.create_grace);
    if tool.deleted {
        if let Some(agents) = input.referenced_by.get(&tool.id).filter(|a| !a.is_empty()) {
            d.action = ToolAction::StillReferenced {
                agents: agents.clone(),
            };
            return d;
        }
        let mut ids: Vec<String> = recorded.iter().map(|t| t.id.clone()).collect();
        for t in marked {
            if !ids.contains(&t.id) {
                ids.push(t.id.clone());
            }
        }
        d.action = match (ids.is_empty(), waiting) {
            (true, Some(i)) => ToolAction::AwaitCreate {
                operation_id: i.operation_id,
                until: i.started_at + input.create_grace,
            },
            (true, None) => {
                d.intent = tool.intent.clone();
                ToolAction::Deleted
            }
            (false, _) => ToolAction::Delete { tool_ids: ids },
        };
        return d;
    }
    let body = match desired_tool_body(tool) {
        Ok(b) => b,
        Err(problems) => {
            d.action = ToolAction::Invalid { problems };
            return d;
        }
    };
    // The tool: the recorded one, else the oldest marked one, else (a tool that cannot carry the
    // marker, after a lost create answer) the one unclaimed tool created since the intent with
    // exactly the intended body.
    let adopted_unmarked = || {
        let intent = tool.intent.as_ref()?;
        if body.contains_key("server") {
            return None;
        }
        let since = intent.started_at - TimeDelta::seconds(5);
        let mut found = input.listed.iter().filter(|t| {
            !claimed.contains(t.id.as_str())
                && tool_marker(t.body()).is_none()
                && DateTime::parse_from_rfc3339(&t.created_at)
                    .is_ok_and(|c| c.with_timezone(&Utc) >= since)
                && comparable_eq(&body, t.body())
        });
        let first = found.next()?;
        // Two identical candidates: neither is provably ours.
        found.next().is_none().then_some(first)
    };
    let (current, adopted) = match recorded {
        Some(t) => (Some(t), false),
        None => match marked.first() {
            Some(t) => (Some(*t), true),
            None => (adopted_unmarked(), true),
        },
    };
    d.duplicates = marked
        .iter()
        .filter(|t| current.is_none_or(|c| c.id != t.id))
        .map(|t| t.id.clone())
        .collect();
    d.desired = Some(body.clone());
    let Some(current) = current else {
        d.action = match (waiting, &tool.recorded_id) {
            (Some(i), _) => ToolAction::AwaitCreate {
                operation_id: i.operation_id,
                until: i.started_at + input.create_grace,
            },
            (None, Some(previous)) => {
                d.intent = tool.intent.clone();
                ToolAction::Recreate {
                    previous_id: previous.clone(),
                    body,
                }
            }
            (None, None) => {
                d.intent = tool.intent.clone();
                ToolAction::Create { body }
            }
        };
        return d;
    };
    if adopted {
        d.intent = tool.intent.clone();
    }
    let applied_now = tool.last_applied.as_ref().map_or(
        json::TextMatch {
            equal: false,
            within: false,
        },
        |l| l.matches(&body),
    );
    d.action = match compare(
        &body,
        current,
        adopted,
        tool.last_applied.as_ref(),
        applied_now,
    ) {
        Action::Patch {
            assistant_id,
            patch,
            drift,
            adopted,
        } => ToolAction::Patch {
            tool_id: assistant_id,
            patch,
            drift,
            adopted,
        },
        _ => ToolAction::InSync {
            tool_id: current.id.clone(),
            adopted,
        },
    };
    d
}

/// The intended body equals what Vapi lists, ignoring what Vapi assigns.
fn comparable_eq(body: &Map<String, Value>, listed: &Map<String, Value>) -> bool {
    let mut paths = Vec::new();
    for (k, v) in body {
        json::diff_paths(v, listed.get(k), k, &mut paths);
    }
    paths.is_empty()
}

/// How one agent's tool references resolve.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// The Vapi ids, in the agent's order.
    Ids(Vec<String>),
    /// The first reference that cannot be resolved yet, and why.
    Waiting { tool: String, why: String },
}

/// What the controller knows of a tool an agent may reference (from `tool_status`).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolState {
    /// The Vapi id, when the tool exists there at its current generation.
    pub vapi_id: Option<String>,
    /// Why it cannot be used yet, when it cannot (its state and reason).
    pub why: String,
}

/// Resolves an agent's tool names (in order) against the tools of its organization.
pub fn resolve(names: &[String], tools: Option<&HashMap<String, ToolState>>) -> Resolved {
    let mut ids = Vec::with_capacity(names.len());
    for name in names {
        match tools.and_then(|t| t.get(name.as_str())) {
            Some(ToolState {
                vapi_id: Some(id), ..
            }) => ids.push(id.clone()),
            Some(t) => {
                return Resolved::Waiting {
                    tool: name.clone(),
                    why: t.why.clone(),
                };
            }
            None => {
                return Resolved::Waiting {
                    tool: name.clone(),
                    why: "no live tool of the organization has this name".to_owned(),
                };
            }
        }
    }
    Resolved::Ids(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(spec: Value) -> DesiredTool {
        DesiredTool {
            id: Uuid::from_u128(7),
            org_id: Uuid::from_u128(1),
            name: "bookClinicAppointment".into(),
            spec: Ok(spec),
            generation: 1,
            mode: Mode::Enforce,
            deleted: false,
            recorded_id: None,
            last_applied: None,
            intent: None,
        }
    }

    fn function_spec(url: &str) -> Value {
        json!({"type": "function", "function": {"name": "book"}, "server": {"url": url}})
    }

    fn listed(id: &str, created_at: &str, body: Value) -> ActualAssistant {
        let Value::Object(mut body) = body else {
            unreachable!()
        };
        body.insert("id".into(), json!(id));
        body.insert("createdAt".into(), json!(created_at));
        ActualAssistant::from_parts(id.into(), created_at.into(), body)
    }

    fn plan_one(t: &DesiredTool, listed: &[ActualAssistant]) -> ToolDecision {
        let refs = HashMap::new();
        let known = HashSet::from([t.id]);
        let now: DateTime<Utc> = "2026-12-02T12:00:00Z".parse().unwrap_or_default();
        plan_tools(&ToolPlanInput {
            tools: std::slice::from_ref(t),
            listed,
            referenced_by: &refs,
            known_tools: &known,
            now,
            create_grace: TimeDelta::minutes(5),
        })
        .decisions
        .remove(0)
    }

    #[test]
    fn a_server_tool_carries_the_marker_header() {
        let body = desired_tool_body(&tool(function_spec("https://clinic.example/book")))
            .unwrap_or_default();
        assert_eq!(tool_marker(&body), Some(Uuid::from_u128(7)));
    }

    #[test]
    fn urls_must_be_https_unless_loopback() {
        for (url, ok) in [
            ("https://clinic.example/book", true),
            ("http://127.0.0.1:8080/book", true),
            ("http://localhost/book", true),
            ("http://[::1]:9/x", true),
            ("http://clinic.example/book", false),
            ("http://127.0.0.1.evil.example/x", false),
            ("ftp://clinic.example", false),
            ("/book", false),
        ] {
            let got = desired_tool_body(&tool(function_spec(url)));
            assert_eq!(got.is_ok(), ok, "{url}: {got:?}");
            if !ok {
                let msg = got.err().unwrap_or_default().join("; ");
                assert!(
                    msg.contains("tools.spec.server.url") && msg.contains(url),
                    "{msg}"
                );
            }
        }
    }

    #[test]
    fn a_deep_tool_spec_is_refused_before_vapi() {
        let mut deep = json!("leaf");
        for _ in 0..40 {
            deep = json!({"x": deep});
        }
        let msgs = desired_tool_body(&tool(json!({"type": "function", "function": {"name": "b"},
                                                   "messages": [deep]})))
        .err()
        .unwrap_or_default();
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("tools.spec.messages nests")),
            "{msgs:?}"
        );
    }

    #[test]
    fn a_refused_url_never_repeats_its_credentials() {
        let msg = desired_tool_body(&tool(function_spec(
            "http://clinic:s3cr3t@clinic.example/b",
        )))
        .err()
        .unwrap_or_default()
        .join("; ");
        assert!(msg.contains("http://***@clinic.example/b"), "{msg}");
        assert!(!msg.contains("s3cr3t"), "{msg}");
    }

    #[test]
    fn setting_the_marker_or_vapi_fields_is_refused() {
        let spec = json!({"type": "function", "id": "x", "function": {"name": "b"},
                          "server": {"url": "https://a.example", "headers": {"x-vapi-reconciler-tool": "y"}}});
        let msgs = desired_tool_body(&tool(spec)).err().unwrap_or_default();
        assert!(msgs.iter().any(|m| m.contains("tools.spec.id")), "{msgs:?}");
        assert!(
            msgs.iter().any(|m| m.contains(TOOL_MARKER_HEADER)),
            "{msgs:?}"
        );
    }

    #[test]
    fn an_unknown_type_names_the_field() {
        let msgs = desired_tool_body(&tool(json!({"type": "teleport"})))
            .err()
            .unwrap_or_default();
        assert!(
            msgs.iter().any(|m| m.contains("type must be one of")),
            "{msgs:?}"
        );
    }

    #[test]
    fn adopts_the_oldest_marked_tool_and_deletes_the_others() {
        let t = tool(function_spec("https://a.example/b"));
        let body = Value::Object(desired_tool_body(&t).unwrap_or_default());
        let d = plan_one(
            &t,
            &[
                listed("t2", "2026-12-02T11:00:01.000Z", body.clone()),
                listed("t1", "2026-12-02T11:00:00.000Z", body),
            ],
        );
        assert_eq!(
            d.action,
            ToolAction::InSync {
                tool_id: "t1".into(),
                adopted: true
            }
        );
        assert_eq!(d.duplicates, vec!["t2".to_owned()]);
    }

    #[test]
    fn an_unmarked_tool_is_adopted_only_after_an_intent_and_when_unique() {
        let mut t = tool(json!({"type": "endCall"}));
        let same = || listed("e1", "2026-12-02T11:59:00.000Z", json!({"type": "endCall"}));
        assert!(matches!(
            plan_one(&t, &[same()]).action,
            ToolAction::Create { .. }
        ));
        t.intent = Some(CreateIntent {
            operation_id: Uuid::from_u128(9),
            generation: 1,
            started_at: "2026-12-02T11:58:00Z".parse().unwrap_or_default(),
        });
        assert!(matches!(
            plan_one(&t, &[same()]).action,
            ToolAction::InSync { adopted: true, .. }
        ));
        let twin = listed("e2", "2026-12-02T11:59:01.000Z", json!({"type": "endCall"}));
        assert!(matches!(
            plan_one(&t, &[same(), twin]).action,
            ToolAction::AwaitCreate { .. }
        ));
        let older = listed("e0", "2026-12-02T10:00:00.000Z", json!({"type": "endCall"}));
        assert!(matches!(
            plan_one(&t, &[older]).action,
            ToolAction::AwaitCreate { .. }
        ));
    }

    #[test]
    fn an_edit_patches_the_differing_keys_of_the_same_tool() {
        let mut t = tool(function_spec("https://a.example/b"));
        t.recorded_id = Some("t1".into());
        let old = Value::Object(desired_tool_body(&t).unwrap_or_default());
        t.spec = Ok(
            json!({"type": "function", "function": {"name": "book", "description": "Books"},
                           "server": {"url": "https://a.example/b"}}),
        );
        let d = plan_one(&t, &[listed("t1", "2026-12-02T11:00:00.000Z", old)]);
        let ToolAction::Patch { tool_id, patch, .. } = d.action else {
            panic!("expected a patch, got {:?}", d.action)
        };
        assert_eq!(tool_id, "t1");
        assert_eq!(patch.keys().collect::<Vec<_>>(), vec!["function"]);
    }

    #[test]
    fn a_missing_recorded_tool_is_recreated() {
        let mut t = tool(function_spec("https://a.example/b"));
        t.recorded_id = Some("gone".into());
        assert!(matches!(
            plan_one(&t, &[]).action,
            ToolAction::Recreate { ref previous_id, .. } if previous_id == "gone"
        ));
    }

    #[test]
    fn a_referenced_deleted_tool_is_not_deleted() {
        let mut t = tool(function_spec("https://a.example/b"));
        t.deleted = true;
        t.recorded_id = Some("t1".into());
        let body = Value::Object(desired_tool_body(&t).unwrap_or_default());
        let listing = [listed("t1", "2026-12-02T11:00:00.000Z", body)];
        let refs = HashMap::from([(t.id, vec!["Front desk".to_owned()])]);
        let known = HashSet::from([t.id]);
        let d = plan_tools(&ToolPlanInput {
            tools: std::slice::from_ref(&t),
            listed: &listing,
            referenced_by: &refs,
            known_tools: &known,
            now: Utc::now(),
            create_grace: TimeDelta::minutes(2),
        })
        .decisions
        .remove(0);
        assert_eq!(
            d.action,
            ToolAction::StillReferenced {
                agents: vec!["Front desk".into()]
            }
        );
        assert!(matches!(
            plan_one(&t, &listing).action,
            ToolAction::Delete { ref tool_ids } if tool_ids == &["t1".to_owned()]
        ));
    }

    #[test]
    fn references_resolve_in_order_or_name_the_first_missing() {
        let a = ToolState {
            vapi_id: Some("ta".into()),
            why: String::new(),
        };
        let b = ToolState {
            vapi_id: None,
            why: "failed (VapiRejected)".into(),
        };
        let tools = HashMap::from([("a".to_owned(), a), ("b".to_owned(), b)]);
        let tools = Some(&tools);
        assert_eq!(
            resolve(&["a".into(), "a".into()], tools),
            Resolved::Ids(vec!["ta".into(), "ta".into()])
        );
        assert_eq!(
            resolve(&["a".into(), "b".into()], tools),
            Resolved::Waiting {
                tool: "b".into(),
                why: "failed (VapiRejected)".into()
            }
        );
        assert!(matches!(
            resolve(&["zzz".into()], tools),
            Resolved::Waiting { ref tool, .. } if tool == "zzz"
        ));
    }
}
