//! The resource kinds the simulator serves, as one table, and the route matcher built on it.
//!
//! Design note: every kind is stored, listed, faulted and counted the same way; what differs between
//! them is data — its routes, its list shape, which DTO validates it (`dto.rs`), the references it
//! holds to other kinds, the defaults the server adds, the request fields it never returns, and
//! whether it can be pinned. Assistants are the one kind with a hand-written validator
//! (`validate.rs`), because the controller depends on its exact wording; they are still stored and
//! routed through this table.

use serde_json::{Map, Value};

use super::http::{ROUTE_COLLECTION, ROUTE_ITEM};

/// How `GET` on the collection answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ListShape {
    /// A bare JSON array (`Assistant[]`, `Tool[]`, ...).
    Bare,
    /// `{"results": [...], "metadata": PaginationMeta}`.
    Paginated,
}

/// A property naming a resource of another kind, checked on every write of the property.
pub(super) struct Reference {
    pub property: &'static str,
    /// Index into [`KINDS`].
    pub kind: usize,
    /// An array of ids rather than one.
    pub many: bool,
    /// The message of the 404 when the id is not a resource of that kind in the caller's org.
    pub missing: &'static str,
}

pub(super) struct Kind {
    /// The control API's name for it (`/_sim/resources/{name}`) and its key in `dtos.json`.
    pub name: &'static str,
    pub collection: &'static str,
    pub item: &'static str,
    pub list: ListShape,
    /// A second, paginated, read-only list route (`/v2/phone-number`).
    pub paged_alias: Option<&'static str>,
    pub references: &'static [Reference],
    /// The 409 `(error, message)` for deleting a pinned resource; `None` = cannot be pinned.
    pub pinned: Option<(&'static str, &'static str)>,
    /// Request properties the server keeps but never returns (secrets).
    pub write_only: &'static [&'static str],
}

pub(super) const ASSISTANT: usize = 0;
#[cfg(test)]
const TOOL: usize = 1;
pub(super) const PHONE_NUMBER: usize = 2;
pub(super) const SQUAD: usize = 3;
const SIMULATION: usize = 7;
const PERSONALITY: usize = 8;
const SCENARIO: usize = 9;

/// Fields of credential DTOs that hold the secret itself (Vapi answers credentials without them).
const CREDENTIAL_SECRETS: &[&str] = &[
    "apiKey",
    "apiSecret",
    "authToken",
    "clientSecret",
    "password",
    "privateKey",
    "secretKey",
    "secret",
    "token",
    "awsSecretAccessKey",
    "serviceKey",
];

const fn kind(name: &'static str, collection: &'static str, item: &'static str) -> Kind {
    Kind {
        name,
        collection,
        item,
        list: ListShape::Bare,
        paged_alias: None,
        references: &[],
        pinned: None,
        write_only: &[],
    }
}

/// Every kind; the index is the kind's id. Order matters only for route matching of the item
/// templates, and exact collection paths are matched before any item template.
pub(super) static KINDS: [Kind; 11] = [
    // Validated by `validate.rs`; every other kind by its entry in `dtos/dtos.json`.
    Kind {
        pinned: Some((
            "assistant_pinned",
            "Assistant is pinned and cannot be deleted. Unpin it first.",
        )),
        ..kind("assistant", ROUTE_COLLECTION, ROUTE_ITEM)
    },
    Kind {
        pinned: Some((
            "tool_pinned",
            "Tool is pinned and cannot be deleted. Unpin it first.",
        )),
        ..kind("tool", "/tool", "/tool/{id}")
    },
    Kind {
        paged_alias: Some("/v2/phone-number"),
        references: &[
            Reference {
                property: "assistantId",
                kind: ASSISTANT,
                many: false,
                missing: "Couldn't Find Assistant",
            },
            Reference {
                property: "squadId",
                kind: SQUAD,
                many: false,
                missing: "Couldn't Find Squad",
            },
        ],
        ..kind("phone-number", "/phone-number", "/phone-number/{id}")
    },
    kind("squad", "/squad", "/squad/{id}"),
    Kind {
        write_only: CREDENTIAL_SECRETS,
        ..kind("credential", "/credential", "/credential/{id}")
    },
    Kind {
        list: ListShape::Paginated,
        ..kind(
            "structured-output",
            "/structured-output",
            "/structured-output/{id}",
        )
    },
    Kind {
        list: ListShape::Paginated,
        ..kind("eval", "/eval", "/eval/{id}")
    },
    Kind {
        references: &[
            Reference {
                property: "scenarioId",
                kind: SCENARIO,
                many: false,
                missing: "Couldn't Find Scenario",
            },
            Reference {
                property: "personalityId",
                kind: PERSONALITY,
                many: false,
                missing: "Couldn't Find Personality",
            },
        ],
        ..kind("simulation", "/eval/simulation", "/eval/simulation/{id}")
    },
    kind(
        "personality",
        "/eval/simulation/personality",
        "/eval/simulation/personality/{id}",
    ),
    kind(
        "scenario",
        "/eval/simulation/scenario",
        "/eval/simulation/scenario/{id}",
    ),
    Kind {
        references: &[Reference {
            property: "simulationIds",
            kind: SIMULATION,
            many: true,
            missing: "Couldn't Find Simulation",
        }],
        ..kind(
            "simulation-suite",
            "/eval/simulation/suite",
            "/eval/simulation/suite/{id}",
        )
    },
];

/// The kind called `name` in the control API.
pub(super) fn by_name(name: &str) -> Option<usize> {
    KINDS.iter().position(|k| k.name == name)
}

/// What a route template addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Target {
    Collection,
    Item,
    PagedList,
}

/// The kind and target of a route template returned by [`match_route`].
pub(super) fn resolve(template: &str) -> Option<(usize, Target)> {
    KINDS.iter().enumerate().find_map(|(i, k)| {
        if k.collection == template {
            Some((i, Target::Collection))
        } else if k.item == template {
            Some((i, Target::Item))
        } else if k.paged_alias == Some(template) {
            Some((i, Target::PagedList))
        } else {
            None
        }
    })
}

/// Match a request to one of the simulated routes: (template, id). Express routing is not strict:
/// one trailing slash is ignored. `None` = Express's `Cannot METHOD /path`.
pub(super) fn match_route<'a>(
    method: &axum::http::Method,
    path: &'a str,
) -> Option<(&'static str, Option<&'a str>)> {
    use axum::http::Method;
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    for k in &KINDS {
        if path == k.collection {
            return matches!(*method, Method::GET | Method::POST).then_some((k.collection, None));
        }
        if Some(path) == k.paged_alias {
            return (*method == Method::GET).then_some((k.paged_alias?, None));
        }
    }
    for k in &KINDS {
        let id = path
            .strip_prefix(k.collection)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|id| !id.is_empty() && !id.contains('/'));
        if let Some(id) = id {
            return matches!(*method, Method::GET | Method::PATCH | Method::DELETE)
                .then_some((k.item, Some(id)));
        }
    }
    None
}

/// The counter label of an unmatched path: segments that look like ids become `{id}`, and the label
/// is cut short, so that a client probing many ids or paths cannot grow the counters without bound.
pub(super) fn unknown_template(path: &str) -> String {
    let mut out = String::new();
    for seg in path.split('/').skip(1) {
        out.push('/');
        let looks_like_id = super::http::is_uuid(seg)
            || (!seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()))
            || seg.len() > 32;
        out.push_str(if looks_like_id { "{id}" } else { seg });
        if out.len() > 120 {
            out.truncate(120);
            out.push('…');
            break;
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Server-side defaults of a new resource: what Vapi fills in that the request did not say. `seq`
/// is unique per simulator and numbers phone numbers bought from Vapi.
pub(super) fn add_defaults(kind: usize, body: &mut Map<String, Value>, seq: u64) {
    match kind {
        ASSISTANT => {
            body.entry("isServerUrlSecretSet")
                .or_insert(Value::Bool(false));
        }
        PHONE_NUMBER => {
            body.entry("status").or_insert(Value::from("active"));
            let bought = body.get("provider").and_then(Value::as_str) == Some("vapi");
            if bought && body.get("number").is_none_or(Value::is_null) {
                let area = body
                    .get("numberDesiredAreaCode")
                    .and_then(Value::as_str)
                    .filter(|a| a.len() == 3 && a.bytes().all(|b| b.is_ascii_digit()))
                    .unwrap_or("555");
                body.insert(
                    "number".into(),
                    Value::from(format!("+1{area}{:07}", seq % 10_000_000)),
                );
            }
        }
        _ => {}
    }
    for key in KINDS[kind].write_only {
        body.remove(*key);
    }
}

/// The ids a body names through `reference`, if it sets it (null clears a reference and names none).
pub(super) fn referenced_ids<'a>(
    reference: &Reference,
    body: &'a Map<String, Value>,
) -> Vec<&'a str> {
    match body.get(reference.property) {
        Some(Value::String(s)) if !reference.many => vec![s.as_str()],
        Some(Value::Array(items)) if reference.many => {
            items.iter().filter_map(Value::as_str).collect()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn kind_indices_match_the_table() {
        assert_eq!(KINDS[ASSISTANT].name, "assistant");
        assert_eq!(KINDS[TOOL].name, "tool");
        assert_eq!(KINDS[PHONE_NUMBER].name, "phone-number");
        assert_eq!(KINDS[SQUAD].name, "squad");
        assert_eq!(KINDS[SIMULATION].name, "simulation");
        assert_eq!(KINDS[PERSONALITY].name, "personality");
        assert_eq!(KINDS[SCENARIO].name, "scenario");
        for k in &KINDS[1..] {
            assert!(super::super::dto::kind_dtos(k.name).is_some(), "{}", k.name);
        }
    }

    #[test]
    fn kind_names_are_published_in_table_order() {
        let names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        assert_eq!(names, super::super::KIND_NAMES);
    }

    #[test]
    fn nested_collections_win_over_item_templates() {
        assert_eq!(
            match_route(&Method::GET, "/eval/simulation"),
            Some(("/eval/simulation", None))
        );
        assert_eq!(
            match_route(&Method::POST, "/eval/simulation/suite/"),
            Some(("/eval/simulation/suite", None))
        );
        assert_eq!(
            match_route(&Method::GET, "/eval/simulation/x"),
            Some(("/eval/simulation/{id}", Some("x")))
        );
        assert_eq!(
            match_route(&Method::GET, "/eval/x"),
            Some(("/eval/{id}", Some("x")))
        );
        assert_eq!(
            match_route(&Method::GET, "/v2/phone-number"),
            Some(("/v2/phone-number", None))
        );
        assert_eq!(match_route(&Method::POST, "/v2/phone-number"), None);
        assert_eq!(match_route(&Method::GET, "/eval/simulation/run/x"), None);
    }

    #[test]
    fn unknown_templates_hide_ids() {
        assert_eq!(
            unknown_template("/workflow/365e462b-9e38-4e63-bd39-58c12fb07136"),
            "/workflow/{id}"
        );
        assert_eq!(unknown_template("/call/123/x"), "/call/{id}/x");
        assert_eq!(unknown_template("/"), "/");
        assert!(unknown_template(&"/abc".repeat(100)).chars().count() <= 121);
    }
}
