//! # agora-cli
//!
//! The `agora` binary (`src/main.rs`) is the whole crate: command-line parsing and
//! presentation for `dev`, `run`, `status`, the tables, `weights`, `members` and
//! `log-level` (each master's log level, asked of each master itself). This
//! library target is empty; nothing links against it.
//!
//! What it must not do: talk to masters other than through `agora-driver` and the public
//! proto API; spell a task state as a string (it uses the domain `agora_driver::TaskState`
//! and the driver's conversion); read the wall clock other than through its `clock`
//! module.
