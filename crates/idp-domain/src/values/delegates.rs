//! An agent's delegates (RFC 8693 delegation, contract section 12): the
//! agents allowed to act on its behalf.

use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::ValueError;
use crate::values::AgentId;

/// Most delegates an agent may name.
pub const MAX_DELEGATES: usize = 20;

/// 0 to [`MAX_DELEGATES`] distinct agent ids, in the order given. That each
/// names an agent of the same owner is the service's to check, against the
/// store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delegates(Vec<AgentId>);

impl Delegates {
    /// Checks a list as a client sent it (UUID strings).
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, ValueError> {
        if raw.len() > MAX_DELEGATES {
            return Err(ValueError::new(
                "delegates",
                format!("at most {MAX_DELEGATES} delegates"),
            ));
        }
        let mut ids: Vec<AgentId> = Vec::with_capacity(raw.len());
        for (i, item) in raw.iter().enumerate() {
            let id = Uuid::parse_str(item.as_ref())
                .map(AgentId)
                .map_err(|_| ValueError::new(format!("delegates[{i}]"), "must be an agent id"))?;
            if ids.contains(&id) {
                return Err(ValueError::new(
                    format!("delegates[{i}]"),
                    "delegates must be distinct",
                ));
            }
            ids.push(id);
        }
        Ok(Self(ids))
    }

    /// Builds the list from ids a store kept.
    pub fn from_ids(ids: Vec<AgentId>) -> Self {
        Self(ids)
    }

    /// The ids, in order.
    pub fn ids(&self) -> &[AgentId] {
        &self.0
    }

    /// Whether `agent` may act on the owner agent's behalf.
    pub fn contains(&self, agent: AgentId) -> bool {
        self.0.contains(&agent)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Delegates {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_ids_bounded_and_distinct() {
        let id = "0b7c1a2e-0000-7000-8000-000000000001";
        assert_eq!(Delegates::parse(&[id]).unwrap().ids().len(), 1);
        assert_eq!(
            Delegates::parse(&["not-a-uuid"]).unwrap_err().field,
            "delegates[0]"
        );
        assert_eq!(
            Delegates::parse(&[id, id]).unwrap_err().field,
            "delegates[1]"
        );
        let many: Vec<String> = (0..21)
            .map(|i| format!("0b7c1a2e-0000-7000-8000-{i:012}"))
            .collect();
        assert!(Delegates::parse(&many).is_err());
        assert!(Delegates::parse(&many[..20]).is_ok());
        assert!(Delegates::parse::<&str>(&[]).unwrap().is_empty());
    }

    #[test]
    fn spellings_of_one_id_are_one_delegate() {
        let lower = "0b7c1a2e-0000-7000-8000-000000000001";
        let upper = lower.to_uppercase();
        assert!(Delegates::parse(&[lower, upper.as_str()]).is_err());
    }
}
