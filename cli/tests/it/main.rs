//! The `bucky` command driven in-process, checked against the reference vectors.

mod demo;
mod fill;
mod full_disk;
mod process;
mod ring;
mod support;
mod whisper;
