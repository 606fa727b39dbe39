//! PURE phone-number core: a binding (a Vapi number, named by id or E.164 number, → an agent or
//! nobody) + the key's listed numbers + where the agent's assistant is → one [`NumberDecision`].
//!
//! The controller never buys, imports or deletes a number: the only write is a PATCH of its
//! `assistantId`, to the agent's assistant or to `null` (the number then rings nobody). A binding
//! whose number is not listed, or whose `number` matches two listed numbers, writes nothing and
//! says so. An agent whose assistant is not known yet leaves its number as it is: pointing it at
//! nothing would silence a line that may still ring a working assistant.

use serde_json::Value;
use uuid::Uuid;

use super::Mode;

/// One row of `phone_numbers`.
#[derive(Debug, Clone)]
pub struct DesiredBinding {
    pub id: Uuid,
    pub org_id: Uuid,
    pub vapi_id: Option<String>,
    pub number: Option<String>,
    pub agent_id: Option<Uuid>,
    pub generation: i64,
    pub mode: Mode,
}

impl DesiredBinding {
    /// `+15551230001` or the Vapi id, for messages.
    pub fn label(&self) -> String {
        match (&self.number, &self.vapi_id) {
            (Some(n), _) => n.clone(),
            (None, Some(id)) => format!("phone number {id}"),
            (None, None) => "phone number (unnamed)".to_owned(),
        }
    }
}

/// Where the binding's number should ring.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Unbound, or its agent is deleted: `assistantId` null.
    Nobody,
    Assistant(String),
    /// The agent has no assistant the controller has seen yet.
    Waiting(String),
}

/// One number as Vapi lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedNumber {
    pub id: String,
    pub number: Option<String>,
    pub assistant_id: Option<String>,
}

impl ListedNumber {
    pub fn from_value(v: &Value) -> Option<Self> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            id: text("id")?,
            number: text("number"),
            assistant_id: text("assistantId"),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum NumberAction {
    InSync {
        phone_id: String,
        assistant_id: Option<String>,
    },
    /// PATCH `assistantId` to `to` (`None`: null, unbound).
    Point {
        phone_id: String,
        from: Option<String>,
        to: Option<String>,
    },
    /// Left as it is until the agent's assistant is known.
    Waiting {
        phone_id: String,
        why: String,
    },
    NotFound,
    Ambiguous {
        ids: Vec<String>,
    },
}

impl NumberAction {
    pub fn writes(&self) -> bool {
        matches!(self, Self::Point { .. })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NumberDecision {
    pub binding: Uuid,
    pub org_id: Uuid,
    pub agent_id: Option<Uuid>,
    pub generation: i64,
    pub mode: Mode,
    pub label: String,
    pub action: NumberAction,
}

/// Decides one binding against the listed numbers of its key.
pub fn decide_number(
    b: &DesiredBinding,
    target: &Target,
    listed: &[ListedNumber],
) -> NumberDecision {
    let found: Vec<&ListedNumber> = match (&b.vapi_id, &b.number) {
        (Some(id), _) => listed.iter().filter(|n| &n.id == id).collect(),
        (None, Some(number)) => listed
            .iter()
            .filter(|n| n.number.as_deref() == Some(number.as_str()))
            .collect(),
        (None, None) => Vec::new(),
    };
    let action = match found.as_slice() {
        [] => NumberAction::NotFound,
        [n] => match target {
            Target::Waiting(why) => NumberAction::Waiting {
                phone_id: n.id.clone(),
                why: why.clone(),
            },
            Target::Nobody if n.assistant_id.is_none() => NumberAction::InSync {
                phone_id: n.id.clone(),
                assistant_id: None,
            },
            Target::Assistant(a) if n.assistant_id.as_deref() == Some(a.as_str()) => {
                NumberAction::InSync {
                    phone_id: n.id.clone(),
                    assistant_id: Some(a.clone()),
                }
            }
            Target::Nobody => NumberAction::Point {
                phone_id: n.id.clone(),
                from: n.assistant_id.clone(),
                to: None,
            },
            Target::Assistant(a) => NumberAction::Point {
                phone_id: n.id.clone(),
                from: n.assistant_id.clone(),
                to: Some(a.clone()),
            },
        },
        many => NumberAction::Ambiguous {
            ids: many.iter().map(|n| n.id.clone()).collect(),
        },
    };
    NumberDecision {
        binding: b.id,
        org_id: b.org_id,
        agent_id: b.agent_id,
        generation: b.generation,
        mode: b.mode,
        label: b.label(),
        action,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(number: &str) -> DesiredBinding {
        DesiredBinding {
            id: Uuid::from_u128(1),
            org_id: Uuid::from_u128(2),
            vapi_id: None,
            number: Some(number.into()),
            agent_id: Some(Uuid::from_u128(3)),
            generation: 1,
            mode: Mode::Enforce,
        }
    }

    fn n(id: &str, number: &str, assistant: Option<&str>) -> ListedNumber {
        ListedNumber {
            id: id.into(),
            number: Some(number.into()),
            assistant_id: assistant.map(str::to_owned),
        }
    }

    #[test]
    fn points_a_number_at_the_new_assistant() {
        let d = decide_number(
            &binding("+15550001"),
            &Target::Assistant("new".into()),
            &[
                n("p1", "+15550001", Some("dead")),
                n("p2", "+15550002", None),
            ],
        );
        assert_eq!(
            d.action,
            NumberAction::Point {
                phone_id: "p1".into(),
                from: Some("dead".into()),
                to: Some("new".into())
            }
        );
    }

    #[test]
    fn unbinds_and_stays_in_sync() {
        let listed = [n("p1", "+15550001", Some("a"))];
        assert!(matches!(
            decide_number(&binding("+15550001"), &Target::Nobody, &listed).action,
            NumberAction::Point { to: None, .. }
        ));
        assert!(matches!(
            decide_number(
                &binding("+15550001"),
                &Target::Assistant("a".into()),
                &listed
            )
            .action,
            NumberAction::InSync { .. }
        ));
    }

    #[test]
    fn a_missing_or_doubled_number_writes_nothing() {
        assert_eq!(
            decide_number(&binding("+1999"), &Target::Nobody, &[]).action,
            NumberAction::NotFound
        );
        let twice = [n("p1", "+1999", None), n("p2", "+1999", None)];
        assert!(
            !decide_number(&binding("+1999"), &Target::Nobody, &twice)
                .action
                .writes()
        );
        assert!(
            !decide_number(
                &binding("+1999"),
                &Target::Waiting("pending".into()),
                &[n("p1", "+1999", Some("old"))]
            )
            .action
            .writes()
        );
    }
}
