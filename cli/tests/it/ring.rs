//! `bucky locate` and `bucky ring show`, checked against the ring vectors.

use bucky_cli::commands::locate;
use clap::Parser;
use serde_json::Value;

use crate::support::{bucky, vectors_dir};

fn ring_vectors() -> Vec<(String, Value)> {
    let dir = vectors_dir().join("ring");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(out.len(), 18);
    out
}

/// The command line flags that describe a vector's ring.
fn ring_flags(v: &Value) -> Vec<String> {
    let relay = v["implementation"] == "carbon-c-relay";
    let list = if relay {
        &v["members"]
    } else {
        &v["destinations"]
    };
    let destinations: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let mut flags = vec![
        "--hash".to_string(),
        v["hash_type"].as_str().unwrap().into(),
        "--flavour".into(),
        if relay { "relay" } else { "carbon" }.into(),
        "--replication".into(),
        v["replication_factor"].to_string(),
        format!("--destinations={}", destinations.join(",")),
    ];
    if !relay {
        flags.extend(["--router".into(), v["router"].as_str().unwrap().into()]);
        if !v["diverse_replicas"].as_bool().unwrap() {
            flags.push("--no-diverse".into());
        }
    }
    flags
}

/// The vector's owners as destination strings: relay owners are members already; carbon owners
/// `[server, instance]` map to the destination of that node.
fn expected_owners(v: &Value, owners: &Value) -> Vec<String> {
    if v["implementation"] == "carbon-c-relay" {
        return owners
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap().to_string())
            .collect();
    }
    let nodes = v["nodes"].as_array().unwrap();
    owners
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let i = nodes.iter().position(|n| n == o).unwrap();
            v["destinations"][i].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn locate_reads_stdin_and_matches_every_vector() {
    for (name, v) in ring_vectors() {
        let placements = v["placements"].as_array().unwrap();
        let stdin: String = placements
            .iter()
            .map(|p| format!("{}\n", p["metric"].as_str().unwrap()))
            .collect();
        let mut argv = vec!["locate".to_string(), "--json".into()];
        argv.extend(ring_flags(&v));
        let cli = bucky_cli::Cli::try_parse_from(std::iter::once("bucky".to_string()).chain(argv))
            .unwrap();
        let bucky_cli::Command::Locate(args) = cli.command else {
            panic!("parsed as locate")
        };
        let mut out = Vec::new();
        locate::run(args, &mut stdin.as_bytes(), &mut out).unwrap();
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), placements.len(), "{name}");
        for (line, p) in lines.iter().zip(placements) {
            assert_eq!(line["metric"], p["metric"]);
            let got: Vec<String> = line["owners"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o.as_str().unwrap().into())
                .collect();
            assert_eq!(
                got,
                expected_owners(&v, &p["owners"]),
                "{name}: {}",
                p["metric"]
            );
        }
    }
}

#[test]
fn ring_show_from_flags_and_from_the_relay_config_agree() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, v) in ring_vectors() {
        let mut args = vec!["ring".to_string(), "show".into(), "--json".into()];
        args.extend(ring_flags(&v));
        let from_flags: Value = serde_json::from_str(&bucky(&args).unwrap()).unwrap();
        let shares: f64 = from_flags["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["share"].as_f64().unwrap())
            .sum();
        assert!((shares - 1.0).abs() < 1e-9, "{name}");
        let Some(config) = v["config"].as_str() else {
            continue;
        };
        let path = tmp.path().join("relay.conf");
        std::fs::write(&path, config).unwrap();
        let from_file: Value = serde_json::from_str(
            &bucky(&[
                "ring",
                "show",
                "--json",
                "--relay-config",
                path.to_str().unwrap(),
            ])
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            from_file["fingerprint"], from_flags["fingerprint"],
            "{name}"
        );
    }
    let table = bucky(&["ring", "show", "--destinations", "c1:2004,c2:2004"]).unwrap();
    assert!(
        table.contains("fingerprint: sha256:") && table.contains("c2:2004"),
        "{table}"
    );
}

#[test]
fn fingerprints_change_with_placement_and_only_with_it() {
    let show = |extra: &[&str]| {
        let mut args = vec![
            "ring",
            "show",
            "--json",
            "--destinations",
            "a:2004,b:2004,c:2004",
        ];
        args.extend_from_slice(extra);
        let v: Value = serde_json::from_str(&bucky(&args).unwrap()).unwrap();
        v["fingerprint"].as_str().unwrap().to_string()
    };
    let base = show(&[]);
    assert_eq!(base, show(&["--hash", "carbon_ch"]), "defaults spelt out");
    for changed in [
        &["--replication", "2"][..],
        &["--no-diverse"],
        &["--hash", "fnv1a_ch"],
        &["--router", "fast-hashing"],
    ] {
        assert_ne!(base, show(changed), "{changed:?}");
    }
    let reordered: Value = serde_json::from_str(
        &bucky(&[
            "ring",
            "show",
            "--json",
            "--destinations",
            "b:2004,a:2004,c:2004",
        ])
        .unwrap(),
    )
    .unwrap();
    assert_ne!(
        reordered["fingerprint"].as_str().unwrap(),
        base,
        "carbon placement depends on order"
    );
}

#[test]
fn bad_rings_name_the_entry() {
    for (destinations, needle) in [
        ("a:2004,:2004", "':2004': empty host"),
        ("a:2004,b:http", "'b:http': port 'http'"),
        ("a:2004:x,a:2104:x", "duplicate destination 'a:2104:x'"),
    ] {
        let err = bucky(&["locate", "--destinations", destinations, "m"]).unwrap_err();
        assert!(format!("{err:#}").contains(needle), "{err:#}");
    }
    let err = bucky(&[
        "locate",
        "--hash",
        "jump_fnv1a_ch",
        "--destinations",
        "a:1",
        "m",
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("relay flavour"), "{err:#}");
}
