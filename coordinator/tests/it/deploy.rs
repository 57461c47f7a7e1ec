//! Every coordinator example in deploy/ parses with the real config loader.

#[test]
fn deploy_examples_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config");
    let mut parsed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("coordinator") && name.ends_with(".toml") {
            let cluster = bucky_coordinator::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!cluster.hosts.is_empty());
            parsed += 1;
        }
    }
    assert!(parsed >= 1);
}
