//! Backup benchmark: a realistic tree (schema `60s:30d,15m:2y`, 30 days of minute data) backed
//! up to a `file://` bucket and restored, against `tar -c | gzip -6` and `tar -c | pigz -6` of
//! the same tree, in one run.
//!
//! `cargo bench -p bucky-agent --bench backup [-- --files 2000]`
//!
//! Steps: first backup; unchanged re-run; re-run after touching 10% of the files (mtime only:
//! read, hashed, not uploaded); restore into an empty directory; restore into the existing tree
//! (every file safe-filled). Workers = cores, as pigz uses.

use std::path::Path;
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bucky_agent::backup::{BackupOptions, backup};
use bucky_agent::bucket::{Bucket, StoreOptions};
use bucky_agent::restore::{RestoreOptions, restore};
use bucky_shared::layout::Version;
use bucky_shared::metric;
use bucky_shared::synth::{self, Rng};
use bucky_shared::whisper;

const MINUTES_30_DAYS: i64 = 30 * 24 * 60;

fn main() -> anyhow::Result<()> {
    let mut files = 2000usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--files" => files = args.next().context("--files N")?.parse()?,
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let work = tempfile::tempdir()?;
    let root = work.path().join("whisper");
    let started = Instant::now();
    let bytes = generate(&root, files, now)?;
    let mb = bytes as f64 / 1e6;
    println!(
        "backup benchmark: {files} files, {mb:.0} MB, schema 60s:30d,15m:2y, 30 days of minute data (generated in {:.0} s); {cores} cores",
        started.elapsed().as_secs_f64()
    );
    let row = |label: &str, secs: f64, base: Option<(&str, f64)>| {
        print!(
            "  {label:<38} {secs:>7.2} s {:>8.1} MB/s {:>9.0} files/s",
            mb / secs,
            files as f64 / secs
        );
        if let Some((name, b)) = base {
            print!("   {:.2}x {name}", b / secs);
        }
        println!();
    };

    let stored = |size: u64| {
        println!(
            "    {:.0} MB stored ({:.1}% of the tree)",
            size as f64 / 1e6,
            100.0 * size as f64 / bytes as f64
        )
    };
    let (gzip, size) = shell(&format!("tar -c -C {} . | gzip -6 | wc -c", root.display()))?;
    row("tar -c | gzip -6 (baseline)", gzip, None);
    stored(size);
    let pigz = if Command::new("pigz").arg("--version").output().is_ok() {
        let (secs, size) = shell(&format!(
            "tar -c -C {} . | pigz -6 -p {cores} | wc -c",
            root.display()
        ))?;
        row(
            &format!("tar -c | pigz -6 -p {cores} (baseline)"),
            secs,
            Some(("gzip", gzip)),
        );
        stored(size);
        Some(secs)
    } else {
        println!("  tar -c | pigz -6: pigz not installed (apt-get install pigz), baseline skipped");
        None
    };
    let base = |secs: f64| pigz.map_or(("gzip", gzip), |p| ("pigz", p)).1 / secs;
    let versus = pigz.map_or("gzip", |_| "pigz");

    let runtime = tokio::runtime::Runtime::new()?;
    let url = format!("file://{}", work.path().join("bucket").display());
    let bucket = Bucket::open(&url, &StoreOptions::default())?;
    let options = BackupOptions {
        workers: cores,
        ..BackupOptions::new("bench")
    };
    let timed = |f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<f64> {
        let start = Instant::now();
        f()?;
        Ok(start.elapsed().as_secs_f64())
    };

    let mut uploaded = 0;
    let secs = timed(&mut || {
        let report = runtime.block_on(backup(&bucket, &root, &options, Version(now)))?;
        uploaded = report.bytes_uploaded;
        check(
            report.new == files as u64 && report.failed.is_empty(),
            "first backup uploads every file",
        )
    })?;
    row(
        "bucky first backup",
        secs,
        Some((versus, secs * base(secs))),
    );
    stored(uploaded);

    let secs = timed(&mut || {
        let report = runtime.block_on(backup(&bucket, &root, &options, Version(now + 60)))?;
        check(
            report.unchanged == files as u64 && report.bytes_read == 0,
            "an unchanged re-run reads nothing",
        )
    })?;
    row(
        "bucky unchanged re-run",
        secs,
        Some((versus, secs * base(secs))),
    );

    let touched: Vec<_> = (0..files).step_by(10).collect();
    for i in &touched {
        let path = metric::path_of(&root, &name(*i))?;
        std::fs::File::options()
            .write(true)
            .open(&path)?
            .set_modified(SystemTime::now())?;
    }
    let secs = timed(&mut || {
        let report = runtime.block_on(backup(&bucket, &root, &options, Version(now + 120)))?;
        check(
            report.unchanged == files as u64 && report.bytes_uploaded == 0,
            "touched files are read, not uploaded",
        )
    })?;
    row(
        "bucky re-run after touching 10%",
        secs,
        Some((versus, secs * base(secs))),
    );

    let restore_options = RestoreOptions {
        workers: cores,
        ..RestoreOptions::new(now)
    };
    let empty = work.path().join("restored");
    let secs = timed(&mut || {
        let report = runtime.block_on(restore(&bucket, &empty, &restore_options))?;
        check(
            report.written == files as u64 && report.failed.is_empty(),
            "restore writes every file",
        )
    })?;
    row(
        "bucky restore into an empty dir",
        secs,
        Some((versus, secs * base(secs))),
    );

    let secs = timed(&mut || {
        let report = runtime.block_on(restore(&bucket, &root, &restore_options))?;
        check(
            report.filled == files as u64 && report.failed.is_empty(),
            "restore fills every existing file",
        )
    })?;
    row(
        "bucky restore into the existing tree",
        secs,
        Some((versus, secs * base(secs))),
    );
    Ok(())
}

fn check(ok: bool, what: &str) -> anyhow::Result<()> {
    if !ok {
        bail!("bench sanity check failed: {what}");
    }
    Ok(())
}

/// Runs `command` (ending in `| wc -c`); its seconds and the byte count it printed.
fn shell(command: &str) -> anyhow::Result<(f64, u64)> {
    let start = Instant::now();
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", command])
        .output()?;
    if !out.status.success() {
        bail!("{command}: {}", out.status);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((secs, String::from_utf8(out.stdout)?.trim().parse()?))
}

fn name(i: usize) -> String {
    format!("servers.host{:03}.app.metric{:03}", i / 50, i % 50)
}

/// Writes `count` metrics; returns the tree's size in bytes.
fn generate(root: &Path, count: usize, now: i64) -> anyhow::Result<u64> {
    let schema = whisper::parse_retentions(&["60s:30d", "15m:2y"])?;
    let mut bytes = 0;
    for i in 0..count {
        let mut rng = Rng::new(0xb0c4_0001 ^ (i as u64 + 1) << 8);
        let series = synth::random_walk(&mut rng, now, MINUTES_30_DAYS);
        let missing = synth::outages(&mut rng, now, MINUTES_30_DAYS * 60, 20);
        let image = synth::carbon_written(&schema, &series, &missing, 30)?;
        let path = metric::path_of(root, &name(i))?;
        std::fs::create_dir_all(path.parent().expect("metric paths have a directory"))?;
        std::fs::write(&path, image.bytes())?;
        bytes += image.bytes().len() as u64;
    }
    Ok(bytes)
}
