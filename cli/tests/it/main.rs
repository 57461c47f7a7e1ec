//! The `bucky` command driven in-process, checked against the reference vectors.

mod fill;
mod process;
mod support;
mod whisper;
