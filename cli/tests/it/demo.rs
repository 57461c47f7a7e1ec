//! `bucky demo` at a small size: every step runs and the restored node verifies.

use crate::support::bucky;

#[test]
fn the_demo_backs_up_loses_a_node_restores_and_verifies() {
    let out = bucky(&["demo", "--metrics", "120", "--days", "1"]).unwrap();
    assert!(out.contains("1. wrote 120 metrics"), "{out}");
    let written: usize = out
        .lines()
        .filter(|l| l.trim_start().starts_with("graphite-0") && l.contains(" new,"))
        .map(|l| {
            l.split(": ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    assert_eq!(written, 120, "every metric backed up once: {out}");
    assert!(out.contains("7. verified: all"), "{out}");
    assert!(
        out.lines()
            .filter(|l| l.contains("ring agrees true"))
            .count()
            == 3,
        "{out}"
    );
}

/// `--schema` sets every file's retentions: tiny files for a demo of many metrics.
#[test]
fn the_demo_takes_a_schema() {
    let out = bucky(&[
        "demo",
        "--metrics",
        "60",
        "--days",
        "1",
        "--schema",
        "60s:1h",
    ])
    .unwrap();
    assert!(out.contains("schema 60s:1h)"), "{out}");
    assert!(out.contains("7. verified: all"), "{out}");
    let err = bucky(&["demo", "--schema", "60x:1h"]).unwrap_err();
    assert!(format!("{err:#}").contains("60x"), "{err:#}");
}
