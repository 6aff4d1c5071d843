//! # agora-image
//!
//! Owns what the agent needs to know of a container image before any byte moves: the
//! reference a task names (`[REGISTRY[:PORT]/]NAME[:TAG|@sha256:DIGEST]`, as Docker writes
//! it) parsed and normalized against the agent's default registry ([`reference`]), content
//! digests ([`digest`]), and whether a registry may be spoken to over plain HTTP
//! ([`reference::Transport`]: loopback registries may, as Docker allows, others only when
//! the operator names them in `--insecure-registries`).
//!
//! What it must not do: no I/O of any kind (no network, no filesystem, no clock), no tokio
//! and no HTTP client in its dependencies. Pulling, verifying layers against these digests
//! and unpacking them is the agent's, around this crate.

pub mod digest;
pub mod reference;

pub use digest::{Digest, DigestError};
pub use reference::{ImageRef, ReferenceError, Transport};
