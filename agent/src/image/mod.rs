//! Container images on the agent (issue 14, under way): the I/O around the pure
//! [`agora_image`] crate. So far: unpacking a layer ([`unpack`]) for an overlayfs mount or
//! applied onto a directory.
//!
//! Must not: know about tasks, frameworks or the master; reach the network except a
//! registry (not yet here).

pub mod unpack;
