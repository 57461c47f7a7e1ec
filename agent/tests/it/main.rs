//! The backup engine end to end: real whisper trees in temp dirs, `file://` and in-memory
//! buckets, a store wrapper that counts requests and injects faults.

mod backup;
mod faults;
mod grpc;
mod hostile;
mod live;
mod process;
mod restore;
mod s3;
mod support;
mod tree;
mod verify;
