//! # agora-agent
//!
//! Will own the agent (Mesos "slave"): advertising a host's resources to the leading master,
//! running tasks in cgroups, and delivering their status updates reliably. Nothing is built
//! here yet; the agent arrives with its own issue. The master already accepts agent
//! registrations (`agora.v1.Master/RegisterAgent`).
