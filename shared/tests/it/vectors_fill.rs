//! Carbonate-mode fill against carbonate 1.1.10: every `fill_*` case must match byte for byte,
//! in memory and through `fill_files` on disk.

use bucky_shared::fill::{self, FillMode, FillOptions};
use bucky_shared::whisper::{Image, Whisper};

use crate::support::{case_json, first_difference, whisper_cases};

fn options(case: &serde_json::Value) -> FillOptions {
    let mut options = FillOptions::new(FillMode::Carbonate, case["now"].as_i64().unwrap());
    options.start_from = Some(case["startFrom"].as_i64().unwrap());
    options.end_at = case["endAt"].as_i64().unwrap();
    options.overwrite = case["overwrite"].as_bool().unwrap();
    options
}

#[test]
fn carbonate_fill_matches_fill_archives_byte_for_byte() {
    for dir in whisper_cases("fill_") {
        let case = case_json(&dir);
        let src_bytes = std::fs::read(dir.join("src.wsp")).unwrap();
        let src = Whisper::open(Image::new(src_bytes.clone()), dir.join("src.wsp")).unwrap();
        let dst_before = std::fs::read(dir.join("dst_before.wsp")).unwrap();
        let mut dst = Whisper::open(Image::new(dst_before), dir.join("dst.wsp")).unwrap();
        fill::fill_images(&src, &mut dst, &options(&case)).unwrap();
        let got = dst.into_storage().into_bytes();
        let expected = std::fs::read(dir.join("dst_after.wsp")).unwrap();
        assert!(
            got == expected,
            "{}: differs from dst_after.wsp at byte {:?}",
            dir.display(),
            first_difference(&got, &expected)
        );
        assert_eq!(src.into_storage().into_bytes(), src_bytes, "src modified");
    }
}

#[test]
fn carbonate_fill_files_writes_the_same_bytes_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    for dir in whisper_cases("fill_") {
        let case = case_json(&dir);
        let (src, dst) = (tmp.path().join("src.wsp"), tmp.path().join("dst.wsp"));
        std::fs::copy(dir.join("src.wsp"), &src).unwrap();
        std::fs::copy(dir.join("dst_before.wsp"), &dst).unwrap();
        fill::fill_files(&src, &dst, &options(&case)).unwrap();
        assert!(
            std::fs::read(&dst).unwrap() == std::fs::read(dir.join("dst_after.wsp")).unwrap(),
            "{}",
            dir.display()
        );
        assert!(std::fs::read(&src).unwrap() == std::fs::read(dir.join("src.wsp")).unwrap());
        std::fs::remove_file(&src).unwrap();
        std::fs::remove_file(&dst).unwrap();
    }
}
