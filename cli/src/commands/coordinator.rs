//! Reaching the coordinator: its address and the bearer token, shared by the cluster commands.

use std::path::PathBuf;

use anyhow::Context;
use bucky_proto::v1 as pb;
use clap::Args;
use tonic::transport::Channel;

/// Where the coordinator is.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Coordinator address, e.g. http://bucky.example:7430.
    #[arg(long, env = "BUCKY_COORDINATOR")]
    pub coordinator: String,
    /// File holding the bearer token.
    #[arg(long, env = "BUCKY_TOKEN_FILE", default_value = "/etc/bucky/token")]
    pub token_file: PathBuf,
    /// PEM CA the coordinator's certificate chains to (for an https:// coordinator; default the
    /// system's CA roots).
    #[arg(long, env = "BUCKY_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// A connected client plus the authorization header.
pub struct Client {
    inner: pb::coordinator_client::CoordinatorClient<Channel>,
    authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl Client {
    /// Connects to the coordinator.
    ///
    /// # Errors
    /// An unreadable token, a bad address, or the coordinator not answering.
    pub async fn connect(args: &CoordinatorArgs) -> anyhow::Result<Client> {
        let token = bucky_proto::auth::read_token(&args.token_file).map_err(anyhow::Error::msg)?;
        if !args.coordinator.contains("://") {
            anyhow::bail!(
                "the coordinator address {0} has no scheme: use http://{0} (or https:// with \
                 --ca-file)",
                args.coordinator
            );
        }
        let mut endpoint = tonic::transport::Endpoint::from_shared(args.coordinator.clone())
            .with_context(|| format!("invalid coordinator address {}", args.coordinator))?
            .connect_timeout(std::time::Duration::from_secs(5));
        if args.coordinator.starts_with("https://") {
            // Without --ca-file, the system's CA roots.
            let tls = bucky_proto::tls::client(args.ca_file.as_deref(), None)
                .map_err(anyhow::Error::msg)?;
            endpoint = endpoint.tls_config(tls)?;
        }
        let channel = endpoint.connect().await.map_err(|e| {
            let mut parts: Vec<String> = Vec::new();
            let mut cause: Option<&dyn std::error::Error> = Some(&e);
            while let Some(c) = cause {
                for part in c.to_string().split(": ") {
                    if !parts.iter().any(|p| p == part) {
                        parts.push(part.to_string());
                    }
                }
                cause = c.source();
            }
            anyhow::anyhow!(
                "cannot reach the coordinator at {} ({}); is bucky-coordinator running there, \
                 and is that the address in --coordinator or BUCKY_COORDINATOR?",
                args.coordinator,
                parts.join(": ")
            )
        })?;
        Ok(Client {
            inner: pb::coordinator_client::CoordinatorClient::new(channel),
            authorization: format!("Bearer {token}")
                .parse()
                .context("the token is not valid ASCII")?,
        })
    }

    /// A request carrying the token.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }

    /// The generated client.
    pub fn rpc(&mut self) -> &mut pb::coordinator_client::CoordinatorClient<Channel> {
        &mut self.inner
    }
}

/// A coordinator's error answer as an operator reads it: its kind in words, its message, and
/// what to check where that helps; never gRPC's debug text.
pub fn said(status: tonic::Status, args: &CoordinatorArgs) -> anyhow::Error {
    use bucky_coordinator::agents::{code_words, reason_of};
    match status.code() {
        tonic::Code::Unauthenticated => anyhow::anyhow!(
            "the coordinator at {} refused the token in {}: it must be the token the \
             coordinator's token_file holds",
            args.coordinator,
            args.token_file.display()
        ),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
            anyhow::anyhow!(
                "the coordinator at {} failed: {}",
                args.coordinator,
                reason_of(&status)
            )
        }
        code => anyhow::anyhow!("{}: {}", code_words(code), status.message()),
    }
}

/// Runs an async command on a fresh runtime (the CLI is otherwise synchronous).
pub fn block_on<T>(
    future: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

/// `1.2 GB`-style sizes.
pub fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// `3h12m`-style ages.
pub fn human_age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        s => format!("{}d{:02}h", s / 86_400, s / 3600 % 24),
    }
}
