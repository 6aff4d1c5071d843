//! # agora-image
//!
//! Owns what the agent needs to know of a container image before any byte moves: the
//! reference a task names (`[REGISTRY[:PORT]/]NAME[:TAG|@sha256:DIGEST]`, as Docker writes
//! it) parsed and normalized against the agent's default registry ([`reference`]), content
//! digests ([`digest`]), and whether a registry may be spoken to over plain HTTP
//! ([`reference::Transport`]: loopback registries may, as Docker allows, others only when
//! the operator names them in `--insecure-registries`), an image's configuration
//! ([`config`]: entrypoint, cmd, env, working dir, user, layers) and what a task runs in
//! it ([`process`]: the image's defaults and the task's command and environment combined
//! as Docker and Mesos do; the image's user looked up in the image's own passwd and group
//! files), and what each entry of a layer's tar stream means ([`layer`]: its path made
//! safe to join under the layer's directory, OCI whiteouts recognized).
//!
//! What it must not do: no I/O of any kind (no network, no filesystem, no clock), no tokio
//! and no HTTP client in its dependencies. Pulling, verifying layers against these digests
//! and unpacking them is the agent's, around this crate.

pub mod bundle;
pub mod config;
pub mod digest;
pub mod layer;
pub mod process;
pub mod reference;

pub use config::{ConfigError, ImageConfig};
pub use digest::{Digest, DigestError};
pub use layer::{EntryKind, LayerPathError};
pub use process::{Process, ProcessError, TaskCommand, UserSpec};
pub use reference::{ImageRef, ReferenceError, Transport};
