//! Class validation of the generic kinds' bodies, driven by the DTO table in `dtos/dtos.json`.
//!
//! Design note: the table is extracted from Vapi's OpenAPI document by `dtos/generate.py` and compiled
//! in with `include_str!`, so adding a kind or following a spec change is a data change, not code.
//! The walk copies class-validator the same way `validate.rs` does for assistants: whitelist errors
//! first (body key order), then each declared property in declaration order; `null` counts as absent
//! (`@IsOptional`); a wrong type also fails its length and range constraints; nested DTOs carry a
//! dotted prefix. Nested DTOs the table keeps (`Server`, `OpenAIFunction`, `SquadMemberDTO`) are
//! validated in depth; any other nested property only has to be an object or an array. String
//! `pattern`s are not checked (the document states them as JavaScript regex literals).

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::validate::{number_range, push_string_messages};

/// One property's constraints (see `dtos/generate.py` for the encoding).
#[derive(Debug, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum Rule {
    Str {
        #[serde(default, rename = "enum")]
        one_of: Option<Vec<String>>,
        #[serde(default)]
        min: Option<usize>,
        #[serde(default)]
        max: Option<usize>,
        #[serde(default)]
        uuid: bool,
    },
    Num {
        #[serde(default)]
        min: Option<f64>,
        #[serde(default)]
        max: Option<f64>,
    },
    Bool,
    Obj,
    Nested {
        #[serde(default, rename = "ref")]
        dto: Option<String>,
    },
    Arr {
        items: Box<Rule>,
    },
    Any,
}

#[derive(Debug, Deserialize)]
struct Dto {
    required: Vec<String>,
    props: Vec<(String, Rule)>,
}

/// Per kind: the create and update DTO for each discriminator value (`""` when there is none).
#[derive(Debug, Deserialize)]
pub(super) struct KindDtos {
    #[serde(default)]
    pub discriminator: Option<String>,
    create: HashMap<String, String>,
    update: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct Table {
    kinds: HashMap<String, KindDtos>,
    dtos: HashMap<String, Dto>,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    // The file is generated and checked by the unit tests below; a broken one is a build defect.
    #[allow(clippy::expect_used)]
    serde_json::from_str(include_str!("dtos/dtos.json")).expect("dtos.json is valid")
});

pub(super) fn kind_dtos(kind: &str) -> Option<&'static KindDtos> {
    TABLE.kinds.get(kind)
}

impl KindDtos {
    /// Discriminator values accepted on create, sorted (the order of the enum message).
    pub fn values(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.create.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Validate a create body; `Err` carries class-validator's messages.
    pub fn validate_create(&self, body: &Map<String, Value>) -> Result<(), Vec<String>> {
        let value = self.discriminator_value(body);
        let Some(name) = self.create.get(value.unwrap_or_default()) else {
            return Err(vec![self.discriminator_message()]);
        };
        finish(validate_dto(name, body, "", true))
    }

    /// Validate a PATCH body against the update DTO of the stored discriminator value. A value the
    /// document gives no update DTO for falls back to its create DTO with nothing required.
    pub fn validate_update(
        &self,
        stored: Option<&str>,
        body: &Map<String, Value>,
    ) -> Result<(), Vec<String>> {
        let key = stored.unwrap_or_default();
        let (name, required) = match (self.update.get(key), self.create.get(key)) {
            (Some(n), _) => (n, true),
            (None, Some(n)) => (n, false),
            (None, None) => return Err(vec![self.discriminator_message()]),
        };
        finish(validate_dto(name, body, "", required))
    }

    fn discriminator_value<'a>(&self, body: &'a Map<String, Value>) -> Option<&'a str> {
        match &self.discriminator {
            Some(d) => Some(body.get(d).and_then(Value::as_str).unwrap_or("\u{0}")),
            None => None,
        }
    }

    fn discriminator_message(&self) -> String {
        format!(
            "{} must be one of the following values: {}",
            self.discriminator.as_deref().unwrap_or("type"),
            self.values().join(", ")
        )
    }
}

fn finish(msgs: Vec<String>) -> Result<(), Vec<String>> {
    if msgs.is_empty() { Ok(()) } else { Err(msgs) }
}

fn validate_dto(
    name: &str,
    body: &Map<String, Value>,
    prefix: &str,
    with_required: bool,
) -> Vec<String> {
    let mut msgs = Vec::new();
    let Some(dto) = TABLE.dtos.get(name) else {
        return msgs;
    };
    for key in body.keys() {
        if !dto.props.iter().any(|(p, _)| p == key) {
            msgs.push(format!("{prefix}property {key} should not exist"));
        }
    }
    for (prop, rule) in &dto.props {
        let path = format!("{prefix}{prop}");
        match body.get(prop).filter(|v| !v.is_null()) {
            Some(v) => check(&path, rule, v, &mut msgs),
            None if with_required && dto.required.contains(prop) => {
                missing(&path, rule, &mut msgs);
            }
            None => {}
        }
    }
    msgs
}

/// A required property that is absent fails its type constraints, as class-validator reports them.
fn missing(path: &str, rule: &Rule, msgs: &mut Vec<String>) {
    match rule {
        Rule::Str { .. } | Rule::Num { .. } | Rule::Bool | Rule::Obj => {
            check(path, rule, &Value::Null, msgs);
        }
        Rule::Arr { .. } => msgs.push(format!("{path} must be an array")),
        Rule::Nested { .. } | Rule::Any => msgs.push(format!("{path} should not be empty")),
    }
}

fn check(path: &str, rule: &Rule, v: &Value, msgs: &mut Vec<String>) {
    match rule {
        Rule::Str {
            one_of,
            min,
            max,
            uuid,
        } => {
            if let Some(allowed) = one_of {
                if !v.as_str().is_some_and(|s| allowed.iter().any(|a| a == s)) {
                    msgs.push(format!(
                        "{path} must be one of the following values: {}",
                        allowed.join(", ")
                    ));
                }
                return;
            }
            if *uuid && !v.as_str().is_some_and(super::http::is_uuid) {
                msgs.push(format!("{path} must be a UUID"));
                return;
            }
            push_string_messages(path, v, *min, *max, msgs);
        }
        Rule::Num { min, max } => number_range(path, v, *min, *max, msgs),
        Rule::Bool => {
            if !v.is_boolean() {
                msgs.push(format!("{path} must be a boolean value"));
            }
        }
        Rule::Obj => {
            if !v.is_object() {
                msgs.push(format!("{path} must be an object"));
            }
        }
        Rule::Nested { dto } => match v {
            Value::Object(m) => {
                if let Some(name) = dto {
                    msgs.extend(validate_dto(name, m, &format!("{path}."), true));
                }
            }
            Value::Array(_) => {}
            _ => msgs.push(format!(
                "nested property {path} must be either object or array"
            )),
        },
        Rule::Arr { items } => {
            let Some(list) = v.as_array() else {
                msgs.push(format!("{path} must be an array"));
                return;
            };
            check_items(path, items, list, msgs);
        }
        Rule::Any => {}
    }
}

/// `each: true` constraints: each failing constraint is reported once per property.
fn check_items(path: &str, rule: &Rule, list: &[Value], msgs: &mut Vec<String>) {
    let mut seen = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let mut one = Vec::new();
        match rule {
            Rule::Nested { dto } => match item {
                Value::Object(m) => {
                    if let Some(name) = dto {
                        one.extend(validate_dto(name, m, &format!("{path}.{i}."), true));
                    }
                }
                _ => one.push(format!(
                    "each value in nested property {path} must be either object or array"
                )),
            },
            Rule::Any => {}
            _ => {
                // NestJS prefixes the parent path before class-validator's "each value in".
                let (parent, leaf) = path.rsplit_once('.').map_or(("", path), |(p, l)| (p, l));
                let dot = if parent.is_empty() { "" } else { "." };
                let mut inner = Vec::new();
                check(leaf, rule, item, &mut inner);
                one.extend(
                    inner
                        .into_iter()
                        .map(|m| format!("{parent}{dot}each value in {m}")),
                );
            }
        }
        for m in one {
            if !seen.contains(&m) {
                seen.push(m);
            }
        }
    }
    msgs.extend(seen);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn the_table_loads_and_covers_the_kinds() {
        for kind in &super::super::KIND_NAMES[1..] {
            let k = kind_dtos(kind).expect(kind);
            for name in k.create.values().chain(k.update.values()) {
                assert!(TABLE.dtos.contains_key(name), "{kind}: {name}");
            }
        }
        let tool = kind_dtos("tool").expect("tool");
        for t in ["function", "apiRequest", "transferCall", "endCall", "query"] {
            assert!(tool.create.contains_key(t), "{t}");
        }
    }

    #[test]
    fn function_tool_messages() {
        let tool = kind_dtos("tool").expect("tool");
        let body = obj(json!({
            "type": "function", "async": "no", "serverUrl": "x",
            "function": {"name": 5, "extra": 1}, "server": {"url": 3, "timeoutSeconds": 0}
        }));
        assert_eq!(
            tool.validate_create(&body).expect_err("rejected"),
            [
                "property serverUrl should not exist",
                "async must be a boolean value",
                "server.timeoutSeconds must not be less than 1",
                "server.url must be a string",
                "function.property extra should not exist",
                "function.name must be a string",
                "function.name must be shorter than or equal to 64 characters",
            ]
        );
        assert!(
            tool.validate_create(&obj(json!({"type": "endCall"})))
                .is_ok()
        );
        assert_eq!(
            tool.validate_create(&obj(json!({"type": "apiRequest"})))
                .expect_err("rejected"),
            [
                "method must be one of the following values: POST, GET, PUT, PATCH, DELETE",
                "url must be a string"
            ]
        );
        let missing = tool.validate_create(&obj(json!({}))).expect_err("rejected");
        assert!(missing[0].starts_with("type must be one of the following values: "));
    }

    #[test]
    fn update_is_checked_against_the_stored_type() {
        let tool = kind_dtos("tool").expect("tool");
        assert!(
            tool.validate_update(Some("function"), &obj(json!({"type": "function"})))
                .is_ok()
        );
        assert_eq!(
            tool.validate_update(Some("function"), &obj(json!({"type": "endCall"})))
                .expect_err("rejected"),
            ["type must be one of the following values: function"]
        );
    }

    #[test]
    fn each_item_constraints_are_reported_once() {
        let suite = kind_dtos("simulation-suite").expect("suite");
        assert_eq!(
            suite
                .validate_create(&obj(json!({"name": "s", "simulationIds": [1, 2]})))
                .expect_err("rejected"),
            ["each value in simulationIds must be a string"]
        );
    }
}
