//! # agora-proto
//!
//! Owns Agora's wire API: the `.proto` files under `proto/agora/v1/` (the public API for
//! frameworks, executors, agents and operators in any language) and the Rust types and
//! tonic clients/servers generated from them at build time with protox, so no system
//! `protoc` is needed.
//!
//! What it must not do: hold domain logic or conversions. Each crate that speaks the API
//! keeps its own single conversion layer between these generated types and its domain types.

#![allow(clippy::all, missing_docs)]

/// Version 1 of the API.
pub mod v1 {
    tonic::include_proto!("agora.v1");
}

/// Response metadata key carrying the leader's HOST:PORT when a follower refuses a call.
pub const LEADER_METADATA_KEY: &str = "agora-leader";
