//! `update_many` against whisper.py 1.1.10: every `um_*` case must match byte for byte.

use bucky_shared::whisper::{Image, Whisper};

use crate::support::{case_json, first_difference, whisper_cases};

#[test]
fn update_many_matches_whisper_py_byte_for_byte() {
    for dir in whisper_cases("um_") {
        let case = case_json(&dir);
        let now = case["now"].as_i64().expect("now");
        let text = std::fs::read_to_string(dir.join("points.json")).expect("points.json");
        let points: Vec<(i64, f64)> = serde_json::from_str(&text).expect("points parse");
        assert_eq!(points.len() as u64, case["point_count"].as_u64().unwrap());

        let before = std::fs::read(dir.join("before.wsp")).unwrap();
        let expected = std::fs::read(dir.join("expected.wsp")).unwrap();
        let mut file = Whisper::open(Image::new(before), dir.join("before.wsp")).unwrap();
        file.update_many(&points, now).unwrap();
        let got = file.into_storage().into_bytes();
        assert!(
            got == expected,
            "{}: differs from expected.wsp at byte {:?}",
            dir.display(),
            first_difference(&got, &expected)
        );
    }
}

#[test]
fn update_many_on_a_real_file_matches_the_image_result() {
    let dir = whisper_cases("um_02").remove(0);
    let case = case_json(&dir);
    let now = case["now"].as_i64().unwrap();
    let points: Vec<(i64, f64)> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("points.json")).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f.wsp");
    std::fs::copy(dir.join("before.wsp"), &path).unwrap();
    let mut file = Whisper::open_file(&path, bucky_shared::whisper::Access::ReadWrite).unwrap();
    file.update_many(&points, now).unwrap();
    drop(file);
    assert!(std::fs::read(&path).unwrap() == std::fs::read(dir.join("expected.wsp")).unwrap());
}
