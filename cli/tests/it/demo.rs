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
