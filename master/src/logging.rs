//! This replica's log level, changed at run time (`agora log-level`, gRPC
//! `Operator.SetLogLevel`, Mesos' SET_LOGGING_LEVEL).
//!
//! The level is a tracing filter (`debug`, `agora_master=debug,info`), in force through a
//! reloadable filter the `agora-master` command line installs ([`install`]); a process
//! that runs masters without it (in-process tests) has no [`global`] control, and the
//! calls say so. A change with a duration holds that long, then the level goes back to the
//! *base*: the level set last without a duration, or the one the process started with. A
//! later change replaces an earlier one's pending return (its own duration, if any,
//! counts from then). Each replica has its own level: a change reaches the replica it is
//! sent to.
//!
//! What it must not do: decide who may change the level (the transport asks the ACLs,
//! `set_log_level`), or read the wall clock (deadlines are monotonic).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

/// The longest filter text accepted.
pub const MAX_LEVEL_LEN: usize = 1024;
/// The longest a temporary level may hold.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why a level was not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogLevelError {
    #[error("not a tracing filter (e.g. debug, or agora_master=debug,info): {0}")]
    Invalid(String),
    #[error("longer than {MAX_LEVEL_LEN} bytes")]
    TooLong,
    #[error("at most {}", humantime::format_duration(MAX_DURATION))]
    DurationTooLong,
    #[error("this process's log level cannot be changed at run time (it was not started by agora-master's command line)")]
    NotReloadable,
    #[error("the log filter could not be replaced: {0}")]
    Reload(String),
}

/// The level now, as a reply shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelNow {
    /// The filter in force.
    pub level: String,
    /// The level it goes back to (the same as `level` when nothing is pending).
    pub base: String,
    /// How long until it goes back to `base` (`None`: it stays).
    pub reverts_in: Option<Duration>,
}

impl LevelNow {
    /// Mesos' glog verbosity of the level in force: 0 for info and above, 1 for debug, 2
    /// for trace (the most verbose directive decides).
    pub fn verbosity(&self) -> u32 {
        verbosity(&self.level)
    }
}

/// Mesos' glog verbosity of a filter (see [`LevelNow::verbosity`]).
pub fn verbosity(filter: &str) -> u32 {
    use tracing_subscriber::filter::LevelFilter;
    match parse(filter).ok().and_then(|f| f.max_level_hint()) {
        Some(LevelFilter::TRACE) => 2,
        Some(LevelFilter::DEBUG) => 1,
        _ => 0,
    }
}

/// The filter for Mesos' glog verbosity `v`: info, debug, trace.
pub fn filter_for_verbosity(v: u32) -> &'static str {
    match v {
        0 => "info",
        1 => "debug",
        _ => "trace",
    }
}

/// A filter from the wire: field values are matched as text, never compiled as regular
/// expressions.
fn parse(text: &str) -> Result<EnvFilter, LogLevelError> {
    EnvFilter::builder()
        .with_regex(false)
        .parse(text)
        .map_err(|e| LogLevelError::Invalid(e.to_string()))
}

/// Checks `text` is a filter this replica accepts, and returns it trimmed.
pub fn validate(text: &str) -> Result<String, LogLevelError> {
    let text = text.trim();
    if text.len() > MAX_LEVEL_LEN {
        return Err(LogLevelError::TooLong);
    }
    if text.is_empty() {
        return Err(LogLevelError::Invalid("empty".into()));
    }
    parse(text)?;
    Ok(text.to_string())
}

type Reload = dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync;

struct State {
    current: String,
    base: String,
    /// Counts changes: a pending return applies only if no change came after it.
    generation: u64,
    reverts_at: Option<Instant>,
}

/// A replica's log level and how to change it. Cheap to clone.
#[derive(Clone)]
pub struct LogLevels {
    reload: Arc<Reload>,
    state: Arc<Mutex<State>>,
}

impl LogLevels {
    /// A level `initial` now in force, changed through `reload`.
    pub fn new(
        initial: &str,
        reload: impl Fn(EnvFilter) -> Result<(), String> + Send + Sync + 'static,
    ) -> LogLevels {
        LogLevels {
            reload: Arc::new(reload),
            state: Arc::new(Mutex::new(State {
                current: initial.to_string(),
                base: initial.to_string(),
                generation: 0,
                reverts_at: None,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The level in force, what it goes back to, and when.
    pub fn now(&self) -> LevelNow {
        let s = self.lock();
        LevelNow {
            level: s.current.clone(),
            base: s.base.clone(),
            reverts_in: s
                .reverts_at
                .map(|at| at.saturating_duration_since(Instant::now())),
        }
    }

    /// The level the process started with, or was last set to without a duration.
    pub fn base(&self) -> String {
        self.lock().base.clone()
    }

    /// Puts `level` in force: for good (`duration` none or zero: it becomes the base), or
    /// for `duration`, after which the base is back (unless another change came first).
    /// Must be called within a tokio runtime when `duration` is given.
    pub fn set(&self, level: &str, duration: Option<Duration>) -> Result<LevelNow, LogLevelError> {
        let level = validate(level)?;
        let duration = duration.filter(|d| !d.is_zero());
        if duration.is_some_and(|d| d > MAX_DURATION) {
            return Err(LogLevelError::DurationTooLong);
        }
        let generation = {
            let mut s = self.lock();
            let filter = parse(&level)?;
            (self.reload)(filter).map_err(LogLevelError::Reload)?;
            let previous = std::mem::replace(&mut s.current, level.clone());
            s.generation += 1;
            match duration {
                None => {
                    s.base = level.clone();
                    s.reverts_at = None;
                }
                Some(d) => s.reverts_at = Some(Instant::now() + d),
            }
            tracing::warn!(level = %s.current, %previous, base = %s.base, duration = ?duration, "log level changed");
            s.generation
        };
        if let Some(d) = duration {
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                this.revert(generation);
            });
        }
        Ok(self.now())
    }

    /// The base back in force, if no change came after change `generation`.
    fn revert(&self, generation: u64) {
        let mut s = self.lock();
        if s.generation != generation {
            return;
        }
        let base = s.base.clone();
        // The base was in force before (the start level, parsed as the command line did).
        match EnvFilter::try_new(&base)
            .map_err(|e| e.to_string())
            .and_then(|f| (self.reload)(f))
        {
            Ok(()) => {
                let previous = std::mem::replace(&mut s.current, base);
                s.reverts_at = None;
                s.generation += 1;
                tracing::warn!(level = %s.current, %previous, "log level back after its duration");
            }
            Err(e) => tracing::error!(error = %e, "the log level could not go back"),
        }
    }
}

static GLOBAL: OnceLock<LogLevels> = OnceLock::new();

/// Makes `levels` this process's log level control (once; later calls are ignored).
pub fn install(levels: LogLevels) {
    let _ = GLOBAL.set(levels);
}

/// This process's log level control, if its command line installed one.
pub fn global() -> Option<&'static LogLevels> {
    GLOBAL.get()
}

/// Sets this process's level (see [`LogLevels::set`]).
pub fn set(level: &str, duration: Option<Duration>) -> Result<LevelNow, LogLevelError> {
    global()
        .ok_or(LogLevelError::NotReloadable)?
        .set(level, duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording() -> (LogLevels, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let levels = LogLevels::new("info", move |f| {
            s.lock().unwrap().push(f.to_string());
            Ok(())
        });
        (levels, seen)
    }

    #[tokio::test]
    async fn a_timed_level_goes_back_to_the_base_unless_replaced() {
        let ms = Duration::from_millis;
        let (levels, seen) = recording();
        let now = levels.set("debug", Some(ms(200))).unwrap();
        assert_eq!(now.level, "debug");
        assert_eq!(now.base, "info");
        assert!(now.reverts_in.is_some_and(|d| d <= ms(200) && d > ms(100)));
        tokio::time::sleep(ms(400)).await;
        assert_eq!(levels.now().level, "info");
        assert_eq!(levels.now().reverts_in, None);
        assert_eq!(*seen.lock().unwrap(), ["debug", "info"]);

        // A change for good during a timed one: the timed one's return is void.
        levels.set("trace", Some(ms(100))).unwrap();
        levels.set("agora_master=debug,info", None).unwrap();
        tokio::time::sleep(ms(250)).await;
        let now = levels.now();
        assert_eq!(now.level, "agora_master=debug,info");
        assert_eq!(now.base, "agora_master=debug,info");
        // A timed change during a timed one: back to the base when the later one ends,
        // and the earlier one's end changes nothing.
        levels.set("debug", Some(ms(400))).unwrap();
        levels.set("trace", Some(ms(100))).unwrap();
        tokio::time::sleep(ms(250)).await;
        assert_eq!(levels.now().level, "agora_master=debug,info");
        levels.set("warn", Some(ms(2000))).unwrap();
        tokio::time::sleep(ms(300)).await;
        assert_eq!(
            levels.now().level,
            "warn",
            "the first timed change's end is void"
        );
    }

    #[test]
    fn bad_levels_are_refused_and_change_nothing() {
        let (levels, seen) = recording();
        assert!(matches!(
            levels.set("not a [filter", None),
            Err(LogLevelError::Invalid(_))
        ));
        assert!(matches!(
            levels.set("  ", None),
            Err(LogLevelError::Invalid(_))
        ));
        assert_eq!(
            levels.set(&"a".repeat(MAX_LEVEL_LEN + 1), None),
            Err(LogLevelError::TooLong)
        );
        assert_eq!(
            levels.set("debug", Some(MAX_DURATION + Duration::from_secs(1))),
            Err(LogLevelError::DurationTooLong)
        );
        assert!(seen.lock().unwrap().is_empty());
        assert_eq!(levels.now().level, "info");
    }

    #[test]
    fn mesos_verbosity_maps_to_levels_and_back() {
        assert_eq!(verbosity("info"), 0);
        assert_eq!(verbosity("warn"), 0);
        assert_eq!(verbosity("info,openraft=warn"), 0);
        assert_eq!(verbosity("agora_master=debug,info"), 1);
        assert_eq!(verbosity("trace"), 2);
        for v in 0..3 {
            assert_eq!(verbosity(filter_for_verbosity(v)), v);
        }
        assert_eq!(filter_for_verbosity(7), "trace");
    }
}
