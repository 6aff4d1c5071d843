//! # agora-acl
//!
//! Owns one decision: may this principal perform this action? The answer comes from the
//! operator's ACL document (the `--acls` JSON, in the shape Mesos uses, plus Agora's own
//! actions), parsed by [`Acls::parse`] and queried with [`Acls::allows`] or [`Acls::decide`].
//!
//! What it must not do: no I/O, no clock, no randomness, no tokio. It takes the document as a
//! `&str` and hands data back; reading the file (and deciding what to do when it is missing
//! or bad) is the binary's job. Its Cargo.toml depends only on serde, serde_json and
//! thiserror, so the dependency graph enforces this.
//!
//! ## The document
//!
//! ```json
//! {
//!   "permissive": true,
//!   "register_frameworks": [{"principals": ENTITY, "roles": ENTITY}],
//!   "run_tasks":           [{"principals": ENTITY, "users": ENTITY}],
//!   "teardown_frameworks": [{"principals": ENTITY, "framework_principals": ENTITY}],
//!   "update_weights":      [{"principals": ENTITY, "roles": ENTITY}],
//!   "view_frameworks":     [{"principals": ENTITY, "users": ENTITY}],
//!   "view_tasks":          [{"principals": ENTITY, "users": ENTITY}],
//!   "view_agents":         [{"principals": ENTITY, "agents": ENTITY}],
//!   "register_agents":     [{"principals": ENTITY, "agents": ENTITY}],
//!   "update_membership":   [{"principals": ENTITY, "members": ENTITY}],
//!   "drain_agents":        [{"principals": ENTITY, "agents": ENTITY}],
//!   "access_sandboxes":    [{"principals": ENTITY, "users": ENTITY}],
//!   "deactivate_agents":   [{"principals": ENTITY, "agents": ENTITY}],
//!   "reactivate_agents":   [{"principals": ENTITY, "agents": ENTITY}],
//!   "mark_agents_gone":    [{"principals": ENTITY, "agents": ENTITY}],
//!   "set_log_level":       [{"principals": ENTITY, "levels": ENTITY}]
//! }
//! ```
//!
//! `ENTITY` is `{"values": ["a", "b"]}`, `{"type": "ANY"}` or `{"type": "NONE"}`. Mesos'
//! explicit long form `{"type": "SOME", "values": [...]}` is accepted and means the same as
//! `{"values": [...]}`. Every key is optional and `permissive` defaults to `true`. Each entry
//! must have exactly its two keys. `agents` are agent principals or agent ids and `members`
//! are Raft node ids written as strings; all values are opaque, case-sensitive strings.
//!
//! The parser is strict, because a typo in an ACL file silently widens access: unknown keys,
//! duplicate keys (which JSON parsers would resolve by dropping one), an empty `values` list,
//! a non-string value, or any other entity shape is an [`AclError`] whose one-line message
//! names the place, e.g. `run_tasks[1].users: expected {"values": [...]} or {"type":
//! "ANY"|"NONE"}, found the string "alice"`.
//!
//! ## Semantics
//!
//! Each entry has a *subject* (`principals`, matched against the requesting principal) and
//! an *object* (`roles`, `users`, `framework_principals`, `agents` or `members`, matched
//! against what the action touches).
//!
//! * An entity *matches* a value as follows. `values` matches when the value is listed; an
//!   absent value (a request with no principal, i.e. an unauthenticated cluster, or a
//!   framework that registered without a principal) never matches `values`. `ANY` matches
//!   everything, absent values included. `NONE` also matches everything: it exists to deny.
//! * An entry *applies* to a request when its subject matches the principal and its object
//!   matches the object.
//! * Only the list for the request's action is consulted, in order. The first entry that
//!   applies decides: the request is allowed unless that entry's subject or object is
//!   `NONE`. Later entries are not looked at.
//! * When no entry applies, `permissive` decides.
//!
//! ## Worked example
//!
//! This is the example from the Mesos authorization documentation. `foo` may register
//! frameworks in role `analytics` and nobody else may; roles not mentioned fall through to
//! `permissive`.
//!
//! ```
//! use agora_acl::{Acls, Action};
//!
//! let acls = Acls::parse(r#"{
//!     "permissive": true,
//!     "register_frameworks": [
//!         {"principals": {"values": ["foo"]}, "roles": {"values": ["analytics"]}},
//!         {"principals": {"type": "NONE"},     "roles": {"values": ["analytics"]}}
//!     ]
//! }"#).unwrap();
//!
//! let analytics = Action::RegisterFramework { role: "analytics" };
//! let web = Action::RegisterFramework { role: "web" };
//!
//! // Entry 0 applies (foo is listed, analytics is listed) and has no NONE: allowed.
//! assert!(acls.allows(Some("foo"), &analytics));
//! // Entry 0 does not apply (bar is not listed); entry 1 applies (NONE matches bar,
//! // analytics is listed) and its subject is NONE: denied.
//! assert!(!acls.allows(Some("bar"), &analytics));
//! // No entry applies (neither lists role web): permissive (true) decides.
//! assert!(acls.allows(Some("bar"), &web));
//! // Without authentication there is no principal: entry 0 cannot apply, entry 1 does.
//! assert!(!acls.allows(None, &analytics));
//!
//! // `decide` also says which entry decided, for logs and error messages.
//! assert_eq!(
//!     acls.decide(Some("bar"), &analytics).to_string(),
//!     "denied by register_frameworks[1]"
//! );
//! ```

mod json;
mod parse;

use std::fmt;
use std::str::FromStr;

/// The ACL lists, one per [`Action`] kind, plus the `permissive` fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acls {
    permissive: bool,
    /// Indexed by [`Kind::index`].
    lists: [Vec<Entry>; Kind::COUNT],
}

/// Something a principal asks to do, with the object it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action<'a> {
    /// Register (or re-register) a framework in `role`. List: `register_frameworks`,
    /// object field `roles`.
    RegisterFramework { role: &'a str },
    /// Launch a task that runs as OS `user`. List: `run_tasks`, object field `users`.
    RunTask { user: &'a str },
    /// Tear down a framework registered by `framework_principal` (`None`: it registered
    /// without one, which only `ANY`/`NONE` objects match). List: `teardown_frameworks`,
    /// object field `framework_principals`.
    TeardownFramework {
        framework_principal: Option<&'a str>,
    },
    /// Change the weight of `role`. List: `update_weights`, object field `roles`.
    UpdateWeight { role: &'a str },
    /// See a framework whose user is `user`. List: `view_frameworks`, object field `users`.
    ViewFramework { user: &'a str },
    /// See a task running as `user`. List: `view_tasks`, object field `users`.
    ViewTask { user: &'a str },
    /// See `agent` (a principal or agent id). List: `view_agents`, object field `agents`.
    ViewAgent { agent: &'a str },
    /// Register `agent` (a principal or agent id). List: `register_agents`, object field
    /// `agents`.
    RegisterAgent { agent: &'a str },
    /// Add or remove Raft node `member` (its id as a string). List: `update_membership`,
    /// object field `members`.
    UpdateMembership { member: &'a str },
    /// Drain `agent` (a principal or agent id). List: `drain_agents`, object field `agents`.
    DrainAgent { agent: &'a str },
    /// Read the sandbox of a task running as `user`. List: `access_sandboxes`, object
    /// field `users`.
    AccessSandbox { user: &'a str },
    /// Stop offering `agent`'s resources. List: `deactivate_agents`, object field `agents`.
    DeactivateAgent { agent: &'a str },
    /// Offer `agent`'s resources again. List: `reactivate_agents`, object field `agents`.
    ReactivateAgent { agent: &'a str },
    /// Mark `agent` gone for good. List: `mark_agents_gone`, object field `agents`.
    MarkAgentGone { agent: &'a str },
    /// Change a master's log level to `level`. List: `set_log_level`, object field
    /// `levels`.
    SetLogLevel { level: &'a str },
}

/// The ACL document could not be used. The `Display` form is one line an operator can act
/// on, naming the place in the document.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum AclError {
    /// The text is not JSON. `message` is serde_json's, and ends with the line and column.
    #[error("ACL document is not valid JSON: {message}")]
    Syntax {
        message: String,
        line: usize,
        column: usize,
    },
    /// The text is JSON but not a valid ACL document. `path` is like
    /// `register_frameworks[0].roles`, or `top level` for the document itself.
    #[error("{path}: {problem}")]
    Invalid { path: String, problem: String },
}

impl AclError {
    /// Where in the document the problem is, when the document is JSON.
    pub fn path(&self) -> Option<&str> {
        match self {
            AclError::Syntax { .. } => None,
            AclError::Invalid { path, .. } => Some(path),
        }
    }
}

/// The outcome of [`Acls::decide`]: the answer and what produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the action may go ahead.
    pub allowed: bool,
    /// The document key of the list that was consulted, e.g. `"run_tasks"`.
    pub acl_key: &'static str,
    /// The index in that list of the entry that decided; `None` when no entry applied and
    /// `permissive` decided.
    pub entry: Option<usize>,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allowed { "allowed" } else { "denied" };
        match self.entry {
            Some(i) => write!(f, "{verdict} by {}[{i}]", self.acl_key),
            None => write!(
                f,
                "{verdict}: no {} entry applies and permissive is {}",
                self.acl_key, self.allowed
            ),
        }
    }
}

impl Acls {
    /// Everything allowed (no `--acls` given): no entries, `permissive` true.
    pub fn permissive() -> Acls {
        Acls {
            permissive: true,
            lists: Default::default(),
        }
    }

    /// Parses an ACL document (see the crate documentation for the shape and the errors).
    pub fn parse(json: &str) -> Result<Acls, AclError> {
        parse::parse(json)
    }

    /// The document's `permissive` field (true when absent): the answer when no entry
    /// applies.
    pub fn is_permissive_default(&self) -> bool {
        self.permissive
    }

    /// How many entries the document has across all lists (for a startup log line).
    pub fn entry_count(&self) -> usize {
        self.lists.iter().map(Vec::len).sum()
    }

    /// Whether `principal` (`None`: the request is unauthenticated) may perform `action`.
    pub fn allows(&self, principal: Option<&str>, action: &Action<'_>) -> bool {
        self.decide(principal, action).allowed
    }

    /// Like [`allows`](Acls::allows), but also says which entry decided.
    pub fn decide(&self, principal: Option<&str>, action: &Action<'_>) -> Decision {
        let kind = action.kind();
        let object = action.object();
        let list = &self.lists[kind.index()];
        match list
            .iter()
            .position(|entry| entry.applies(principal, object))
        {
            Some(i) => Decision {
                allowed: list[i].allows(),
                acl_key: kind.key(),
                entry: Some(i),
            },
            None => Decision {
                allowed: self.permissive,
                acl_key: kind.key(),
                entry: None,
            },
        }
    }
}

impl Default for Acls {
    fn default() -> Acls {
        Acls::permissive()
    }
}

impl FromStr for Acls {
    type Err = AclError;

    fn from_str(s: &str) -> Result<Acls, AclError> {
        Acls::parse(s)
    }
}

impl Action<'_> {
    /// The document key of the list that governs this action, e.g. `"register_frameworks"`.
    pub fn acl_key(&self) -> &'static str {
        self.kind().key()
    }

    /// The name of the object field in this action's entries, e.g. `"roles"`.
    pub fn object_field(&self) -> &'static str {
        self.kind().object_field()
    }

    fn kind(&self) -> Kind {
        match self {
            Action::RegisterFramework { .. } => Kind::RegisterFrameworks,
            Action::RunTask { .. } => Kind::RunTasks,
            Action::TeardownFramework { .. } => Kind::TeardownFrameworks,
            Action::UpdateWeight { .. } => Kind::UpdateWeights,
            Action::ViewFramework { .. } => Kind::ViewFrameworks,
            Action::ViewTask { .. } => Kind::ViewTasks,
            Action::ViewAgent { .. } => Kind::ViewAgents,
            Action::RegisterAgent { .. } => Kind::RegisterAgents,
            Action::UpdateMembership { .. } => Kind::UpdateMembership,
            Action::DrainAgent { .. } => Kind::DrainAgents,
            Action::AccessSandbox { .. } => Kind::AccessSandboxes,
            Action::DeactivateAgent { .. } => Kind::DeactivateAgents,
            Action::ReactivateAgent { .. } => Kind::ReactivateAgents,
            Action::MarkAgentGone { .. } => Kind::MarkAgentsGone,
            Action::SetLogLevel { .. } => Kind::SetLogLevel,
        }
    }

    /// The value the entry's object entity is matched against.
    fn object(&self) -> Option<&str> {
        match *self {
            Action::RegisterFramework { role } | Action::UpdateWeight { role } => Some(role),
            Action::RunTask { user }
            | Action::ViewFramework { user }
            | Action::ViewTask { user }
            | Action::AccessSandbox { user } => Some(user),
            Action::TeardownFramework {
                framework_principal,
            } => framework_principal,
            Action::ViewAgent { agent }
            | Action::RegisterAgent { agent }
            | Action::DrainAgent { agent }
            | Action::DeactivateAgent { agent }
            | Action::ReactivateAgent { agent }
            | Action::MarkAgentGone { agent } => Some(agent),
            Action::UpdateMembership { member } => Some(member),
            Action::SetLogLevel { level } => Some(level),
        }
    }
}

/// Which list of the document an action is governed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    RegisterFrameworks,
    RunTasks,
    TeardownFrameworks,
    UpdateWeights,
    ViewFrameworks,
    ViewTasks,
    ViewAgents,
    RegisterAgents,
    UpdateMembership,
    DrainAgents,
    AccessSandboxes,
    DeactivateAgents,
    ReactivateAgents,
    MarkAgentsGone,
    SetLogLevel,
}

impl Kind {
    const COUNT: usize = 15;

    /// In document order.
    const ALL: [Kind; Kind::COUNT] = [
        Kind::RegisterFrameworks,
        Kind::RunTasks,
        Kind::TeardownFrameworks,
        Kind::UpdateWeights,
        Kind::ViewFrameworks,
        Kind::ViewTasks,
        Kind::ViewAgents,
        Kind::RegisterAgents,
        Kind::UpdateMembership,
        Kind::DrainAgents,
        Kind::AccessSandboxes,
        Kind::DeactivateAgents,
        Kind::ReactivateAgents,
        Kind::MarkAgentsGone,
        Kind::SetLogLevel,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn key(self) -> &'static str {
        match self {
            Kind::RegisterFrameworks => "register_frameworks",
            Kind::RunTasks => "run_tasks",
            Kind::TeardownFrameworks => "teardown_frameworks",
            Kind::UpdateWeights => "update_weights",
            Kind::ViewFrameworks => "view_frameworks",
            Kind::ViewTasks => "view_tasks",
            Kind::ViewAgents => "view_agents",
            Kind::RegisterAgents => "register_agents",
            Kind::UpdateMembership => "update_membership",
            Kind::DrainAgents => "drain_agents",
            Kind::AccessSandboxes => "access_sandboxes",
            Kind::DeactivateAgents => "deactivate_agents",
            Kind::ReactivateAgents => "reactivate_agents",
            Kind::MarkAgentsGone => "mark_agents_gone",
            Kind::SetLogLevel => "set_log_level",
        }
    }

    fn object_field(self) -> &'static str {
        match self {
            Kind::RegisterFrameworks | Kind::UpdateWeights => "roles",
            Kind::RunTasks | Kind::ViewFrameworks | Kind::ViewTasks | Kind::AccessSandboxes => {
                "users"
            }
            Kind::TeardownFrameworks => "framework_principals",
            Kind::ViewAgents
            | Kind::RegisterAgents
            | Kind::DrainAgents
            | Kind::DeactivateAgents
            | Kind::ReactivateAgents
            | Kind::MarkAgentsGone => "agents",
            Kind::UpdateMembership => "members",
            Kind::SetLogLevel => "levels",
        }
    }

    fn from_key(key: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.key() == key)
    }
}

/// One side of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entity {
    /// Matches the listed values (never empty; never an absent value).
    Values(Vec<String>),
    /// Matches everything.
    Any,
    /// Matches everything, and an entry containing it denies.
    None,
}

impl Entity {
    fn matches(&self, value: Option<&str>) -> bool {
        match self {
            Entity::Values(values) => value.is_some_and(|v| values.iter().any(|x| x == v)),
            Entity::Any | Entity::None => true,
        }
    }
}

/// One element of an ACL list.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// `principals`.
    subject: Entity,
    /// `roles`, `users`, `framework_principals`, `agents` or `members`.
    object: Entity,
}

impl Entry {
    fn applies(&self, principal: Option<&str>, object: Option<&str>) -> bool {
        self.subject.matches(principal) && self.object.matches(object)
    }

    /// The decision of this entry when it applies.
    fn allows(&self) -> bool {
        self.subject != Entity::None && self.object != Entity::None
    }
}

#[cfg(test)]
mod tests;
