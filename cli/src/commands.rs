//! One module per `bucky` subcommand: its `…Args` and its `run`.

pub mod fill;
pub mod locate;
pub mod ring;
pub mod ring_args;
pub mod whisper;
