//! # agora-driver
//!
//! Owns the client side of Agora's API for Rust programs: [`MasterClient`] finds the
//! leading master among any list of masters and follows it across failovers. (The
//! scheduler driver for frameworks and the executor driver build on it.)
//!
//! What it must not do: depend on any master internals (openraft, sled, the registry); it
//! speaks only the public `.proto` API, as a client in any other language would.

mod master_client;

pub use master_client::{DriverError, MasterClient, RetryPolicy};
