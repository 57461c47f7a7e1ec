//! `bucky-agent`: the per-node agent. Its standalone mode backs one host up into its own bucket
//! and restores it, so a single node can replace whisper-backup from cron.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bucky_agent::backup::{self, BackupOptions};
use bucky_agent::bucket::{Bucket, StoreOptions};
use bucky_agent::restore::{self, RestoreOptions};
use bucky_agent::tree::Selection;
use bucky_shared::layout::{Version, parse_date};
use clap::{Args, Parser, Subcommand};

/// The bucky agent: backs up and restores one Graphite node's whisper tree.
#[derive(Parser)]
#[command(version = bucky_agent::VERSION)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: bucky_shared::logging::LogArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Back the whisper tree up into this node's bucket.
    Backup(BackupArgs),
    /// Restore the whisper tree from a bucket (new files written, existing ones safe-filled).
    Restore(RestoreArgs),
    /// List the metrics and versions a bucket holds.
    List(ListArgs),
    /// Record metrics missing from disk and purge those missing for too long.
    Purge(PurgeArgs),
    /// Read back a share of the bucket (download, gunzip, SHA-1, whisper header) and record
    /// what was found; exits 1 when a corrupt version is found.
    Verify(VerifyArgs),
    /// Serve the Agent gRPC API to the coordinator and the bucky command.
    Serve(ServeArgs),
    /// Completions and man pages.
    #[command(flatten)]
    Docs(bucky_shared::command_docs::DocsCommand),
    /// Check the config as `serve` would (whisper root, token file, bucket URL, TLS files)
    /// without serving; exits non-zero naming the first problem.
    CheckConfig(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Config file; the flags below override it.
    #[arg(
        long,
        env = "BUCKY_AGENT_CONFIG",
        default_value = "/etc/bucky/agent.toml"
    )]
    config: PathBuf,
    /// Address to listen on (port 0 picks a free one; the bound address is printed).
    #[arg(long)]
    listen: Option<String>,
    /// This node's ring name, over the config's `node` (default: the host name).
    #[arg(long, env = "BUCKY_NODE")]
    node: Option<String>,
}

/// Where the bucket is and whose it is.
#[derive(Args)]
struct BucketArgs {
    /// Bucket URL: file:///path, s3://bucket[/prefix], gs://..., az://..., memory://.
    #[arg(long, env = "BUCKY_BUCKET")]
    bucket: String,
    /// S3-compatible endpoint, e.g. http://127.0.0.1:9000 (Ceph RGW, MinIO, Swift's S3 API).
    #[arg(long, env = "BUCKY_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "BUCKY_S3_REGION")]
    s3_region: Option<String>,
    /// Path-style S3 requests (most S3-compatible stores need them).
    #[arg(long)]
    s3_path_style: bool,
    /// Allow a plain-HTTP endpoint.
    #[arg(long)]
    s3_allow_http: bool,
    /// Seconds one store request may take before it counts as failed.
    #[arg(long, default_value_t = 60)]
    request_timeout: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl BucketArgs {
    fn store_options(&self) -> StoreOptions {
        StoreOptions {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            path_style: self.s3_path_style,
            allow_http: self.s3_allow_http,
            request_timeout: Some(self.request_timeout),
            extra: Vec::new(),
        }
    }

    fn open(&self) -> anyhow::Result<Bucket> {
        Ok(Bucket::open(&self.bucket, &self.store_options())?)
    }
}

/// Which metrics.
#[derive(Args)]
struct SelectArgs {
    /// Only metrics matching this glob (repeatable; `*` stays within a segment).
    #[arg(long = "metrics", value_name = "GLOB")]
    globs: Vec<String>,
    /// Only metrics matching this regex.
    #[arg(long)]
    regex: Option<String>,
}

#[derive(Args)]
struct BackupArgs {
    #[command(flatten)]
    bucket: BucketArgs,
    #[command(flatten)]
    select: SelectArgs,
    /// The whisper tree.
    #[arg(long, env = "BUCKY_WHISPER_ROOT")]
    whisper_root: PathBuf,
    /// This node's name, written into the bucket's owner marker (default: the host name).
    #[arg(long, env = "BUCKY_NODE")]
    node: Option<String>,
    /// Newest versions kept per metric.
    #[arg(long, default_value_t = 5)]
    keep: usize,
    /// Also keep the newest version of each of this many most recent days (UTC) with one.
    #[arg(long, default_value_t = 0)]
    keep_daily: usize,
    /// ... of each of this many most recent ISO weeks.
    #[arg(long, default_value_t = 0)]
    keep_weekly: usize,
    /// ... of each of this many most recent months.
    #[arg(long, default_value_t = 0)]
    keep_monthly: usize,
    /// Newest manifests kept (the age classes apply to them too).
    #[arg(long, default_value_t = 60)]
    keep_manifests: usize,
    /// The run's clock, ISO-8601 (for tests and replays; default now).
    #[arg(long, hide = true)]
    now: Option<String>,
    /// Days after a metric disappears from disk before its backups are deleted (-1: never).
    #[arg(long, default_value_t = 45, allow_negative_numbers = true)]
    purge_after_days: i64,
    /// gzip level, 0-9. bucky's deflate (zlib-rs) stores within 2% of pigz at levels 3, 6 and
    /// 9, but 23% more than `pigz -1` at level 1 (ratio 3.75 against 4.62), for twice level 3's
    /// speed; level 3 stores as little as 6 at 1.7x its speed. Measured by `cargo bench -p
    /// bucky-agent --bench backup` (its level table).
    #[arg(long, default_value_t = 6)]
    gzip_level: u32,
    /// Files read, compressed and uploaded at once.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Read every file, even those whose size and mtime are unchanged.
    #[arg(long)]
    verify_all: bool,
    /// Print what would change (uploads, purges, versions retention expires); write nothing.
    #[arg(long, alias = "dry-run")]
    noop: bool,
    /// Seconds to wait for a file's lock before reporting it failed.
    #[arg(long, default_value_t = 10)]
    lock_timeout: u64,
    /// Read at the process's own I/O priority instead of the idle class.
    #[arg(long)]
    no_idle_io: bool,
    /// Refuse the run when more than this share of the metrics the last backup saw are gone
    /// from the tree (a disk that did not mount).
    #[arg(long, default_value_t = 0.5)]
    max_missing_share: f64,
    /// Run even when more than --max-missing-share of the metrics are gone (removed on purpose).
    #[arg(long)]
    allow_shrink: bool,
}

#[derive(Args)]
struct RestoreArgs {
    #[command(flatten)]
    bucket: BucketArgs,
    #[command(flatten)]
    select: SelectArgs,
    /// The whisper tree to restore into.
    #[arg(long, env = "BUCKY_WHISPER_ROOT")]
    whisper_root: PathBuf,
    /// Restore the newest version strictly before this ISO-8601 time (default: the newest).
    #[arg(long)]
    date: Option<String>,
    /// Metrics restored at once.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Seconds to wait for an existing file's lock.
    #[arg(long, default_value_t = 10)]
    lock_timeout: u64,
}

#[derive(Args)]
struct ListArgs {
    #[command(flatten)]
    bucket: BucketArgs,
    #[command(flatten)]
    select: SelectArgs,
}

#[derive(Args)]
struct VerifyArgs {
    #[command(flatten)]
    bucket: BucketArgs,
    /// This node's name, written into the record (default: the host name).
    #[arg(long, env = "BUCKY_NODE")]
    node: Option<String>,
    /// Every stored version (default: the daily slice, 1/window of the bucket).
    #[arg(long, conflicts_with = "share")]
    all: bool,
    /// This share of the bucket, verified longest ago first: 0.1 or 10%.
    #[arg(long, value_parser = bucky_shared::layout::verification::parse_share)]
    share: Option<f64>,
    /// Days within which every version should be verified.
    #[arg(long, default_value_t = 30)]
    window_days: u32,
    /// Versions downloaded at once.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Read what the bucket's listing shows rather than its manifest: whisper-backup's versions
    /// from before bucky took the bucket over included.
    #[arg(long)]
    listing: bool,
}

#[derive(Args)]
struct PurgeArgs {
    #[command(flatten)]
    bucket: BucketArgs,
    /// The whisper tree.
    #[arg(long, env = "BUCKY_WHISPER_ROOT")]
    whisper_root: PathBuf,
    /// This node's name (default: the host name).
    #[arg(long, env = "BUCKY_NODE")]
    node: Option<String>,
    /// Days after a metric disappears from disk before its backups are deleted.
    #[arg(long, default_value_t = 45)]
    purge_after_days: i64,
    /// Print what would be purged; delete nothing.
    #[arg(long)]
    noop: bool,
}

fn now() -> Version {
    Version(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    )
}

fn hostname() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("reading the host name; pass --node")?;
    Ok(name.trim().to_string())
}

fn print_failures(failed: &bucky_agent::failures::Failures) {
    for f in failed.first() {
        eprintln!("failed: {}: {}", f.metric, f.error);
    }
    if failed.unnamed() > 0 {
        eprintln!("failed: ... and {} more", failed.unnamed());
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs the command; `Ok(false)` when some files failed (the run itself completed).
async fn run(cli: Cli) -> anyhow::Result<bool> {
    let quiet = cli.log.quiet;
    match cli.command {
        Command::Backup(args) => {
            let bucket = args.bucket.open()?;
            let node = args.node.map_or_else(hostname, Ok)?;
            let (retention, manifest_retention) = bucky_agent::config::RetentionSection {
                last: args.keep,
                manifests: args.keep_manifests,
                daily: args.keep_daily,
                weekly: args.keep_weekly,
                monthly: args.keep_monthly,
            }
            .policies();
            let clock = match &args.now {
                Some(text) => bucky_shared::layout::parse_date(text)?,
                None => now(),
            };
            let options = BackupOptions {
                retention,
                manifest_retention,
                purge_after_days: args.purge_after_days,
                gzip_level: args.gzip_level,
                workers: args.workers,
                verify_all: args.verify_all,
                noop: args.noop,
                lock_timeout: Duration::from_secs(args.lock_timeout),
                selection: Selection::new(&args.select.globs, args.select.regex.as_deref())?,
                idle_io: !args.no_idle_io,
                max_missing_share: args.max_missing_share,
                allow_shrink: args.allow_shrink,
                ..BackupOptions::new(&node)
            };
            let report = backup::backup(&bucket, &args.whisper_root, &options, clock).await?;
            let clean = report.failed.is_empty()
                && report.not_carbon.count == 0
                && report.links_skipped.count == 0;
            if args.bucket.json {
                print_json(&report)?;
            } else if quiet && clean && !args.noop {
                // Cron mails whatever a job prints: a run that went well prints nothing.
            } else {
                print_planned(&report.planned);
                if report.corrupt_replaced > 0 {
                    println!(
                        "{} corrupt versions (found by verify) replaced by sound uploads",
                        report.corrupt_replaced
                    );
                }
                println!(
                    "{}backup of {} into {}: {} new, {} changed, {} unchanged ({} of them read), {} failed, {} missing, {} purged; {} bytes read, {} uploaded, {} objects deleted",
                    if args.noop { "noop " } else { "" },
                    args.whisper_root.display(),
                    bucket.url(),
                    report.new,
                    report.changed,
                    report.unchanged,
                    report.unchanged_read,
                    report.failed.len(),
                    report.missing,
                    report.purged.len(),
                    report.bytes_read,
                    report.bytes_uploaded,
                    report.objects_deleted
                );
                print_failures(&report.failed);
                for (what, found) in [
                    (
                        "whisper files at paths carbon cannot write for their name",
                        &report.not_carbon,
                    ),
                    (
                        "symlinks not followed (loops, dangling)",
                        &report.links_skipped,
                    ),
                ] {
                    if found.count > 0 {
                        eprintln!(
                            "skipped: {} {what}, first: {}",
                            found.count,
                            found
                                .first
                                .iter()
                                .map(|p| p.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    }
                }
            }
            Ok(report.failed.is_empty())
        }
        Command::Restore(args) => {
            let bucket = args.bucket.open()?;
            let options = RestoreOptions {
                before: args.date.as_deref().map(parse_date).transpose()?,
                selection: Selection::new(&args.select.globs, args.select.regex.as_deref())?,
                workers: args.workers,
                lock_timeout: Duration::from_secs(args.lock_timeout),
                ..RestoreOptions::new(now().0)
            };
            let report = restore::restore(&bucket, &args.whisper_root, &options).await?;
            if args.bucket.json {
                print_json(&report)?;
            } else {
                println!(
                    "restore of {} into {}: {} written, {} filled ({} points), {} without a version before the date, {} failed; {} bytes downloaded",
                    bucket.url(),
                    args.whisper_root.display(),
                    report.written,
                    report.filled,
                    report.points_filled,
                    report.no_version,
                    report.failed.len(),
                    report.bytes_downloaded
                );
                print_failures(&report.failed);
                for line in report.corrupt_passed.first() {
                    println!("corrupt version passed over: {line}");
                }
            }
            Ok(report.failed.is_empty())
        }
        Command::List(args) => {
            let bucket = args.bucket.open()?;
            let selection = Selection::new(&args.select.globs, args.select.regex.as_deref())?;
            let (catalog, unreadable) = restore::catalog(&bucket).await?;
            for reason in &unreadable {
                eprintln!("unreadable key: {reason}");
            }
            let manifest = bucky_shared::manifests::latest_stored(&bucket, None).await?;
            let json = args.bucket.json;
            let (mut unlisted, mut incomplete) = (0usize, 0usize);
            bucky_agent::listing::join(
                &catalog,
                manifest.as_ref().map(bucky_agent::listing::entries),
                |name| selection.matches(name),
                |listed| {
                    unlisted += listed.unlisted.len();
                    incomplete += listed.incomplete.len();
                    if json {
                        println!("{}", serde_json::json!(listed));
                        return;
                    }
                    let join = |v: &[Version]| {
                        v.iter()
                            .map(Version::to_string)
                            .collect::<Vec<_>>()
                            .join(" ")
                    };
                    let mut line = format!("{} {}", listed.metric, join(&listed.versions));
                    if !listed.unlisted.is_empty() {
                        line.push_str(&format!(
                            " (not in the manifest: {})",
                            join(&listed.unlisted)
                        ));
                    }
                    if !listed.incomplete.is_empty() {
                        line.push_str(&format!(" (incomplete: {})", join(&listed.incomplete)));
                    }
                    println!("{}", line.trim_end());
                },
            );
            if !json && unlisted + incomplete > 0 {
                eprintln!(
                    "{unlisted} complete versions are not in the newest manifest (uploads of a run that did not commit, or history from before bucky took the bucket over) and {incomplete} objects lack their data or .sha1: a restore uses neither; `bucky-agent purge` collects a dead run's uploads"
                );
            }
            Ok(unreadable.is_empty())
        }
        Command::Docs(command) => {
            command.run(
                <Cli as clap::CommandFactory>::command(),
                &mut std::io::stdout(),
            )?;
            Ok(true)
        }
        Command::CheckConfig(args) => {
            let (settings, checked) = checked_settings(&args)?;
            bucky_agent::bucket::Bucket::open(&settings.service.bucket, &settings.service.store)
                .with_context(|| format!("bucket of {}", args.config.display()))?;
            if let Some(tls) = &settings.tls {
                tls.load().map_err(anyhow::Error::msg)?;
            }
            for warning in &checked.warnings {
                println!("warning: {warning}");
            }
            println!(
                "{}: ok: node {}, whisper root {}, bucket {}, listen {}, ring {}",
                args.config.display(),
                settings.service.node,
                settings.service.whisper_root.display(),
                settings.service.bucket,
                settings.listen,
                ring_named(&settings.service.ring_fingerprint),
            );
            Ok(true)
        }
        Command::Serve(args) => {
            let (settings, checked) = checked_settings(&args)?;
            for warning in &checked.warnings {
                tracing::warn!("{warning}");
            }
            let (listen, token) = (settings.listen.clone(), checked.token);
            let tls = settings
                .tls
                .as_ref()
                .map(|t| t.load())
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let service = bucky_agent::service::AgentService::new(settings.service.clone())?
                .with_peer_token(&token)?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let addr = listener.local_addr()?;
            println!("listening on {addr}");
            std::io::Write::flush(&mut std::io::stdout())?;
            tracing::info!(
                %addr,
                node = settings.service.node,
                bucket = settings.service.bucket,
                whisper_root = %settings.service.whisper_root.display(),
                ring = ring_named(&settings.service.ring_fingerprint),
                version = bucky_agent::VERSION,
                "agent serving"
            );
            bucky_agent::server::run(
                listener,
                service,
                &token,
                tls,
                bucky_agent::signal::shutdown(),
            )
            .await?;
            Ok(true)
        }
        Command::Verify(args) => {
            use bucky_agent::verify::{self, Share, VerifyOptions};
            let bucket = args.bucket.open()?;
            let node = args.node.map_or_else(hostname, Ok)?;
            let share = match (args.all, args.share) {
                (true, _) => Share::All,
                (false, Some(share)) => Share::Fraction(share),
                (false, None) => Share::daily(args.window_days),
            };
            let options = VerifyOptions {
                workers: args.workers,
                from_listing: args.listing,
                ..VerifyOptions::new(&node, share)
            };
            let report = verify::verify(&bucket, &options, now(), args.window_days).await?;
            if args.bucket.json {
                print_json(&report)?;
            } else {
                for c in report.corrupt.first() {
                    println!("corrupt: {} {}: {}", c.metric, c.version, c.reason);
                }
                for f in report.unread.first() {
                    eprintln!("unread: {}: {}", f.metric, f.error);
                }
                println!(
                    "verify of {}: {} versions read in {} parts, {} ok, {} corrupt, {} unread; {} corrupt known, {} of 1000 parts not verified in {} days",
                    bucket.url(),
                    report.checked,
                    report.parts,
                    report.ok,
                    report.corrupt.len(),
                    report.unread.len(),
                    report.corrupt_known,
                    report.parts_due,
                    args.window_days
                );
            }
            Ok(report.corrupt.is_empty() && report.unread.is_empty())
        }
        Command::Purge(args) => {
            let bucket = args.bucket.open()?;
            let node = args.node.map_or_else(hostname, Ok)?;
            let options = BackupOptions {
                purge_after_days: args.purge_after_days,
                noop: args.noop,
                purge_only: true,
                ..BackupOptions::new(&node)
            };
            let report = backup::backup(&bucket, &args.whisper_root, &options, now()).await?;
            if args.bucket.json {
                print_json(&report)?;
            } else {
                print_planned(&report.planned);
                println!(
                    "purge of {}: {} purged, {} missing and kept, {} objects deleted",
                    bucket.url(),
                    report.purged.len(),
                    report.missing,
                    report.objects_deleted
                );
            }
            Ok(true)
        }
    }
}

/// The config `serve` would run with, checked on this host.
fn checked_settings(
    args: &ServeArgs,
) -> anyhow::Result<(
    bucky_agent::config::Settings,
    bucky_agent::config::HostCheck,
)> {
    let mut settings = match &args.node {
        Some(node) => bucky_agent::config::load_as(&args.config, node)?,
        None => bucky_agent::config::load(&args.config, hostname)?,
    };
    if let Some(listen) = &args.listen {
        settings.listen = listen.clone();
    }
    let checked = bucky_agent::config::check_on_host(&settings)
        .with_context(|| format!("starting with {}", args.config.display()))?;
    Ok((settings, checked))
}

/// A ring fingerprint, or what its absence means.
fn ring_named(fingerprint: &str) -> &str {
    if fingerprint.is_empty() {
        "none configured (the coordinator will refuse this agent)"
    } else {
        fingerprint
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("bucky-agent: some metrics failed (see above)");
            ExitCode::from(3)
        }
        Err(err) => {
            eprintln!("bucky-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A `--noop` run's lines, and how many more there were.
fn print_planned(planned: &backup::Sample<String, { backup::PLANNED_LINES }>) {
    planned.first().iter().for_each(|line| println!("{line}"));
    if planned.unnamed() > 0 {
        println!("... and {} more", planned.unnamed());
    }
}
