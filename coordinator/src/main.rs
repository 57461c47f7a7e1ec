//! `bucky-coordinator`: the cluster server.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Coordinates backups and restores across a Graphite cluster.
#[derive(Parser)]
#[command(version = bucky_coordinator::VERSION)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: bucky_shared::logging::LogArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Coordinator gRPC API to the bucky command.
    Serve {
        /// Config file.
        #[arg(
            long,
            env = "BUCKY_COORDINATOR_CONFIG",
            default_value = "/etc/bucky/coordinator.toml"
        )]
        config: PathBuf,
        /// Address to listen on, overriding the config (port 0 picks a free one; the bound
        /// address is printed).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Validate the config file and print the cluster it describes.
    CheckConfig {
        /// Config file.
        #[arg(
            long,
            env = "BUCKY_COORDINATOR_CONFIG",
            default_value = "/etc/bucky/coordinator.toml"
        )]
        config: PathBuf,
    },
    /// Completions and man pages.
    #[command(flatten)]
    Docs(bucky_shared::command_docs::DocsCommand),
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler succeeds on Unix");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Docs(command) => command.run(
            <Cli as clap::CommandFactory>::command(),
            &mut std::io::stdout(),
        ),
        Command::CheckConfig { config } => {
            let cluster = bucky_coordinator::config::load(&config)?;
            println!(
                "ring {} ({} destinations)",
                cluster.ring.fingerprint(),
                cluster.ring.destinations().len()
            );
            for host in &cluster.hosts {
                println!(
                    "{}  agent {}  bucket {}",
                    host.name, host.agent, host.bucket
                );
            }
            Ok(())
        }
        Command::Serve { config, listen } => {
            let cluster = bucky_coordinator::config::load(&config)?;
            let (token, warning) = bucky_proto::auth::read_server_token(&cluster.config.token_file)
                .map_err(anyhow::Error::msg)?;
            let listen = listen.unwrap_or_else(|| cluster.config.listen.clone());
            if let Some(warning) = warning {
                tracing::warn!("{warning}");
            }
            if cluster.config.tls.is_none() && !bucky_proto::tls::is_loopback(&listen) {
                tracing::warn!(
                    "serving plain-text gRPC on {listen}: the token crosses the network in clear; configure [tls] or listen on loopback"
                );
            }
            let tls = cluster
                .config
                .tls
                .as_ref()
                .map(|t| t.load())
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let metrics = cluster.config.metrics.clone();
            let service = bucky_coordinator::service::CoordinatorService::new(cluster, &token)?;
            if let Some(metrics) = metrics {
                let service = service.clone();
                tokio::spawn(async move {
                    if let Err(e) = service.serve_metrics(metrics).await {
                        tracing::error!(error = %e, "metrics are not served");
                    }
                });
            }
            service.start_schedule();
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let addr = listener.local_addr()?;
            println!("listening on {addr}");
            std::io::Write::flush(&mut std::io::stdout())?;
            tracing::info!(
                %addr,
                version = bucky_coordinator::VERSION,
                "coordinator serving"
            );
            bucky_coordinator::server::run(listener, service, &token, tls, shutdown()).await?;
            Ok(())
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bucky-coordinator: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
