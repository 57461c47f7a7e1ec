//! Harness for bucky's end-to-end tests across processes: the agents, the coordinator and the
//! `bucky` command started on loopback with their own whisper trees and buckets. The scenarios
//! arrive with the cluster issue; the single-process CLI tests live in `cli/tests/`.
