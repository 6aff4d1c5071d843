//! From document text to [`Acls`], walking the JSON by hand so every error names its path.

use crate::json::{quote, Json};
use crate::{AclError, Acls, Entity, Entry, Kind};

const ENTITY_SHAPE: &str = r#"expected {"values": [...]} or {"type": "ANY"|"NONE"}"#;
const PERMISSIVE: &str = "permissive";
const PRINCIPALS: &str = "principals";

pub(crate) fn parse(text: &str) -> Result<Acls, AclError> {
    let root: Json = serde_json::from_str(text).map_err(|e| AclError::Syntax {
        message: e.to_string(),
        line: e.line(),
        column: e.column(),
    })?;
    let Json::Object(fields) = &root else {
        return Err(invalid(
            "top level",
            format!(
                r#"expected a JSON object like {{"permissive": false, "run_tasks": [...]}}, found {}"#,
                root.describe()
            ),
        ));
    };
    reject_duplicates("", fields)?;

    let mut acls = Acls::permissive();
    for (key, value) in fields {
        if key == PERMISSIVE {
            acls.permissive = match value {
                Json::Bool(b) => *b,
                other => {
                    return Err(invalid(
                        PERMISSIVE,
                        format!("expected true or false, found {}", other.describe()),
                    ))
                }
            };
        } else if let Some(kind) = Kind::from_key(key) {
            acls.lists[kind.index()] = parse_list(kind, value)?;
        } else {
            let known: Vec<&str> = std::iter::once(PERMISSIVE)
                .chain(Kind::ALL.iter().map(|k| k.key()))
                .collect();
            return Err(invalid(
                child("", key),
                format!(
                    "unknown key{}; known keys are {}",
                    suggestion(key, &known),
                    known
                        .iter()
                        .map(|k| quote(k))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(acls)
}

fn parse_list(kind: Kind, value: &Json) -> Result<Vec<Entry>, AclError> {
    let path = kind.key();
    let object_field = kind.object_field();
    let Json::Array(items) = value else {
        return Err(invalid(
            path,
            format!(
                r#"expected a list of entries like [{{"{PRINCIPALS}": ..., "{object_field}": ...}}], found {}"#,
                value.describe()
            ),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_entry(kind, &format!("{path}[{i}]"), item))
        .collect()
}

fn parse_entry(kind: Kind, path: &str, value: &Json) -> Result<Entry, AclError> {
    let object_field = kind.object_field();
    let both = format!(r#""{PRINCIPALS}" and "{object_field}""#);
    let Json::Object(fields) = value else {
        return Err(invalid(
            path,
            format!("expected an object with {both}, found {}", value.describe()),
        ));
    };
    reject_duplicates(path, fields)?;

    let mut subject = None;
    let mut object = None;
    for (key, value) in fields {
        if key == PRINCIPALS {
            subject = Some(parse_entity(&child(path, key), value)?);
        } else if key == object_field {
            object = Some(parse_entity(&child(path, key), value)?);
        } else {
            return Err(invalid(
                child(path, key),
                format!(
                    "unknown key{}; each {} entry has exactly {both}",
                    suggestion(key, &[PRINCIPALS, object_field]),
                    kind.key()
                ),
            ));
        }
    }
    let missing = |field: &str| {
        invalid(
            child(path, field),
            format!("missing; each {} entry needs both {both}", kind.key()),
        )
    };
    Ok(Entry {
        subject: subject.ok_or_else(|| missing(PRINCIPALS))?,
        object: object.ok_or_else(|| missing(object_field))?,
    })
}

fn parse_entity(path: &str, value: &Json) -> Result<Entity, AclError> {
    let Json::Object(fields) = value else {
        return Err(invalid(
            path,
            format!("{ENTITY_SHAPE}, found {}", value.describe()),
        ));
    };
    reject_duplicates(path, fields)?;

    let mut values = None;
    let mut kind = None;
    for (key, value) in fields {
        match key.as_str() {
            "values" => values = Some(parse_values(&child(path, key), value)?),
            "type" => kind = Some(parse_type(&child(path, key), value)?),
            _ => {
                return Err(invalid(
                    child(path, key),
                    format!(
                        "unknown key{}; {ENTITY_SHAPE}",
                        suggestion(key, &["values", "type"])
                    ),
                ))
            }
        }
    }
    match (kind, values) {
        (None | Some(EntityType::Some), Some(values)) => Ok(Entity::Values(values)),
        (Some(EntityType::Some), None) => Err(invalid(
            path,
            r#""type": "SOME" needs a non-empty "values" list"#,
        )),
        (Some(EntityType::Any), None) => Ok(Entity::Any),
        (Some(EntityType::None), None) => Ok(Entity::None),
        (Some(t @ (EntityType::Any | EntityType::None)), Some(_)) => Err(invalid(
            path,
            format!(
                r#""type": "{}" cannot be combined with "values"; use one or the other"#,
                t.name()
            ),
        )),
        // Only possible for `{}`: any other key was rejected above.
        (None, None) => Err(invalid(
            path,
            format!("{ENTITY_SHAPE}, found {}", value.describe()),
        )),
    }
}

#[derive(Debug, Clone, Copy)]
enum EntityType {
    Any,
    None,
    Some,
}

impl EntityType {
    fn name(self) -> &'static str {
        match self {
            EntityType::Any => "ANY",
            EntityType::None => "NONE",
            EntityType::Some => "SOME",
        }
    }
}

fn parse_type(path: &str, value: &Json) -> Result<EntityType, AclError> {
    let found = match value {
        Json::String(s) => match s.as_str() {
            "ANY" => return Ok(EntityType::Any),
            "NONE" => return Ok(EntityType::None),
            "SOME" => return Ok(EntityType::Some),
            _ => s.as_str(),
        },
        other => {
            return Err(invalid(
                path,
                format!(r#"expected "ANY" or "NONE", found {}"#, other.describe()),
            ))
        }
    };
    let hint = if ["ANY", "NONE", "SOME"].contains(&found.to_ascii_uppercase().as_str()) {
        " (type names are upper case)"
    } else {
        ""
    };
    Err(invalid(
        path,
        format!(
            r#"expected "ANY" or "NONE", found {}{hint}"#,
            value.describe()
        ),
    ))
}

fn parse_values(path: &str, value: &Json) -> Result<Vec<String>, AclError> {
    let Json::Array(items) = value else {
        return Err(invalid(
            path,
            format!("expected a list of strings, found {}", value.describe()),
        ));
    };
    if items.is_empty() {
        return Err(invalid(
            path,
            r#"empty list; it would match nothing (use {"type": "NONE"} to deny everyone, or list at least one value)"#,
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Json::String(s) => Ok(s.clone()),
            other => Err(invalid(
                format!("{path}[{i}]"),
                format!("expected a string, found {}", other.describe()),
            )),
        })
        .collect()
}

/// Equal keys in one object: JSON parsers keep one of them silently, and which one the
/// operator meant is unknowable, so refuse.
fn reject_duplicates(path: &str, fields: &[(String, Json)]) -> Result<(), AclError> {
    for (i, (key, _)) in fields.iter().enumerate() {
        if fields[..i].iter().any(|(earlier, _)| earlier == key) {
            return Err(invalid(
                child(path, key),
                "key appears more than once in the same object; merge the two into one",
            ));
        }
    }
    Ok(())
}

/// The path of `key` inside the object at `parent` (`""` for the top level).
fn child(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{}]", quote(key)),
    }
}

/// ` (did you mean "x"?)` when `key` is a near miss of one of `known`.
fn suggestion(key: &str, known: &[&str]) -> String {
    let lower = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&lower, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 5))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!(" (did you mean {}?)", quote(k)))
        .unwrap_or_default()
}

pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

fn invalid(path: impl Into<String>, problem: impl Into<String>) -> AclError {
    AclError::Invalid {
        path: path.into(),
        problem: problem.into(),
    }
}
