//! Identifiers of the registry's entities. Each is a distinct type so that an agent id can
//! never be passed where a framework id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps `value` after checking it is a usable id (see [`validate_id`]).
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                validate_id(&value)?;
                Ok(Self(value))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// An agent's id, assigned by the leader at first registration and kept by the agent.
    AgentId
);
string_id!(
    /// A framework's id, assigned by the leader at first subscription.
    FrameworkId
);
string_id!(
    /// A task's id, chosen by its framework; unique within that framework.
    TaskId
);
string_id!(
    /// An offer's id, assigned by the leader's allocator.
    OfferId
);

/// Why a string is not a usable id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("id is empty")]
    Empty,
    #[error("id is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("id contains {0:?}; allowed are letters, digits and - _ . :")]
    BadCharacter(char),
}

/// Longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 255;

/// Ids are printable and path-safe: letters, digits, `-`, `_`, `.` and `:`, 1 to 255 bytes,
/// and never `.` or `..` (ids name sandbox directories on agents).
pub fn validate_id(value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty);
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { max: MAX_ID_LEN });
    }
    if value == "." || value == ".." {
        return Err(IdError::BadCharacter('.'));
    }
    match value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        Some(c) => Err(IdError::BadCharacter(c)),
        None => Ok(()),
    }
}

/// Longest name shown to people (framework and task names, hostnames, attributes), in
/// bytes.
pub const MAX_NAME_LEN: usize = 1024;

/// Why a string is not a usable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty")]
    Empty,
    #[error("longer than {max} bytes")]
    TooLong { max: usize },
    #[error("contains the control character {0:?}")]
    ControlCharacter(char),
}

/// Names shown to people are free text but bounded: not blank, at most
/// [`MAX_NAME_LEN`] bytes, and without control characters (no newlines or escapes to
/// forge log lines or terminal output). They are displayed as text, never as markup.
pub fn validate_name(value: &str) -> Result<(), NameError> {
    if value.trim().is_empty() {
        return Err(NameError::Empty);
    }
    if value.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { max: MAX_NAME_LEN });
    }
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(NameError::ControlCharacter(c)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_free_text() {
        for ok in [
            "web",
            "Payments <prod> & \"batch\"",
            "ünïcode ✓",
            &"x".repeat(MAX_NAME_LEN),
        ] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_name(" "), Err(NameError::Empty));
        assert_eq!(
            validate_name(&"x".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong { max: MAX_NAME_LEN })
        );
        assert_eq!(
            validate_name("a\nb"),
            Err(NameError::ControlCharacter('\n'))
        );
        assert_eq!(
            validate_name("a\u{1b}[31m"),
            Err(NameError::ControlCharacter('\u{1b}'))
        );
    }

    #[test]
    fn accepts_ordinary_ids() {
        for ok in ["a", "agent-1", "9f0c_3.x:y", &"x".repeat(MAX_ID_LEN)] {
            assert!(AgentId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_ids() {
        assert_eq!(TaskId::new(""), Err(IdError::Empty));
        assert_eq!(
            TaskId::new("x".repeat(MAX_ID_LEN + 1)),
            Err(IdError::TooLong { max: MAX_ID_LEN })
        );
        assert_eq!(TaskId::new("a/b"), Err(IdError::BadCharacter('/')));
        assert_eq!(TaskId::new(".."), Err(IdError::BadCharacter('.')));
        assert_eq!(TaskId::new("a b"), Err(IdError::BadCharacter(' ')));
    }
}
