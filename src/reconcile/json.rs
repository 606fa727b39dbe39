//! Semantic JSON comparison.
//!
//! Vapi answers with keys in its own order and may re-encode numbers (`0.50` comes back as `0.5`,
//! `1` as `1.0`), so drift is decided on parsed values, never on bytes. A key that is absent and a
//! key that is `null` mean the same thing to Vapi ("not set"), so they compare equal too.
//! [`text_matches`] gives the same answer for a stored JSON text without building its tree.

use serde_json::{Map, Number, Value};

/// Whether two JSON values mean the same assistant configuration.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_eq(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => map_eq(x, y),
        _ => a == b,
    }
}

/// [`json_eq`] of two objects, without wrapping them in a [`Value`] (no copy).
pub fn map_eq(x: &Map<String, Value>, y: &Map<String, Value>) -> bool {
    let null = Value::Null;
    let same = |k: &String| json_eq(x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null));
    x.keys().all(same) && y.keys().all(same)
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

/// How a JSON text compares with an object, as [`text_matches`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextMatch {
    /// The text is an object that [`json_eq`] the other.
    pub equal: bool,
    /// Every top-level key of the text is a key of the other (null-valued keys included).
    pub within: bool,
}

/// Compares a JSON text with an object without building the text's tree: the same answer as
/// parsing it and calling [`json_eq`], at the cost of one scan. `None` when the text is not JSON.
/// The text must not repeat a key within one object (Postgres's `jsonb` never does).
pub fn text_matches(text: &str, other: &Map<String, Value>) -> Option<TextMatch> {
    use serde::de::DeserializeSeed;
    let mut within = true;
    let seed = SameMap {
        other,
        within: Some(&mut within),
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let equal = seed.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(TextMatch { equal, within })
}

/// Whether, for every key of `other`, the object in `text` has a value that [`json_eq`]s it (a
/// key missing from the text counts as null; keys only in the text are not looked at), at the
/// cost of one scan and no tree. `overrides` stand in for `other`'s value of their keys.
/// `None` when the text is not a JSON object. A key the text repeats, at any depth, makes the
/// answer `false`: a parse keeps only the last, and "unequal" sends the caller to the parse.
pub fn text_covers(
    text: &str,
    other: &Map<String, Value>,
    overrides: &[(&str, &Value)],
) -> Option<bool> {
    struct Covers<'a> {
        other: &'a Map<String, Value>,
        overrides: &'a [(&'a str, &'a Value)],
    }
    impl<'de> serde::de::Visitor<'de> for Covers<'_> {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Option<bool>, A::Error> {
            let mut equal = true;
            let mut seen: Vec<Key<'de>> = Vec::new();
            while let Some(key) = map.next_key::<Key<'de>>()? {
                let name = key.0.as_ref();
                let value = self
                    .overrides
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| *v)
                    .or_else(|| self.other.get(name));
                match value {
                    Some(value) if equal => {
                        equal = map.next_value_seed(Same {
                            other: value,
                            within: None,
                        })?;
                        if seen.iter().any(|k| k.0 == key.0) {
                            equal = false;
                        }
                        seen.push(key);
                    }
                    _ => map.next_value::<serde::de::IgnoredAny>().map(|_| ())?,
                }
            }
            // Every key of `other` with a non-null value must have been in the text.
            let present = |k: &String, v: &Value| {
                let v = self
                    .overrides
                    .iter()
                    .find(|(o, _)| o == k)
                    .map_or(v, |(_, o)| *o);
                v.is_null() || seen.iter().any(|s| s.0 == k.as_str())
            };
            Ok(Some(equal && self.other.iter().all(|(k, v)| present(k, v))))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Option<bool>, A::Error> {
            skip_seq(seq).map(|_| None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Option<bool>, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Option<bool>, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Option<bool>, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Option<bool>, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Option<bool>, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Option<bool>, E> {
            Ok(None)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let found = serde::Deserializer::deserialize_any(&mut de, Covers { other, overrides }).ok()?;
    de.end().ok()?;
    found
}

static NULL: Value = Value::Null;

/// Compares whatever comes next with `other` (json_eq semantics); records in `within` whether
/// every key of an object is one of `other`'s.
struct Same<'a, 'w> {
    other: &'a Value,
    within: Option<&'w mut bool>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Same<'_, '_> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        match self.other {
            Value::Object(other) => SameMap {
                other,
                within: self.within,
            }
            .deserialize(d),
            other => d.deserialize_any(SameVisitor(other)),
        }
    }
}

/// An object compared with `other`; anything else is unequal (and skipped).
struct SameMap<'a, 'w> {
    other: &'a Map<String, Value>,
    within: Option<&'w mut bool>,
}

impl<'de> serde::de::DeserializeSeed<'de> for SameMap<'_, '_> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for SameMap<'_, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut equal = true;
        let mut within = true;
        // Keys of `other` with a non-null value that the text has: all of them, when equal.
        let mut seen = 0;
        // The keys read so far, to tell a repeated key (which a parse reads as its last value
        // only): a repeat makes the text unequal, so the count above cannot be fooled.
        let mut keys: Vec<Key<'de>> = Vec::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let value = self.other.get(key.0.as_ref());
            within &= value.is_some();
            let value = value.unwrap_or(&NULL);
            if equal {
                equal = map.next_value_seed(Same {
                    other: value,
                    within: None,
                })?;
                seen += usize::from(!value.is_null());
                if keys.iter().any(|k| k.0 == key.0) {
                    equal = false;
                }
                keys.push(key);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        if let Some(w) = self.within {
            *w = within;
        }
        Ok(equal && seen == self.other.values().filter(|v| !v.is_null()).count())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        skip_seq(seq)
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

fn skip_seq<'de, A: serde::de::SeqAccess<'de>>(mut seq: A) -> Result<bool, A::Error> {
    while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
    Ok(false)
}

/// A value that is not an object, compared with whatever comes next.
struct SameVisitor<'a>(&'a Value);

impl<'de> serde::de::Visitor<'de> for SameVisitor<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<bool, E> {
        Ok(self.0.as_bool() == Some(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<bool, E> {
        Ok(matches!(self.0, Value::Number(n) if number_eq(n, &Number::from(v))))
    }
    fn visit_u64<E>(self, v: u64) -> Result<bool, E> {
        Ok(matches!(self.0, Value::Number(n) if number_eq(n, &Number::from(v))))
    }
    fn visit_f64<E>(self, v: f64) -> Result<bool, E> {
        Ok(match (self.0, Number::from_f64(v)) {
            (Value::Number(n), Some(v)) => number_eq(n, &v),
            _ => false,
        })
    }
    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(self.0.as_str() == Some(v))
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(self.0.is_null())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let Value::Array(items) = self.0 else {
            return skip_seq(seq);
        };
        let mut items = items.iter();
        let mut equal = true;
        loop {
            match items.next() {
                Some(item) if equal => {
                    match seq.next_element_seed(Same {
                        other: item,
                        within: None,
                    })? {
                        Some(same) => equal = same,
                        // The text's array is shorter.
                        None => return Ok(false),
                    }
                }
                _ => {
                    // Longer than `other`'s, or already unequal: skip the rest.
                    let more = seq.next_element::<serde::de::IgnoredAny>()?.is_some();
                    if !more {
                        return Ok(equal && items.next().is_none());
                    }
                    equal = false;
                }
            }
        }
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(false)
    }
}

/// An object key, borrowed from the text when it has no escapes.
pub(crate) struct Key<'de>(pub(crate) std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
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
    fn a_text_compares_as_its_tree_would() {
        let values = [
            json!(null),
            json!(0.5),
            json!(0.50),
            json!(1),
            json!(1.0),
            json!(-3),
            json!(18446744073709551615_u64),
            json!("1"),
            json!("Elliot"),
            json!("é \" \\ \u{e9}"),
            json!(true),
            json!([]),
            json!([1, 2]),
            json!([2, 1]),
            json!([1, 2, 3]),
            json!([{"x": 0.5}]),
            json!({}),
            json!({"a": 1}),
            json!({"a": 1, "b": null}),
            json!({"a": 1, "b": 2}),
            json!({"b": {"c": [1, {"d": null}]}}),
            json!({"b": {"c": [1, {"d": 2}]}}),
            json!({"a\n": 1}),
        ];
        for a in &values {
            for b in &values {
                let (x, y) = (json!({"k": a, "n": null}), json!({"k": b}));
                let Value::Object(y) = y else { unreachable!() };
                let found = text_matches(&x.to_string(), &y).expect("valid JSON");
                assert_eq!(
                    found.equal,
                    json_eq(&x, &Value::Object(y.clone())),
                    "{x} vs {b}"
                );
                assert!(!found.within, "{x} has a key {b} lacks");
                if let Value::Object(b) = b {
                    let found = text_matches(&a.to_string(), b);
                    let want = json_eq(a, &Value::Object(b.clone()));
                    assert_eq!(found.map(|f| f.equal), Some(want), "{a} vs {b:?}");
                }
            }
        }
        let Value::Object(body) = json!({"a": 1, "b": {"c": 2}}) else {
            unreachable!()
        };
        let within = text_matches(r#"{"b": {"c": 2.0}, "a": 1}"#, &body);
        assert_eq!(
            within,
            Some(TextMatch {
                equal: true,
                within: true
            })
        );
        assert_eq!(text_matches(r#"{"a": 1"#, &body), None);
        assert_eq!(text_matches(r#"{"a": 1} x"#, &body), None);
    }

    #[test]
    fn a_text_covers_an_object_as_its_tree_would() {
        let values = [
            json!(null),
            json!(0.5),
            json!(0.50),
            json!(1),
            json!(1.0),
            json!("1"),
            json!([1, 2]),
            json!([2, 1]),
            json!({}),
            json!({"a": 1}),
            json!({"a": 1, "b": null}),
            json!({"b": {"c": [1, {"d": null}]}}),
        ];
        // The tree's answer: every key of the desired object json_eq's the text's (or null).
        let covers = |text: &Value, desired: &Map<String, Value>| {
            desired
                .iter()
                .all(|(k, v)| json_eq(v, text.get(k).unwrap_or(&Value::Null)))
        };
        for a in &values {
            for b in &values {
                let text = json!({"k": a, "extra": 1});
                let Value::Object(desired) = json!({"k": b, "n": null}) else {
                    unreachable!()
                };
                assert_eq!(
                    text_covers(&text.to_string(), &desired, &[]),
                    Some(covers(&text, &desired)),
                    "{text} covers {desired:?}"
                );
                // An override stands in for the desired value of its key.
                let Value::Object(other) = json!({"k": "something else"}) else {
                    unreachable!()
                };
                assert_eq!(
                    text_covers(&text.to_string(), &other, &[("k", b)]),
                    Some(json_eq(a, b)),
                    "{text} with k = {b}"
                );
            }
        }
        let Value::Object(desired) = json!({"a": 1, "m": {"x": 1}}) else {
            unreachable!()
        };
        // A missing key with a value, and a text that is not an object.
        assert_eq!(
            text_covers(r#"{"m": {"x": 1}}"#, &desired, &[]),
            Some(false)
        );
        assert_eq!(text_covers("[1]", &desired, &[]), None);
        assert_eq!(text_covers(r#"{"a": 1"#, &desired, &[]), None);
        // A repeated key, at the top or below, is never called equal: a parse keeps the last.
        for text in [
            r#"{"a": 1, "a": 2, "m": {"x": 1}}"#,
            r#"{"a": 2, "a": 1, "m": {"x": 1}}"#,
            r#"{"a": 1, "m": {"x": 1, "x": 2}}"#,
            r#"{"a": 1, "m": {"x": 1, "x": 1}}"#,
        ] {
            assert_eq!(text_covers(text, &desired, &[]), Some(false), "{text}");
        }
        // Counting alone would be fooled by a repeat: {"x":1,"x":1} has two keys, like {"x":1,"y":2}.
        let Value::Object(two) = json!({"x": 1, "y": 2}) else {
            unreachable!()
        };
        assert_eq!(
            text_matches(r#"{"x": 1, "x": 1}"#, &two).map(|m| m.equal),
            Some(false)
        );
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
