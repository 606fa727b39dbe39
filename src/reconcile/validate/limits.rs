//! Size and depth limits of a spec, and the reading of a spec text the parser refuses.
//!
//! Design note: a spec is refused before Vapi when it nests deeper than [`SPEC_MAX_DEPTH`] or is
//! larger than [`SPEC_MAX_BYTES`] as compact JSON. The depth limit sits far below serde_json's
//! recursion limit (128), because every layer the spec travels through adds levels: the
//! assistant body is the spec's own object, and a listing page wraps it in an array. A spec that
//! passed at 127 levels would make the page that lists it unparseable for every agent on the key.
//! The size limit keeps a body far from what an HTTP server refuses (a 413 after a partly sent
//! body looks like a lost connection) and bounds the work of every later pass.
//!
//! Both are measured by one iterative walk (no recursion, no allocation but its stack), so a
//! pathological spec costs no more than reading it; the byte count is exactly what
//! `serde_json::to_string` would produce. [`parse_spec`] reads a stored spec text: when the
//! parser refuses it (nesting beyond 128, a number out of range such as `1e400`), the error names
//! the top-level field at fault and, for depth, the measured value and the limit.
//!
//! PURE: no I/O.

use serde_json::{Map, Value};

/// The deepest a spec may nest; the spec object itself is level 1.
pub const SPEC_MAX_DEPTH: usize = 32;

/// The largest a spec may be, in bytes of compact JSON (256 KiB).
pub const SPEC_MAX_BYTES: usize = 256 * 1024;

/// What the walk measured of one value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Measure {
    /// Levels of nesting: a scalar is 0, `[]` and `{}` are 1.
    depth: usize,
    /// Bytes of compact JSON.
    bytes: usize,
}

/// The problems of a spec over a limit, naming the limit, the measured value and the field
/// (empty when within both). Checked before anything else: a spec over a limit gets no other
/// check, which bounds the work.
pub(super) fn check_limits(spec: &Map<String, Value>) -> Vec<String> {
    let mut deepest: Option<(&str, usize)> = None;
    let mut largest: Option<(&str, usize)> = None;
    // `{}`, one comma between entries, and each `"key":`.
    let mut total = 2 + spec.len().saturating_sub(1);
    for (key, value) in spec {
        let m = measure(value);
        total += string_bytes(key) + 1 + m.bytes;
        if deepest.is_none_or(|(_, d)| m.depth > d) {
            deepest = Some((key, m.depth));
        }
        if largest.is_none_or(|(_, b)| m.bytes > b) {
            largest = Some((key, m.bytes));
        }
    }
    let mut problems = Vec::new();
    if let Some((key, depth)) = deepest.filter(|(_, d)| d + 1 > SPEC_MAX_DEPTH) {
        problems.push(format!(
            "{} nests {} levels deep (the spec itself is level 1); the limit is {SPEC_MAX_DEPTH}",
            field_path(key),
            depth + 1
        ));
    }
    if total > SPEC_MAX_BYTES {
        let field = largest
            .map(|(key, bytes)| {
                format!(
                    " (the largest field, {}, is {bytes} bytes)",
                    field_path(key)
                )
            })
            .unwrap_or_default();
        problems.push(format!(
            "spec is {total} bytes as compact JSON{field}; the limit is {SPEC_MAX_BYTES} bytes"
        ));
    }
    problems
}

/// Depth and compact size of a value, walked with an explicit stack.
fn measure(value: &Value) -> Measure {
    let mut out = Measure::default();
    let mut stack: Vec<(&Value, usize)> = vec![(value, 1)];
    while let Some((v, level)) = stack.pop() {
        match v {
            Value::Null | Value::Bool(true) => out.bytes += 4,
            Value::Bool(false) => out.bytes += 5,
            Value::Number(n) => out.bytes += number_bytes(n),
            Value::String(s) => out.bytes += string_bytes(s),
            Value::Array(items) => {
                out.depth = out.depth.max(level);
                out.bytes += 2 + items.len().saturating_sub(1);
                stack.extend(items.iter().map(|i| (i, level + 1)));
            }
            Value::Object(map) => {
                out.depth = out.depth.max(level);
                out.bytes += 2 + map.len().saturating_sub(1);
                for (key, item) in map {
                    out.bytes += string_bytes(key) + 1;
                    stack.push((item, level + 1));
                }
            }
        }
    }
    out
}

/// A string's bytes as serde_json writes it: quoted, with `"`, `\` and control characters
/// escaped (`\n` and friends as two bytes, the rest as `\u00XX`).
fn string_bytes(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\x08' | b'\x0c' | b'\n' | b'\r' | b'\t' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

fn number_bytes(n: &serde_json::Number) -> usize {
    struct Count(usize);
    impl std::fmt::Write for Count {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail.
    let _ = std::fmt::write(&mut count, format_args!("{n}"));
    count.0
}

/// `spec.<key>`, the key cut to 60 characters (`…` marks the cut): a key can be as long as the
/// spec, and a message must stay short.
pub(super) fn field_path(key: &str) -> String {
    const KEY_MAX: usize = 60;
    match key.char_indices().nth(KEY_MAX) {
        Some((cut, _)) => format!("spec.{}…", &key[..cut]),
        None => format!("spec.{key}"),
    }
}

/// Reads a stored spec text. A text the parser refuses gets an error naming the top-level field
/// at fault and, when it nests too deep, the measured depth and the limit.
pub fn parse_spec(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| unreadable(text, &e))
}

fn unreadable(text: &str, whole: &serde_json::Error) -> String {
    // The top-level fields split without being built: skipping a raw value has no depth limit.
    // In order and with repeats: a key given twice is read twice (the parser reads both).
    let Some(fields) = crate::vapi::top_level_fields(text) else {
        let depth = text_depth(text);
        if depth > SPEC_MAX_DEPTH {
            return format!("the spec nests {depth} levels deep; the limit is {SPEC_MAX_DEPTH}");
        }
        if !text.trim_start().starts_with('{') {
            return format!("spec must be a JSON object ({whole})");
        }
        return whole.to_string();
    };
    // A field may parse on its own and still make the whole too deep: depth is measured first.
    let mut bad: Vec<(&str, String)> = fields
        .iter()
        .filter_map(|(key, raw)| {
            let depth = text_depth(raw.get()) + 1;
            if depth > SPEC_MAX_DEPTH {
                return Some((
                    key.as_str(),
                    format!(
                        "{} nests {depth} levels deep (the spec itself is level 1); the limit is {SPEC_MAX_DEPTH}",
                        field_path(key)
                    ),
                ));
            }
            let e = serde_json::from_str::<Value>(raw.get()).err()?;
            Some((key.as_str(), format!("{} cannot be read: {e}", field_path(key))))
        })
        .collect();
    bad.sort();
    match bad.into_iter().next() {
        Some((_, message)) => message,
        None => whole.to_string(),
    }
}

/// The deepest nesting of a JSON text, by counting brackets outside strings.
fn text_depth(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn nested(levels: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!({ "x": v });
        }
        v
    }

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("an object"),
        }
    }

    #[test]
    fn the_walk_counts_exactly_what_serde_json_writes() {
        let samples = [
            json!({}),
            json!({"a": null, "b": [true, false, 1, -2.5, 1e300, "q\"\\\n\t\u{1}é😀"]}),
            json!({"model": {"messages": [{"role": "system", "content": "x".repeat(1000)}]}}),
            json!({"e": [], "o": {}, "n": [[[]]], "u": u64::MAX, "i": i64::MIN}),
        ];
        for s in samples {
            let expected = serde_json::to_string(&s).expect("json").len();
            let m = measure(&s);
            assert_eq!(m.bytes, expected, "{s}");
            let spec = object(s);
            let total = 2
                + spec.len().saturating_sub(1)
                + spec
                    .iter()
                    .map(|(k, v)| string_bytes(k) + 1 + measure(v).bytes)
                    .sum::<usize>();
            assert_eq!(total, expected);
        }
        assert_eq!(measure(&nested(5)).depth, 5);
        assert_eq!(measure(&json!([[], {}])).depth, 2);
    }

    #[test]
    fn depth_is_refused_past_the_limit_naming_field_value_and_limit() {
        // `{"model": nested(31)}` is 32 levels: allowed; one more is not.
        assert!(check_limits(&object(json!({ "model": nested(31) }))).is_empty());
        assert_eq!(
            check_limits(&object(
                json!({ "firstMessage": "hi", "model": nested(32) })
            )),
            ["spec.model nests 33 levels deep (the spec itself is level 1); the limit is 32"]
        );
    }

    #[test]
    fn size_is_refused_past_the_limit_naming_the_largest_field() {
        let fits = "x".repeat(SPEC_MAX_BYTES - 20);
        assert!(check_limits(&object(json!({ "firstMessage": fits }))).is_empty());
        let big = "x".repeat(SPEC_MAX_BYTES);
        let problems = check_limits(&object(json!({ "firstMessage": big, "a": 1 })));
        assert_eq!(
            problems,
            [format!(
                "spec is {} bytes as compact JSON (the largest field, spec.firstMessage, is {} bytes); the limit is {SPEC_MAX_BYTES} bytes",
                SPEC_MAX_BYTES + 25,
                SPEC_MAX_BYTES + 2
            )]
        );
    }

    #[test]
    fn unparseable_texts_name_the_field() {
        let deep = format!(
            r#"{{"firstMessage": "hi", "model": {}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(
            parse_spec(&deep).expect_err("too deep"),
            "spec.model nests 201 levels deep (the spec itself is level 1); the limit is 32"
        );
        let err = parse_spec(r#"{"temperature": 1e400, "firstMessage": "hi"}"#)
            .expect_err("out of range");
        assert!(
            err.starts_with("spec.temperature cannot be read: number out of range"),
            "{err}"
        );
        // 128 levels in all: each field alone parses, the whole does not.
        let edge = format!(
            r#"{{"a": 1, "model": {}1{}}}"#,
            "[".repeat(127),
            "]".repeat(127)
        );
        assert_eq!(
            parse_spec(&edge).expect_err("128"),
            "spec.model nests 128 levels deep (the spec itself is level 1); the limit is 32"
        );
        let array = format!("{}{}", "[".repeat(300), "]".repeat(300));
        assert_eq!(
            parse_spec(&array).expect_err("deep array"),
            "the spec nests 300 levels deep; the limit is 32"
        );
        // Brackets inside strings are not nesting.
        assert_eq!(text_depth(r#"{"a": "[[[[\"{{{{"}"#), 1);
        assert!(parse_spec("not json").is_err());
        // A key given twice: the deep first one is the one named.
        let twice = format!(
            r#"{{"model": {}1{}, "model": {{}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(
            parse_spec(&twice).expect_err("deep"),
            "spec.model nests 201 levels deep (the spec itself is level 1); the limit is 32"
        );
        assert_eq!(
            parse_spec("1e400").expect_err("a number"),
            "spec must be a JSON object (number out of range at line 1 column 5)"
        );
        assert_eq!(parse_spec(r#"{"a": [1]}"#).expect("ok"), json!({"a": [1]}));
    }
}
