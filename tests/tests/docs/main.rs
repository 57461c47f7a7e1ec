//! Every shell command in the README, docs/ and deploy/README.md, run as written in a
//! three-node cluster of real processes on loopback (see `world` for how operator paths map).
//! The pages run in the order an operator reads them: deploy first, then the rest against the
//! cluster that deploy set up.

mod markdown;
mod world;

use std::path::Path;

use world::{NODES, World};

/// Pages in reading order; every page of docs/ must be here.
const PAGES: [&str; 7] = [
    "deploy/README.md",
    "README.md",
    "docs/concepts.md",
    "docs/operations.md",
    "docs/migrating.md",
    "docs/comparison.md",
    "docs/safety.md",
];

#[test]
fn every_documented_command_works_as_written() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for entry in std::fs::read_dir(repo.join("docs")).unwrap() {
        let name = format!("docs/{}", entry.unwrap().file_name().to_string_lossy());
        assert!(
            PAGES.contains(&name.as_str()),
            "{name} is not run by the docs test"
        );
    }
    let mut world = World::new();
    let mut commands = 0;
    for page in PAGES {
        for block in markdown::blocks(&repo.join(page), page) {
            let nodes: Vec<&str> = match block.on.as_deref() {
                None => vec![NODES[0]],
                Some("every node") => NODES.to_vec(),
                Some(node) => {
                    assert!(NODES.contains(&node), "{}: no node {node}", block.origin);
                    vec![node]
                }
            };
            for node in nodes {
                world.run_block(&block.origin, &block.lines, node);
            }
            commands += block.lines.len();
        }
    }
    assert!(commands >= 40, "only {commands} commands found");

    // What the pages claim happened, checked on disk.
    for node in NODES {
        let bucket = world.path("/srv/bucky/", node).join(node);
        assert!(
            bucket.join(".bucky/owner.json").exists(),
            "{node} backed up into its own bucket"
        );
        let manifests = std::fs::read_dir(bucket.join(".bucky/manifests"))
            .unwrap()
            .count();
        assert!(manifests >= 2, "{node}: {manifests} runs");
    }
    let by_hand = world.path("/tmp/user.wsp", NODES[1]);
    let restored = std::fs::read(&by_hand).expect("the gunzip example wrote /tmp/user.wsp");
    let original = std::fs::read(
        bucky_shared::metric::path_of(
            &world.path("/var/lib/graphite/whisper", NODES[1]),
            "servers.web01.cpu.user",
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        restored, original,
        "the hand-restored version is the file as backed up"
    );

    // The cron line deploy/ installs runs a cluster backup as it stands.
    world.run_cron("bucky-backup", NODES[0]);
}
