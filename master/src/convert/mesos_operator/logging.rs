//! Mesos' GET_LOGGING_LEVEL and SET_LOGGING_LEVEL as this replica's log level
//! ([`crate::logging`]): glog's verbosity 0, 1 and 2 or more are the filters `info`,
//! `debug` and `trace`; a level set through Mesos always reverts after its duration, as
//! Mesos' does.

use std::time::Duration;

use agora_mesos_proto::v1::master as op;
use tonic::Status;

use crate::convert::invalid;
use crate::logging;

/// SET_LOGGING_LEVEL's level as a filter, and its duration; a missing member or a
/// duration that is not positive is refused naming its Mesos field.
pub fn set_logging_level_from_mesos(call: &op::Call) -> Result<(String, Duration), Status> {
    let s = call
        .set_logging_level
        .as_ref()
        .ok_or_else(|| invalid("set_logging_level", "missing"))?;
    let nanos = s.duration.nanoseconds;
    if nanos <= 0 {
        return Err(invalid(
            "set_logging_level.duration.nanoseconds",
            format!("must be positive, not {nanos}"),
        ));
    }
    Ok((
        logging::filter_for_verbosity(s.level).to_string(),
        Duration::from_nanos(nanos as u64),
    ))
}

/// GET_LOGGING_LEVEL for a replica whose filter is `level` (none: 0).
pub fn get_logging_level(level: Option<&str>) -> op::response::GetLoggingLevel {
    op::response::GetLoggingLevel {
        level: level.map_or(0, logging::verbosity),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_mesos_proto::v1 as mesos;

    fn call(level: u32, nanoseconds: i64) -> op::Call {
        op::Call {
            r#type: Some(op::call::Type::SetLoggingLevel as i32),
            set_logging_level: Some(op::call::SetLoggingLevel {
                level,
                duration: mesos::DurationInfo { nanoseconds },
            }),
            ..Default::default()
        }
    }

    #[test]
    fn verbosity_becomes_a_filter_for_a_positive_duration() {
        assert_eq!(
            set_logging_level_from_mesos(&call(1, 2_000_000_000)).unwrap(),
            ("debug".to_string(), Duration::from_secs(2))
        );
        assert_eq!(
            set_logging_level_from_mesos(&call(3, 1)).unwrap().0,
            "trace"
        );
        let e = set_logging_level_from_mesos(&call(1, 0)).unwrap_err();
        assert!(
            e.message()
                .starts_with("set_logging_level.duration.nanoseconds:"),
            "{e:?}"
        );
        let e = set_logging_level_from_mesos(&op::Call::default()).unwrap_err();
        assert_eq!(e.message(), "set_logging_level: missing");
        assert_eq!(get_logging_level(Some("agora_master=trace,info")).level, 2);
        assert_eq!(get_logging_level(None).level, 0);
    }
}
