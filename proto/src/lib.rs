//! Bucky's gRPC contract, package `bucky.v1`, generated at build time by protox and
//! tonic-prost-build (no system `protoc`). Callers write `use bucky_proto::v1 as pb;`.
#![warn(missing_docs)]

/// The version `--version` prints: the package version and the commit it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("BUCKY_COMMIT"), ")");

pub mod auth;
pub mod tls;

/// Generated messages, clients and servers of `bucky.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("bucky.v1");
}

#[cfg(test)]
mod tests {
    use super::v1 as pb;
    use prost::Message;

    #[test]
    fn info_response_round_trips_on_the_wire() {
        let info = pb::InfoResponse {
            node: "graphite-01".into(),
            version: "0.1.0".into(),
            whisper_root: "/var/lib/graphite/whisper".into(),
            metric_count: 3,
            running_job: Some(pb::Job {
                kind: "backup".into(),
                started: 1_700_000_000,
                done: 1,
                total: 3,
            }),
            ..Default::default()
        };
        let bytes = info.encode_to_vec();
        assert_eq!(pb::InfoResponse::decode(bytes.as_slice()).unwrap(), info);
    }
}
