//! The bounds of every inbound message, checked in `convert` before any work is done:
//! counts per call, sizes of free text, the smallest task, and the range of every number.
//! Stated also in the `.proto` comments; a request outside them is INVALID_ARGUMENT naming
//! the field.

use std::time::Duration;

/// Tasks in one `Accept` (a 20,000-task accept took 112 s and broke replication).
pub const MAX_TASKS_PER_ACCEPT: usize = 1_000;
/// Offer ids in one `Accept` or `Decline`.
pub const MAX_OFFERS_PER_CALL: usize = 100;
/// Task ids in one `Reconcile`.
pub const MAX_TASKS_PER_RECONCILE: usize = 10_000;
/// Tasks an agent reports when it registers.
pub const MAX_REPORTED_TASKS: usize = 100_000;
/// Bytes of a task's command (and of an executor's command).
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Environment variables of one task, and bytes of each name plus value.
pub const MAX_ENV_VARS: usize = 1_000;
pub const MAX_ENV_VAR_BYTES: usize = 32 * 1024;
/// Files one task (or its executor) has fetched into its sandbox.
pub const MAX_URIS: usize = 64;
/// Bytes of one URI to fetch.
pub const MAX_URI_BYTES: usize = 4096;
/// Bytes of a framework message.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Attributes of an agent.
pub const MAX_ATTRIBUTES: usize = 100;
/// Open `Master.WatchLeader` streams on one replica (every agent and framework has one or
/// two); more are refused with RESOURCE_EXHAUSTED.
pub const MAX_LEADER_WATCHERS: i64 = 100_000;
/// Bytes in an agent's HOST:PORT (a DNS name and a port).
pub const MAX_ADDRESS_BYTES: usize = 261;
/// Bytes of a status update's message kept (an executor's text is cut there, at a
/// character boundary; the registry stores it).
pub const MAX_STATUS_MESSAGE_BYTES: usize = 4 * 1024;

/// The smallest task (Mesos' minimums): a task must ask for at least this many cpus and
/// this much memory, so an agent cannot be filled with unbounded zero-sized tasks.
pub const MIN_TASK_CPUS: f64 = 0.01;
pub const MIN_TASK_MEM_MB: f64 = 32.0;

/// A framework's failover timeout: at most a year.
pub const MAX_FAILOVER_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);
/// A role's DRF weight.
pub const MIN_WEIGHT: f64 = 0.001;
pub const MAX_WEIGHT: f64 = 1_000.0;
/// A kill's or executor shutdown's grace period: at most an hour.
pub const MAX_GRACE_PERIOD: Duration = Duration::from_secs(3600);
/// How long declined resources may be refused: at most a year.
pub const MAX_REFUSE: Duration = Duration::from_secs(365 * 24 * 3600);

use super::invalid;
use tonic::Status;

/// `len` items of `field`, at most `max`.
pub fn count(field: &str, len: usize, max: usize) -> Result<(), Status> {
    if len > max {
        return Err(invalid(field, format!("{len} given, at most {max}")));
    }
    Ok(())
}

/// `text` of `field`, at most `max` bytes.
pub fn bytes(field: &str, text: &[u8], max: usize) -> Result<(), Status> {
    if text.len() > max {
        return Err(invalid(
            field,
            format!("{} bytes, at most {max}", text.len()),
        ));
    }
    Ok(())
}

/// A grace period in milliseconds, at most [`MAX_GRACE_PERIOD`].
pub fn grace_period_ms(field: &str, ms: u64) -> Result<u64, Status> {
    if ms > MAX_GRACE_PERIOD.as_millis() as u64 {
        return Err(invalid(
            field,
            format!("{ms} ms, at most {} ms", MAX_GRACE_PERIOD.as_millis()),
        ));
    }
    Ok(ms)
}

/// A DRF weight in [`MIN_WEIGHT`, `MAX_WEIGHT`].
pub fn weight(field: &str, w: f64) -> Result<f64, Status> {
    if !(w.is_finite() && (MIN_WEIGHT..=MAX_WEIGHT).contains(&w)) {
        return Err(invalid(
            field,
            format!("{w} is not a number in [{MIN_WEIGHT}, {MAX_WEIGHT}]"),
        ));
    }
    Ok(w)
}

/// `text` cut to at most `max` bytes at a character boundary.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_cuts_at_a_character_boundary() {
        assert_eq!(truncate("abc".into(), 10), "abc");
        assert_eq!(truncate("abcdef".into(), 4), "abcd");
        // "é" is two bytes: a cut inside it leaves the whole character out.
        assert_eq!(truncate("aé".into(), 2), "a");
    }

    #[test]
    fn bounds_name_the_field_and_the_limit() {
        let e = count("tasks", 20_000, MAX_TASKS_PER_ACCEPT).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().starts_with("tasks: 20000 given, at most 1000"),
            "{e:?}"
        );
        assert!(count("tasks", 1_000, MAX_TASKS_PER_ACCEPT).is_ok());
        assert!(bytes("command", &[0; 65 * 1024], MAX_COMMAND_BYTES).is_err());
        assert!(grace_period_ms("grace_period_ms", u64::MAX).is_err());
        assert_eq!(grace_period_ms("g", 3_600_000).unwrap(), 3_600_000);
        for w in [5e-324, 0.0, -1.0, f64::NAN, f64::INFINITY, 1e6] {
            assert!(weight("weight", w).is_err(), "{w}");
        }
        assert_eq!(weight("weight", 2.0).unwrap(), 2.0);
    }
}
