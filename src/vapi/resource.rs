//! The kinds of Vapi resource the client speaks to, by path.
//!
//! Vapi's resources share one REST shape — `POST /{kind}`, `GET /{kind}` (paged by
//! `createdAtLe`), `GET|PATCH|DELETE /{kind}/{id}` — so the client is one set of calls with the
//! kind as data. Each kind's route templates are static strings, which keeps the metrics' `route`
//! label a closed set (never an id).

/// A Vapi resource kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Assistant,
    Tool,
    PhoneNumber,
}

impl Resource {
    /// The collection's path, e.g. `/assistant`.
    pub fn path(self) -> &'static str {
        match self {
            Self::Assistant => "/assistant",
            Self::Tool => "/tool",
            Self::PhoneNumber => "/phone-number",
        }
    }

    /// The route template of one item, for metrics.
    pub fn item_route(self) -> &'static str {
        match self {
            Self::Assistant => "/assistant/{id}",
            Self::Tool => "/tool/{id}",
            Self::PhoneNumber => "/phone-number/{id}",
        }
    }

    /// The bounded `kind` label of metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Assistant => "assistant",
            Self::Tool => "tool",
            Self::PhoneNumber => "phone_number",
        }
    }

    pub(super) fn item(self, id: &str) -> String {
        format!("{}/{id}", self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_routes_are_the_collection_plus_an_id() {
        for r in [Resource::Assistant, Resource::Tool, Resource::PhoneNumber] {
            assert_eq!(r.item_route(), r.item("{id}"));
        }
    }
}
