//! Backup benchmark: a realistic tree (schema `60s:30d,15m:2y`, 30 days of minute data) backed
//! up to a `file://` bucket and restored, each step against the standard tool doing the same
//! work on the same data in the same run:
//!
//! - backups against compression of the tree: `tar -c | gzip -6` and `tar -c | pigz -6`;
//! - restores against decompression: `gzip -dc` and `pigz -dc` of the objects bucky stored, and
//!   `pigz -dc tree.tar.gz | tar -x` (files written, as a restore writes them);
//! - the gzip level (`bucky-agent backup --gzip-level`): time and stored size of a first backup
//!   at levels 1, 3, 6 and 9 beside `tar -c | pigz -1/-3/-6/-9`.
//!
//! `cargo bench -p bucky-agent --bench backup [-- --files 2000 --levels 1,3,6,9]`
//!
//! Steps: first backup; unchanged re-run; re-run after touching 10% of the files (mtime only:
//! read, hashed, not uploaded); restore into an empty directory; restore into the existing tree
//! (every file safe-filled: read and compared point by point, which no baseline does). Workers =
//! cores, as pigz uses. Re-runs get no ratio: no baseline skips unchanged files. "Nx the speed
//! of B" is B's time / bucky's time: above 1, bucky is faster.

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
    let mut levels = vec![1, 3, 6, 9];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--files" => files = args.next().context("--files N")?.parse()?,
            "--levels" => {
                levels = args
                    .next()
                    .context("--levels 1,3,6,9")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
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
    let pigz = Command::new("pigz").arg("--version").output().is_ok();
    if !pigz {
        println!("  pigz not installed (apt-get install pigz): its baselines are skipped");
    }
    let row = |label: &str, secs: f64, bases: &[(&str, f64)]| {
        print!(
            "  {label:<40} {secs:>7.2} s {:>8.1} MB/s {:>9.0} files/s",
            mb / secs,
            files as f64 / secs
        );
        let ratios: Vec<String> = bases
            .iter()
            .map(|(name, base)| format!("{:.2}x the speed of {name}", base / secs))
            .collect();
        if !ratios.is_empty() {
            print!("   {}", ratios.join(", "));
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

    println!("backup, against compression of the same tree:");
    let tarball = work.path().join("tree.tar.gz");
    let compress = |tool: &str, level: u32| -> anyhow::Result<(f64, u64)> {
        let threads = if tool == "pigz" {
            format!(" -p {cores}")
        } else {
            String::new()
        };
        let secs = shell(&format!(
            "tar -c -C {} . | {tool} -{level}{threads} > {}",
            root.display(),
            tarball.display()
        ))?;
        Ok((secs, std::fs::metadata(&tarball)?.len()))
    };
    let (gzip_secs, size) = compress("gzip", 6)?;
    row("tar -c | gzip -6 (baseline)", gzip_secs, &[]);
    stored(size);
    let mut bases = vec![("gzip -6", gzip_secs)];
    // Per level: pigz's seconds and bytes, for the level table (level 6 is timed here).
    let mut pigz_levels = Vec::new();
    if pigz {
        let (secs, size) = compress("pigz", 6)?;
        row(
            &format!("tar -c | pigz -6 -p {cores} (baseline)"),
            secs,
            &[],
        );
        stored(size);
        bases.push(("pigz -6", secs));
        pigz_levels.push((6, secs, size));
    }

    let runtime = tokio::runtime::Runtime::new()?;
    let bucket_dir = work.path().join("bucket");
    let bucket = Bucket::open(
        &format!("file://{}", bucket_dir.display()),
        &StoreOptions::default(),
    )?;
    let options = BackupOptions {
        workers: cores,
        ..BackupOptions::new("bench")
    };
    let timed = |f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<f64> {
        let start = Instant::now();
        f()?;
        Ok(start.elapsed().as_secs_f64())
    };

    // A first backup into `bucket`: seconds and bytes stored.
    let first_backup = |bucket: &Bucket, options: &BackupOptions| -> anyhow::Result<(f64, u64)> {
        let mut uploaded = 0;
        let secs = timed(&mut || {
            let report = runtime.block_on(backup(bucket, &root, options, Version(now)))?;
            uploaded = report.bytes_uploaded;
            check(
                report.new == files as u64 && report.failed.is_empty(),
                "a first backup uploads every file",
            )
        })?;
        Ok((secs, uploaded))
    };
    let (secs, uploaded) = first_backup(&bucket, &options)?;
    row("bucky first backup (level 6)", secs, &bases);
    stored(uploaded);
    let mut bucky_levels = vec![(6, secs, uploaded)];

    let secs = timed(&mut || {
        let report = runtime.block_on(backup(&bucket, &root, &options, Version(now + 60)))?;
        check(
            report.unchanged == files as u64 && report.bytes_read == 0,
            "an unchanged re-run reads nothing",
        )
    })?;
    row("bucky unchanged re-run", secs, &[]);

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
            report.unchanged == files as u64
                && report.unchanged_read == touched.len() as u64
                && report.bytes_uploaded == 0,
            "touched files are read, not uploaded",
        )
    })?;
    row("bucky re-run after touching 10%", secs, &[]);

    println!("restore, against decompression of the same data:");
    let objects = format!(
        "find {} -name '*.wsp.gz' -print0 | xargs -0 cat",
        bucket_dir.display()
    );
    let decompress = |command: String| -> anyhow::Result<f64> {
        let (secs, out) = shell_output(&format!("{command} | wc -c"))?;
        check(
            out.trim().parse::<u64>()? == bytes,
            "the stored objects decompress to the tree's bytes",
        )?;
        Ok(secs)
    };
    let secs = decompress(format!("{objects} | gzip -dc"))?;
    row("gzip -dc of the stored objects", secs, &[]);
    let mut bases = vec![("gzip -dc", secs)];
    if pigz {
        let secs = decompress(format!("{objects} | pigz -dc"))?;
        row("pigz -dc of the stored objects", secs, &[]);
        bases.push(("pigz -dc", secs));
        let untarred = work.path().join("untarred");
        std::fs::create_dir(&untarred)?;
        let secs = shell(&format!(
            "pigz -dc {} | tar -x -C {}",
            tarball.display(),
            untarred.display()
        ))?;
        row("pigz -dc tree.tar.gz | tar -x", secs, &[]);
        bases.push(("pigz -dc | tar -x", secs));
        std::fs::remove_dir_all(&untarred)?;
    }

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
    row("bucky restore into an empty dir", secs, &bases);
    std::fs::remove_dir_all(&empty)?;

    let secs = timed(&mut || {
        let report = runtime.block_on(restore(&bucket, &root, &restore_options))?;
        check(
            report.filled == files as u64 && report.failed.is_empty(),
            "restore fills every existing file",
        )
    })?;
    row("bucky restore into the existing tree", secs, &[]);
    std::fs::remove_dir_all(&bucket_dir)?;

    let others: Vec<u32> = levels.iter().copied().filter(|&l| l != 6).collect();
    for &level in &others {
        if pigz {
            let (secs, size) = compress("pigz", level)?;
            pigz_levels.push((level, secs, size));
        }
        let dir = work.path().join(format!("bucket-{level}"));
        let bucket = Bucket::open(
            &format!("file://{}", dir.display()),
            &StoreOptions::default(),
        )?;
        let options = BackupOptions {
            gzip_level: level,
            ..options.clone()
        };
        let (secs, uploaded) = first_backup(&bucket, &options)?;
        bucky_levels.push((level, secs, uploaded));
        std::fs::remove_dir_all(&dir)?;
    }
    print_levels(&levels, &bucky_levels, &pigz_levels, bytes);
    Ok(())
}

/// The level table: a first backup at each gzip level beside `tar -c | pigz` at that level.
fn print_levels(levels: &[u32], bucky: &[(u32, f64, u64)], pigz: &[(u32, f64, u64)], tree: u64) {
    println!(
        "gzip level (bucky-agent backup --gzip-level): a first backup beside tar -c | pigz at the same level:"
    );
    println!(
        "  level   bucky s   MB/s  stored MB  ratio     pigz s   MB/s  stored MB  ratio   bucky stores"
    );
    let mb = tree as f64 / 1e6;
    for level in levels {
        let Some(&(_, secs, size)) = bucky.iter().find(|(l, ..)| l == level) else {
            continue;
        };
        print!(
            "  {level:>5} {secs:>9.2} {:>6.1} {:>10.0} {:>6.2}",
            mb / secs,
            size as f64 / 1e6,
            tree as f64 / size as f64
        );
        if let Some(&(_, psecs, psize)) = pigz.iter().find(|(l, ..)| l == level) {
            print!(
                "   {psecs:>8.2} {:>6.1} {:>10.0} {:>6.2}   {:+.1}% vs pigz",
                mb / psecs,
                psize as f64 / 1e6,
                tree as f64 / psize as f64,
                100.0 * (size as f64 / psize as f64 - 1.0)
            );
        }
        println!();
    }
}

fn check(ok: bool, what: &str) -> anyhow::Result<()> {
    if !ok {
        bail!("bench sanity check failed: {what}");
    }
    Ok(())
}

/// Runs `command` under bash with pipefail; its seconds.
fn shell(command: &str) -> anyhow::Result<f64> {
    Ok(shell_output(command)?.0)
}

/// Runs `command` under bash with pipefail; its seconds and what it printed.
fn shell_output(command: &str) -> anyhow::Result<(f64, String)> {
    let start = Instant::now();
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", command])
        .output()?;
    if !out.status.success() {
        bail!(
            "{command}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((
        start.elapsed().as_secs_f64(),
        String::from_utf8(out.stdout)?,
    ))
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
