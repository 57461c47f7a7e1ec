//! Serving the coordinator: a bound listener, the token check, and a shutdown future.

use std::future::Future;

use bucky_proto::auth::TokenCheck;
use bucky_proto::v1 as pb;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::service::CoordinatorService;

/// Serves `service` on `listener` (over TLS when `tls` is given), every RPC checked against
/// `token`, until `shutdown` resolves.
///
/// # Errors
/// The TLS config or the transport failed.
pub async fn run(
    listener: TcpListener,
    service: CoordinatorService,
    token: &str,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    bucky_proto::tls::server_builder(tls)?
        .add_service(pb::coordinator_server::CoordinatorServer::with_interceptor(
            service,
            TokenCheck::new(token),
        ))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
