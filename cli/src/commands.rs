//! One module per `bucky` subcommand: its `…Args` and its `run`.

pub mod fill;
pub mod whisper;
