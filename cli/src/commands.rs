//! One module per `bucky` subcommand: its `…Args` and its `run`.

pub mod backup;
pub mod check;
pub mod coordinator;
pub mod demo;
pub mod fill;
pub mod inconsistent;
pub mod list;
pub mod locate;
pub mod progress;
pub mod rebalance;
pub mod restore;
pub mod ring;
pub mod ring_args;
pub mod status;
pub mod verify;
pub mod whisper;
