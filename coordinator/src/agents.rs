//! Reaching the agents: a small trait the cluster operations use, implemented over gRPC (and by
//! fakes in tests), so the logic above it is tested without a network.

use std::future::Future;
use std::time::Duration;

use bucky_proto::v1 as pb;
use futures::StreamExt;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

/// What went wrong talking to an agent, by kind, each naming the host and the address tried.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AgentError {
    /// Not reachable (connect failed, timed out, or the connection dropped).
    #[error("{host}: agent unreachable at {address}: {reason}")]
    Unreachable {
        /// The host.
        host: String,
        /// The address tried.
        address: String,
        /// Why.
        reason: String,
    },
    /// The TLS handshake failed (certificate, CA, or plaintext on one side).
    #[error("{host}: TLS with {address} failed: {reason}")]
    Tls {
        /// The host.
        host: String,
        /// The address tried.
        address: String,
        /// Why.
        reason: String,
    },
    /// The agent refused the token.
    #[error(
        "{host}: the agent at {address} refused the token: the coordinator's token_file must hold \
         the token the agent was started with"
    )]
    Unauthenticated {
        /// The host.
        host: String,
        /// The address tried.
        address: String,
    },
    /// The agent answered the call with an error.
    #[error("{host}: {what}: {message}")]
    Failed {
        /// The host.
        host: String,
        /// The kind of error, in words.
        what: &'static str,
        /// The agent's message.
        message: String,
    },
}

/// A gRPC status code in words.
pub fn code_words(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "error",
        Code::InvalidArgument => "invalid request",
        Code::DeadlineExceeded => "timed out",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "not allowed",
        Code::ResourceExhausted => "busy",
        Code::FailedPrecondition => "refused",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "not supported by this agent (an older version?)",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "not authenticated",
    }
}

/// The message of `status` and the errors under it, each said once (transport errors repeat
/// themselves down their chain: "tcp connect error: tcp connect error").
pub fn reason_of(status: &Status) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut push = |text: String| {
        for part in text.split(": ") {
            let part = part.trim();
            if !part.is_empty() && !parts.iter().any(|p| p == part) {
                parts.push(part.to_string());
            }
        }
    };
    push(status.message().to_string());
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        push(e.to_string());
        source = e.source();
    }
    if parts.is_empty() {
        parts.push(code_words(status.code()).to_string());
    }
    parts.join(": ")
}

/// Sorts a failed call into an [`AgentError`].
pub fn classify(host: &str, address: &str, status: &Status) -> AgentError {
    let reason = reason_of(status);
    let lower = reason.to_ascii_lowercase();
    let (host, address) = (host.to_string(), address.to_string());
    if status.code() == tonic::Code::Unauthenticated {
        return AgentError::Unauthenticated { host, address };
    }
    let tls = [
        "tls",
        "certificate",
        "handshake",
        "invalidcontenttype",
        "unknownissuer",
    ];
    if tls.iter().any(|w| lower.contains(w)) {
        return AgentError::Tls {
            host,
            address,
            reason,
        };
    }
    let transport = matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
    ) && [
        "transport",
        "connect",
        "connection",
        "broken pipe",
        "dns",
        "timed out",
    ]
    .iter()
    .any(|w| lower.contains(w));
    if transport {
        return AgentError::Unreachable {
            host,
            address,
            reason,
        };
    }
    AgentError::Failed {
        host,
        what: code_words(status.code()),
        message: status.message().to_string(),
    }
}

impl AgentError {
    /// Whether the agent could not be talked to at all (as opposed to answering with an error).
    pub fn is_unreachable(&self) -> bool {
        !matches!(self, AgentError::Failed { .. })
    }
}

/// Batches of metric names from one agent, as [`AgentApi::list_metrics`] streams them.
pub type NameBatches =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<Vec<String>, AgentError>> + Send>>;

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
    /// `ListMetrics`: the agent's metric names in byte order, in batches; a call that fails
    /// yields its error as the stream's only item.
    fn list_metrics(&self) -> NameBatches;
    /// `Confirm`: how many points of the copy at peer `source_agent` this agent's copy lacks,
    /// and the SHA-1 of the copy compared.
    fn confirm(
        &self,
        metric: &str,
        source_agent: &str,
    ) -> impl Future<Output = Result<pb::ConfirmResponse, AgentError>> + Send;
    /// `DeleteMetric`: removes the agent's copy if it still has `sha1`.
    fn delete_metric(
        &self,
        metric: &str,
        sha1: &str,
    ) -> impl Future<Output = Result<(), AgentError>> + Send;
    /// `Verify`, reporting versions done as it streams, returning the result.
    fn verify(
        &self,
        request: pb::VerifyRequest,
        progress: impl FnMut(u64) + Send,
    ) -> impl Future<Output = Result<pb::VerifyResult, AgentError>> + Send;
    /// `Restore` of a plan; `header` (total, job, pace; its entries ignored) goes with the
    /// first batch.
    fn restore(
        &self,
        entries: impl futures::Stream<Item = pb::RestoreEntry> + Send + 'static,
        header: pb::RestoreRequest,
        progress: impl FnMut(u64, u64) + Send,
    ) -> impl Future<Output = Result<pb::RestoreResult, AgentError>> + Send;
}

/// An agent over gRPC with the cluster's bearer token.
#[derive(Debug, Clone)]
pub struct GrpcAgent {
    host: String,
    address: String,
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
            address: address.to_string(),
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
            address: address.to_string(),
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

    fn error(&self, status: Status) -> AgentError {
        classify(&self.host, &self.address, &status)
    }

    fn ended(&self, what: &str) -> AgentError {
        AgentError::Unreachable {
            host: self.host.clone(),
            address: self.address.clone(),
            reason: format!("the {what} stream ended without a result (the agent went away?)"),
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
        Err(self.ended("backup"))
    }

    async fn verify(
        &self,
        request: pb::VerifyRequest,
        mut progress: impl FnMut(u64) + Send,
    ) -> Result<pb::VerifyResult, AgentError> {
        let mut stream = self
            .client()
            .verify(self.request(request))
            .await
            .map_err(|e| self.error(e))?
            .into_inner();
        while let Some(update) = stream.next().await {
            let update = update.map_err(|e| self.error(e))?;
            progress(update.done);
            if let Some(result) = update.result {
                return Ok(result);
            }
        }
        Err(self.ended("verify"))
    }

    async fn confirm(
        &self,
        metric: &str,
        source_agent: &str,
    ) -> Result<pb::ConfirmResponse, AgentError> {
        let request = pb::ConfirmRequest {
            metric: metric.to_string(),
            source_agent: source_agent.to_string(),
        };
        self.client()
            .confirm(self.request(request))
            .await
            .map(|r| r.into_inner())
            .map_err(|e| self.error(e))
    }

    async fn delete_metric(&self, metric: &str, sha1: &str) -> Result<(), AgentError> {
        let request = pb::DeleteMetricRequest {
            metric: metric.to_string(),
            sha1: sha1.to_string(),
        };
        self.client()
            .delete_metric(self.request(request))
            .await
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    fn list_metrics(&self) -> NameBatches {
        let agent = self.clone();
        let call = async move {
            match agent
                .client()
                .list_metrics(agent.request(pb::ListMetricsRequest {}))
                .await
            {
                Ok(response) => response
                    .into_inner()
                    .map(move |batch| batch.map(|b| b.metrics).map_err(|e| agent.error(e)))
                    .boxed(),
                Err(e) => {
                    futures::stream::once(futures::future::ready(Err(agent.error(e)))).boxed()
                }
            }
        };
        futures::stream::once(call).flatten().boxed()
    }

    async fn restore(
        &self,
        entries: impl futures::Stream<Item = pb::RestoreEntry> + Send + 'static,
        header: pb::RestoreRequest,
        mut progress: impl FnMut(u64, u64) + Send,
    ) -> Result<pb::RestoreResult, AgentError> {
        // Whatever has arrived goes at once: a plan streamed as it is made (a rebalance) must
        // not wait for a full batch.
        let batches = entries
            .ready_chunks(RESTORE_BATCH)
            .enumerate()
            .map(move |(i, entries)| match i {
                0 => pb::RestoreRequest {
                    entries,
                    ..header.clone()
                },
                _ => pb::RestoreRequest {
                    entries,
                    ..Default::default()
                },
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
        Err(self.ended("restore"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_sorted_by_kind_and_said_once() {
        let status =
            Status::unavailable("tcp connect error: tcp connect error: Connection refused");
        let e = classify("g1", "http://10.0.0.1:7070", &status);
        assert!(matches!(e, AgentError::Unreachable { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "g1: agent unreachable at http://10.0.0.1:7070: tcp connect error: Connection refused"
        );
        let e = classify("g1", "a", &Status::unauthenticated("bad token"));
        assert!(e.to_string().contains("refused the token"), "{e}");
        let e = classify(
            "g1",
            "a",
            &Status::unknown("transport error: invalid peer certificate: UnknownIssuer"),
        );
        assert!(matches!(e, AgentError::Tls { .. }), "{e:?}");
        let e = classify(
            "g1",
            "a",
            &Status::failed_precondition("a backup is running"),
        );
        assert_eq!(e.to_string(), "g1: refused: a backup is running");
        assert!(!e.is_unreachable());
        assert!(!e.to_string().contains("FailedPrecondition"));
    }
}
