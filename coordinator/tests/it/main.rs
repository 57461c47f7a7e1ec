//! The coordinator's cluster operations against real agents served in-process on loopback.

mod cluster;
mod heal;
