//! Serving the agent: a bound listener, the token check, and a shutdown future.

use std::future::Future;

use bucky_proto::v1 as pb;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::service::AgentService;
use bucky_proto::auth::TokenCheck;

/// Serves `service` on `listener` (over TLS when `tls` is given), every RPC checked against
/// `token`, until `shutdown` resolves.
///
/// # Errors
/// The TLS config or the transport failed.
pub async fn run(
    listener: TcpListener,
    service: AgentService,
    token: &str,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    bucky_proto::tls::server_builder(tls)?
        .add_service(pb::agent_server::AgentServer::with_interceptor(
            service,
            TokenCheck::new(token),
        ))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

/// Starts an agent in this process on an ephemeral loopback port (bound before this returns);
/// it stops when the returned sender is dropped. For the demo and tests.
///
/// # Errors
/// The bucket cannot be opened or the port cannot be bound.
pub async fn spawn_loopback(
    config: crate::service::AgentConfig,
    token: &str,
) -> anyhow::Result<(std::net::SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let service = AgentService::new(config)?.with_peer_token(token)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let token = token.to_string();
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = run(listener, service, &token, None, shutdown).await {
            tracing::error!(error = %e, "in-process agent stopped");
        }
    });
    Ok((addr, stop))
}
