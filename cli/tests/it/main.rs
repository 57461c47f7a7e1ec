//! The `bucky` command driven in-process, checked against the reference vectors.

mod demo;
mod fill;
mod process;
mod ring;
mod support;
mod whisper;
