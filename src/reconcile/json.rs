//! Semantic JSON comparison.
//!
//! Vapi answers with keys in its own order and may re-encode numbers (`0.50` comes back as `0.5`,
//! `1` as `1.0`), so drift is decided on parsed values, never on bytes. A key that is absent and a
//! key that is `null` mean the same thing to Vapi ("not set"), so they compare equal too.

use serde_json::{Number, Value};

/// Whether two JSON values mean the same assistant configuration.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_eq(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            let null = Value::Null;
            let same = |k: &String| json_eq(x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null));
            x.keys().all(same) && y.keys().all(same)
        }
        _ => a == b,
    }
}

fn number_eq(x: &Number, y: &Number) -> bool {
    if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (x.as_u64(), y.as_u64()) {
        return a == b;
    }
    match (x.as_f64(), y.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Appends to `out` the paths (`model.messages[0].content`) where `actual` differs from `desired`.
///
/// Below the top level the desired value is the whole truth (a PATCH replaces the key wholesale),
/// so keys present only in `actual` are differences too.
pub fn diff_paths(desired: &Value, actual: Option<&Value>, path: &str, out: &mut Vec<String>) {
    let actual = actual.unwrap_or(&Value::Null);
    match (desired, actual) {
        (Value::Object(d), Value::Object(a)) => {
            for (k, v) in d {
                diff_paths(v, a.get(k), &join(path, k), out);
            }
            for (k, w) in a {
                if !d.contains_key(k) && !w.is_null() {
                    out.push(join(path, k));
                }
            }
        }
        (Value::Array(d), Value::Array(a)) if d.len() == a.len() => {
            for (i, (v, w)) in d.iter().zip(a).enumerate() {
                diff_paths(v, Some(w), &format!("{path}[{i}]"), out);
            }
        }
        _ => {
            if !json_eq(desired, actual) {
                out.push(path.to_owned());
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_forms_are_not_drift() {
        let cases = [
            (json!(0.5), json!(0.50), true),
            (json!(1), json!(1.0), true),
            (json!(400), json!(400), true),
            (json!(-3), json!(-3.0), true),
            (json!(0.3), json!(0.30000001), false),
            (json!(1), json!("1"), false),
            (json!({"a": 1, "b": 2}), json!({"b": 2, "a": 1}), true),
            (json!({"a": 1, "b": null}), json!({"a": 1}), true),
            (json!({"a": 1}), json!({"a": 1, "b": null}), true),
            (json!({"a": 1}), json!({"a": 1, "b": 2}), false),
            (json!({"a": 1, "b": 2}), json!({"a": 1}), false),
            (json!([1, 2]), json!([2, 1]), false),
            (json!([{"x": 0.5}]), json!([{"x": 0.50}]), true),
            (json!(null), json!(null), true),
            (json!("Elliot"), json!("elliot"), false),
        ];
        for (a, b, want) in cases {
            assert_eq!(json_eq(&a, &b), want, "{a} vs {b}");
            assert_eq!(json_eq(&b, &a), want, "{b} vs {a}");
        }
    }

    #[test]
    fn diff_names_leaf_paths() {
        let cases = [
            (json!({"x": 1}), json!({"x": 1}), vec![]),
            (
                json!({"model": {"temperature": 0.3, "messages": [{"role": "system", "content": "A"}]}}),
                json!({"model": {"temperature": 0.30, "messages": [{"role": "system", "content": "B"}]}}),
                vec!["model.messages[0].content"],
            ),
            (
                json!({"model": {"provider": "openai"}}),
                json!({"model": {"provider": "openai", "maxTokens": 400}}),
                vec!["model.maxTokens"],
            ),
            (json!({"tags": [1, 2]}), json!({"tags": [1]}), vec!["tags"]),
            (
                json!({"firstMessage": "Hi"}),
                json!({}),
                vec!["firstMessage"],
            ),
            (
                json!({"voice": {"provider": "vapi", "voiceId": "Elliot"}}),
                json!({"voice": "Elliot"}),
                vec!["voice"],
            ),
        ];
        for (desired, actual, want) in cases {
            let mut out = Vec::new();
            diff_paths(&desired, Some(&actual), "", &mut out);
            assert_eq!(out, want, "{desired} vs {actual}");
        }
    }
}
