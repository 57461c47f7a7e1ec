//! Reaching the agents: a small trait the cluster operations use, implemented over gRPC (and by
//! fakes in tests), so the logic above it is tested without a network.

use std::future::Future;
use std::time::Duration;

use bucky_proto::v1 as pb;
use futures::StreamExt;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

/// What went wrong talking to an agent.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AgentError {
    /// Not reachable (connect failed, timed out, or the connection dropped).
    #[error("{host}: unreachable: {reason}")]
    Unreachable {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
    /// The agent answered with an error.
    #[error("{host}: {status}")]
    Failed {
        /// The host.
        host: String,
        /// Its answer.
        status: String,
    },
}

/// One agent, as the coordinator uses it.
pub trait AgentApi: Send + Sync {
    /// The ring host the agent serves.
    fn host(&self) -> &str;
    /// `Info`.
    fn info(&self) -> impl Future<Output = Result<pb::InfoResponse, AgentError>> + Send;
    /// `Backup`, reporting `(done, total)` as it streams, returning the result.
    fn backup(
        &self,
        request: pb::BackupRequest,
        progress: impl FnMut(u64, u64) + Send,
    ) -> impl Future<Output = Result<pb::BackupResult, AgentError>> + Send;
    /// `Restore` of a plan.
    fn restore(
        &self,
        entries: impl futures::Stream<Item = pb::RestoreEntry> + Send + 'static,
        total: u64,
        progress: impl FnMut(u64, u64) + Send,
    ) -> impl Future<Output = Result<pb::RestoreResult, AgentError>> + Send;
}

/// An agent over gRPC with the cluster's bearer token.
#[derive(Debug, Clone)]
pub struct GrpcAgent {
    host: String,
    channel: Channel,
    authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

/// Entries per Restore message: a few hundred KB, far below gRPC's 4 MiB.
pub const RESTORE_BATCH: usize = 1000;

/// How long connecting to an agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl GrpcAgent {
    /// An agent at `address` (`http://host:port`, or `https://` with `tls`); connects lazily, so
    /// an agent that is down fails its own calls, not the construction.
    ///
    /// # Errors
    /// An invalid address or token.
    pub fn new(
        host: &str,
        address: &str,
        token: &str,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Result<Self, AgentError> {
        let bad = |reason: String| AgentError::Unreachable {
            host: host.to_string(),
            reason,
        };
        let mut endpoint = Endpoint::from_shared(address.to_string())
            .map_err(|e| bad(format!("invalid address {address}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| bad(format!("TLS: {e}")))?;
        }
        let channel = endpoint.connect_lazy();
        let authorization = format!("Bearer {token}")
            .parse()
            .map_err(|_| bad("the token is not valid ASCII".into()))?;
        Ok(GrpcAgent {
            host: host.to_string(),
            channel,
            authorization,
        })
    }

    fn client(&self) -> pb::agent_client::AgentClient<Channel> {
        pb::agent_client::AgentClient::new(self.channel.clone())
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }

    /// Connection failures are the agent being unreachable; anything the agent itself answered
    /// (bad request, a job already running) is a failure of the call.
    fn error(&self, status: Status) -> AgentError {
        let message = status.message().to_ascii_lowercase();
        let transport = matches!(
            status.code(),
            tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
        ) && ["transport", "connect", "connection", "broken pipe"]
            .iter()
            .any(|w| message.contains(w));
        if transport {
            AgentError::Unreachable {
                host: self.host.clone(),
                reason: status.message().to_string(),
            }
        } else {
            AgentError::Failed {
                host: self.host.clone(),
                status: format!("{:?}: {}", status.code(), status.message()),
            }
        }
    }
}

impl AgentApi for GrpcAgent {
    fn host(&self) -> &str {
        &self.host
    }

    async fn info(&self) -> Result<pb::InfoResponse, AgentError> {
        self.client()
            .info(self.request(pb::InfoRequest {}))
            .await
            .map(|r| r.into_inner())
            .map_err(|e| self.error(e))
    }

    async fn backup(
        &self,
        request: pb::BackupRequest,
        mut progress: impl FnMut(u64, u64) + Send,
    ) -> Result<pb::BackupResult, AgentError> {
        let mut stream = self
            .client()
            .backup(self.request(request))
            .await
            .map_err(|e| self.error(e))?
            .into_inner();
        while let Some(update) = stream.next().await {
            let update = update.map_err(|e| self.error(e))?;
            progress(update.done, update.total);
            if let Some(result) = update.result {
                return Ok(result);
            }
        }
        Err(AgentError::Unreachable {
            host: self.host.clone(),
            reason: "the backup stream ended without a result".into(),
        })
    }

    async fn restore(
        &self,
        entries: impl futures::Stream<Item = pb::RestoreEntry> + Send + 'static,
        total: u64,
        mut progress: impl FnMut(u64, u64) + Send,
    ) -> Result<pb::RestoreResult, AgentError> {
        let batches = entries
            .chunks(RESTORE_BATCH)
            .enumerate()
            .map(move |(i, entries)| pb::RestoreRequest {
                entries,
                total: if i == 0 { total } else { 0 },
            });
        let request = self.request(batches);
        let mut stream = self
            .client()
            .restore(request)
            .await
            .map_err(|e| self.error(e))?
            .into_inner();
        while let Some(update) = stream.next().await {
            let update = update.map_err(|e| self.error(e))?;
            progress(update.done, update.total);
            if let Some(result) = update.result {
                return Ok(result);
            }
        }
        Err(AgentError::Unreachable {
            host: self.host.clone(),
            reason: "the restore stream ended without a result".into(),
        })
    }
}
