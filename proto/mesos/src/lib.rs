//! Apache Mesos' v1 HTTP API on the wire, for Agora's Mesos-compatible endpoints: the scheduler
//! API (`POST /api/v1/scheduler`), the executor API (`POST /api/v1/executor`) and the operator
//! API (`POST /api/v1`), so that unmodified Mesos frameworks and executors (pymesos, mesos-go,
//! Mesos' Java HTTP client) can run on Agora.
//!
//! # What this crate owns
//!
//! - **The wire types.** Our own proto2 definitions under `mesos/v1/` (packages `mesos.v1`,
//!   `mesos.v1.scheduler`, `mesos.v1.executor`, `mesos.v1.master`), written for Agora but
//!   carrying Mesos 1.11's message names, field names, field numbers and enum values exactly,
//!   for the subset Agora serves. The Rust types are generated at build time by prost-build
//!   from protox's descriptors (no system `protoc`) and live in [`v1`] and its submodules.
//! - **Mesos' JSON mapping** of every message ([`json`], [`MesosJson`]): field names as in the
//!   .proto (`framework_info`), enums by name, bytes as base64, 64-bit integers as numbers,
//!   unset optional fields left out; unknown fields are ignored on input, and a wrongly typed or
//!   missing required field is an error naming its path.
//! - **RecordIO** ([`recordio`]): Mesos' `<length>\n<bytes>` framing of event streams, an
//!   encoder and an incremental, bounded decoder.
//!
//! # What it must not do
//!
//! No I/O, no tokio, no HTTP, no clock, and no Agora domain types: it is pure wire vocabulary.
//! Converting these messages to and from Agora's types (and deciding what a call means) lives
//! in the master's and agent's transport layers, which depend on this crate, never the other
//! way round.
//!
//! # Naming
//!
//! prost turns proto names into Rust ones: `FrameworkID` is [`v1::FrameworkId`], `URL` is
//! [`v1::Url`], nested messages live in snake_case modules (`Call.Subscribe` is
//! `v1::scheduler::call::Subscribe`), enum values lose their enum's prefix only where they
//! carry it, and a field named `type` is `r#type` (with accessors `r#type()` and
//! `set_type()`). Optional proto2 scalars are `Option`s; required fields are plain values.
//! Fields Mesos deprecates (`FrameworkInfo.role`, `Resource.role`, ...) are `#[deprecated]`.

pub mod json;
pub mod media;
pub mod recordio;

pub use json::{JsonError, MesosJson};
pub use media::Encoding;

/// Package `mesos.v1`: the common types, and the API packages as submodules.
pub mod v1 {
    #![allow(deprecated, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/mesos.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/mesos.v1.serde.rs"));

    /// Package `mesos.v1.scheduler`: the scheduler API's `Call` and `Event`.
    pub mod scheduler {
        #![allow(deprecated, clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.scheduler.rs"));
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.scheduler.serde.rs"));
    }

    /// Package `mesos.v1.executor`: the executor API's `Call` and `Event`.
    pub mod executor {
        #![allow(deprecated, clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.executor.rs"));
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.executor.serde.rs"));
    }

    /// Package `mesos.v1.master`: the operator API's `Call`, `Response` and `Event`.
    pub mod master {
        #![allow(deprecated, clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.master.rs"));
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.master.serde.rs"));
    }
}
