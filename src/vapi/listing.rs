//! Reading `GET /assistant` pages item by item, so one assistant the controller cannot read does
//! not hide all the others (a "poison" item).
//!
//! Design note: a page is first split into its items without building them — serde_json skips a
//! [`RawValue`] iteratively, with no recursion limit — and each item is then read on its own.
//! A readable item is kept as its text with the few fields paging and ownership need (`id`,
//! `createdAt`, `metadata`): reading it walks every value exactly as a full parse would, so it
//! fails exactly where a parse would, but builds no tree. A listing of 100,000 assistants is
//! then 100,000 short texts rather than 100,000 trees (a tree costs several times its text);
//! whoever needs a body parses it, and an assistant in sync is compared on its text
//! ([`crate::reconcile::json::text_covers`]) and never parsed at all.
//!
//! An item that does not parse (nested beyond serde_json's limit of 128 levels, a number out of
//! range such as `1e400`, …) or that lacks what paging needs (a string `id` and `createdAt`) is
//! kept as an [`Unreadable`]: the parser's error, and the item's top-level fields that can be read
//! one by one (a shallow scan), which is where its `id`, `createdAt` and ownership marker
//! (`metadata`) are. The caller decides what to do with it; the controller fails the agent it
//! belongs to and leaves the assistant alone. Only a body that is not a JSON array at all fails
//! the whole page.
//!
//! PURE: no I/O.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::VapiError;
use crate::reconcile::json::Key;

/// What a listing (one page, or every page) held: the items the controller can read, and the
/// ones it cannot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    /// Readable assistants: JSON objects with a string `id` and `createdAt`.
    pub items: Vec<Item>,
    pub unreadable: Vec<Unreadable>,
}

/// A listed item the controller can read: what paging and ownership need, and its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: String,
    pub created_at: String,
    /// Where its `metadata` (the ownership marker's place) is in `text`; `None` when absent or
    /// null. A range, not a tree: a page holds a thousand items, and a parsed map is a node of
    /// several hundred bytes each.
    metadata_at: Option<std::ops::Range<u32>>,
    /// The item as Vapi sent it: a JSON object that parses.
    pub text: Box<str>,
}

impl Item {
    /// Reads one item's text as a listing does; `None` when the listing would not keep it.
    pub fn read(text: &str) -> Option<Self> {
        head(text)
    }

    /// Its `metadata`, parsed (`None` when absent or null).
    pub fn metadata(&self) -> Option<Value> {
        serde_json::from_str(self.metadata_text()?).ok()
    }

    /// Its `metadata` as Vapi sent it (`None` when absent or null).
    pub fn metadata_text(&self) -> Option<&str> {
        let r = self.metadata_at.as_ref()?;
        self.text.get(r.start as usize..r.end as usize)
    }

    /// The whole item, parsed. The text parsed when it was listed, so this cannot fail; `Null`
    /// stands in should it ever.
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

/// A listed item the controller cannot read.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    /// Its `id`, when that field could be read.
    pub id: Option<String>,
    /// Its `createdAt`, when that field could be read (paging still moves past it).
    pub created_at: Option<String>,
    /// The item's top-level fields that could be read on their own (`id`, `metadata`, …): the
    /// ownership marker, if it carries one, is in `metadata`.
    pub fields: Map<String, Value>,
    /// Why it cannot be read, naming the field where the parser could tell.
    pub error: String,
}

impl Unreadable {
    /// `assistant <id>` or `an assistant without a readable id`, for messages.
    pub fn label(&self) -> String {
        match &self.id {
            Some(id) => format!("assistant {id}"),
            None => "an assistant without a readable id".to_owned(),
        }
    }
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} cannot be read: {}", self.label(), self.error)
    }
}

/// Splits one page's body into readable items and unreadable ones.
pub(crate) fn parse_page(body: &[u8]) -> Result<Listing, VapiError> {
    let raw: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| {
        VapiError::Decode(format!(
            "GET /assistant should return a JSON array: {e} (body starts {})",
            super::error::snippet(body)
        ))
    })?;
    let mut page = Listing::default();
    for item in raw {
        match read_item(item) {
            Ok(value) => page.items.push(value),
            Err(unreadable) => page.unreadable.push(*unreadable),
        }
    }
    Ok(page)
}

/// One item, or why it cannot be read (boxed only to keep the `Result` small).
fn read_item(raw: &RawValue) -> Result<Item, Box<Unreadable>> {
    if let Some(item) = head(raw.get()) {
        return Ok(item);
    }
    // Not readable: the full parse names why (this path is for the rare bad item only).
    let error = match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::Object(body)) => {
            let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
            let (id, created_at) = (text("id"), text("createdAt"));
            let missing = match (&id, &created_at) {
                (Some(_), Some(_)) => {
                    // `head` refuses only what this parse refuses: unreachable, kept total.
                    return Ok(Item {
                        id: id.unwrap_or_default(),
                        created_at: created_at.unwrap_or_default(),
                        metadata_at: body
                            .get("metadata")
                            .filter(|m| !m.is_null())
                            .and_then(|_| metadata_range(raw.get())),
                        text: raw.get().into(),
                    });
                }
                (None, _) => "it has no string id",
                (Some(_), None) => "it has no string createdAt (needed to page the listing)",
            };
            return Err(Box::new(Unreadable {
                id,
                created_at,
                fields: body,
                error: missing.to_owned(),
            }));
        }
        Ok(other) => format!(
            "it is not a JSON object: {}",
            crate::reconcile::validate::show(&other)
        ),
        Err(e) => e.to_string(),
    };
    Err(Box::new(shallow(raw, error)))
}

/// A readable item without its tree: `None` unless the text is an object that parses as a
/// whole (the same walk, depth limit and number range as `serde_json::from_str::<Value>`) with a
/// string `id` and `createdAt`. A key given twice counts as a parse would: the last one.
fn head(text: &str) -> Option<Item> {
    #[derive(Default)]
    struct Head<'a> {
        id: Option<String>,
        created_at: Option<String>,
        metadata: Option<&'a str>,
    }
    struct Top;
    impl<'de> serde::de::Visitor<'de> for Top {
        type Value = Option<Head<'de>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut head = Head::default();
            while let Some(key) = map.next_key::<Key<'de>>()? {
                match key.0.as_ref() {
                    "id" => head.id = map.next_value::<Value>()?.as_str().map(str::to_owned),
                    "createdAt" => {
                        head.created_at = map.next_value::<Value>()?.as_str().map(str::to_owned);
                    }
                    "metadata" => {
                        // Borrowed from the text, then walked as a parse would walk it.
                        let raw = map.next_value::<&'de RawValue>()?.get();
                        serde_json::from_str::<Walk>(raw).map_err(serde::de::Error::custom)?;
                        head.metadata = Some(raw);
                    }
                    _ => map.next_value::<Walk>().map(|_| ())?,
                }
            }
            Ok(Some(head))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            while seq.next_element::<Walk>()?.is_some() {}
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let head = serde::Deserializer::deserialize_any(&mut de, Top).ok()??;
    de.end().ok()?;
    let metadata_at = match head.metadata {
        Some("null") | None => None,
        Some(raw) => Some(offsets(text, raw)?),
    };
    Some(Item {
        id: head.id?,
        created_at: head.created_at?,
        metadata_at,
        text: text.into(),
    })
}

/// Where `part`, a slice of `text`, lies in it.
fn offsets(text: &str, part: &str) -> Option<std::ops::Range<u32>> {
    let start = (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= text.len()).then_some(u32::try_from(start).ok()?..u32::try_from(end).ok()?)
}

/// Where the top-level `metadata` of an object's text is (the last, should it repeat).
fn metadata_range(text: &str) -> Option<std::ops::Range<u32>> {
    #[derive(serde::Deserialize)]
    struct Only<'a> {
        #[serde(borrow)]
        metadata: Option<&'a RawValue>,
    }
    let only: Only<'_> = serde_json::from_str(text).ok()?;
    offsets(text, only.metadata?.get())
}

/// Any JSON value, walked as [`Value`]'s own deserializer walks it (so it fails where that
/// fails: nesting beyond the limit, numbers out of range, bad escapes) and built into nothing.
/// `IgnoredAny` would not do: serde_json skips it without those checks.
struct Walk;

impl<'de> serde::Deserialize<'de> for Walk {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Walk)
    }
}

impl<'de> serde::de::Visitor<'de> for Walk {
    type Value = Walk;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Walk, A::Error> {
        while map.next_entry::<Key<'de>, Walk>()?.is_some() {}
        Ok(Walk)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Walk, A::Error> {
        while seq.next_element::<Walk>()?.is_some() {}
        Ok(Walk)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_str<E>(self, _: &str) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_unit<E>(self) -> Result<Walk, E> {
        Ok(Walk)
    }
}

/// The top-level fields of a JSON object text, in order and with repeats, none of them built:
/// skipping a raw value has no depth limit. `None` when the text is not an object.
pub(crate) fn top_level_fields(text: &str) -> Option<Vec<(String, &RawValue)>> {
    struct Fields;
    impl<'de> serde::de::Visitor<'de> for Fields {
        type Value = Vec<(String, &'de RawValue)>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut fields = Vec::new();
            while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                fields.push(entry);
            }
            Ok(fields)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = serde::Deserializer::deserialize_map(&mut de, Fields).ok()?;
    de.end().ok()?;
    Some(fields)
}

/// The top-level fields of an item that does not parse as a whole, each parsed on its own; the
/// error names the first field that does not parse.
fn shallow(raw: &RawValue, whole: String) -> Unreadable {
    let Some(top) = top_level_fields(raw.get()) else {
        return Unreadable {
            id: None,
            created_at: None,
            fields: Map::new(),
            error: whole,
        };
    };
    let mut fields = Map::new();
    let mut bad = Vec::new();
    for (key, value) in top {
        match serde_json::from_str::<Value>(value.get()) {
            Ok(v) => {
                fields.insert(key, v);
            }
            Err(e) => bad.push((key, e)),
        }
    }
    let error = match bad.first() {
        Some((key, e)) => format!("field {key:?} cannot be read: {e}"),
        None => whole,
    };
    let text = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_owned);
    Unreadable {
        id: text("id"),
        created_at: text("createdAt"),
        error,
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn an_item_beyond_the_parsers_depth_is_isolated_with_its_id_and_marker() {
        let deep = nested(200);
        let body = format!(
            r#"[{{"id":"a1","createdAt":"2026-01-01T00:00:00Z"}},
               {{"id":"bad","createdAt":"2026-01-02T00:00:00Z","model":{deep},
                 "metadata":{{"managedBy":"vapi-reconciler","agentId":"x"}}}},
               {{"id":"a3","createdAt":"2026-01-03T00:00:00Z"}}]"#
        );
        let page = parse_page(body.as_bytes()).expect("page");
        let ids: Vec<_> = page.items.iter().map(|i| i.id.clone()).collect();
        assert_eq!(ids, ["a1", "a3"]);
        let [bad] = page.unreadable.as_slice() else {
            panic!("{page:?}")
        };
        assert_eq!(bad.id.as_deref(), Some("bad"));
        assert_eq!(bad.created_at.as_deref(), Some("2026-01-02T00:00:00Z"));
        assert_eq!(bad.fields["metadata"]["agentId"], "x");
        assert!(!bad.fields.contains_key("model"));
        assert!(
            bad.error
                .starts_with("field \"model\" cannot be read: recursion limit exceeded"),
            "{}",
            bad.error
        );
        assert!(
            bad.to_string()
                .starts_with("assistant bad cannot be read: field \"model\""),
            "{bad}"
        );
    }

    #[test]
    fn every_kind_of_unreadable_item_is_kept_apart() {
        let twice = format!(
            r#"{{"id":"d","createdAt":"t","model":{},"model":{{}}}}"#,
            nested(300)
        );
        let cases: &[(&str, Option<&str>, &str)] = &[
            (
                &twice,
                Some("d"),
                "field \"model\" cannot be read: recursion limit",
            ),
            (
                r#"{"id":"n","createdAt":"t","temperature":1e400}"#,
                Some("n"),
                "field \"temperature\" cannot be read: number out of range",
            ),
            (r#"{"createdAt":"t"}"#, None, "it has no string id"),
            (r#"{"id":7,"createdAt":"t"}"#, None, "it has no string id"),
            (r#"{"id":"c"}"#, Some("c"), "it has no string createdAt"),
            (r#"5"#, None, "it is not a JSON object: 5"),
            (r#""text""#, None, "it is not a JSON object: \"text\""),
            (&nested(300), None, "recursion limit exceeded"),
        ];
        for (item, id, error) in cases {
            let body = format!(r#"[{item},{{"id":"ok","createdAt":"t"}}]"#);
            let page = parse_page(body.as_bytes()).expect(item);
            assert_eq!(page.items.len(), 1, "{item}");
            let [bad] = page.unreadable.as_slice() else {
                panic!("{item}: {page:?}")
            };
            assert_eq!(bad.id.as_deref(), *id, "{item}");
            assert!(bad.error.starts_with(error), "{item}: {}", bad.error);
        }
    }

    #[test]
    fn a_body_that_is_not_an_array_fails_the_page() {
        for body in [
            &b"<html>maintenance</html>"[..],
            br#"{"id":"x"}"#,
            b"[1,",
            b"",
        ] {
            let err = parse_page(body).expect_err("not an array");
            assert!(matches!(err, VapiError::Decode(_)), "{err:?}");
        }
    }

    #[test]
    fn an_item_is_readable_exactly_when_it_parses_and_keeps_its_text() {
        let items = [
            r#"{"id":"a","createdAt":"t","metadata":{"managedBy":"m"},"x":[1,{"y":"\u00e9"}]}"#,
            r#"{"id":"a","createdAt":"t","metadata":null}"#,
            r#"{"id":"a","createdAt":"t","metadata":{"managedBy":"x"},"metadata":{"agentId":"m"}}"#,
            r#"{"id":"a","createdAt":"t","metadata":{"n":1e400}}"#,
            r#"{"id":"first","id":"a","createdAt":"t"}"#,
            r#"{"id":"a","createdAt":"t","bad":"\ud800"}"#,
            r#"{"id":"a","createdAt":"t","n":-1e400}"#,
            r#"{"id":"a","createdAt":"t","n":18446744073709551616}"#,
            r#"{"id":"a","createdAt":"t","\ud800":1}"#,
        ];
        for item in items {
            let page = parse_page(format!("[{item}]").as_bytes()).expect("page");
            let parsed = serde_json::from_str::<Value>(item);
            assert_eq!(page.items.len(), usize::from(parsed.is_ok()), "{item}");
            if let (Some(read), Ok(parsed)) = (page.items.first(), parsed) {
                assert_eq!(read.value(), parsed, "{item}");
                assert_eq!(&*read.text, item);
                assert_eq!(read.id, parsed["id"].as_str().expect("id"));
                let metadata = parsed.get("metadata").filter(|m| !m.is_null());
                assert_eq!(read.metadata().as_ref(), metadata, "{item}");
            }
        }
    }

    #[test]
    fn deep_but_parseable_items_stay_readable() {
        // The page adds one level: an item of 127 levels is readable on its own.
        let body = format!(r#"[{{"id":"d","createdAt":"t","model":{}}}]"#, nested(126));
        let page = parse_page(body.as_bytes()).expect("page");
        assert_eq!((page.items.len(), page.unreadable.len()), (1, 0));
    }
}
