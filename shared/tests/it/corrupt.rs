//! Corrupt, truncated and foreign input: a typed error naming the file, never a panic.

use bucky_shared::fill::{self, FillMode, FillOptions};
use bucky_shared::whisper::{
    self, ArchiveSpec, CreateOptions, Error, Image, Whisper, create_image,
};
use proptest::prelude::*;

fn valid_file() -> Vec<u8> {
    let schema = [
        ArchiveSpec {
            seconds_per_point: 60,
            points: 30,
        },
        ArchiveSpec {
            seconds_per_point: 300,
            points: 20,
        },
    ];
    let mut file = Whisper::open(
        create_image(&schema, &CreateOptions::default()).unwrap(),
        "v",
    )
    .unwrap();
    let points: Vec<(i64, f64)> = (0..40)
        .map(|i| (1_700_000_000 - i * 60, i as f64))
        .collect();
    file.update_many(&points, 1_700_000_000).unwrap();
    file.into_storage().into_bytes()
}

/// Every operation on an opened file; they must return, never panic.
fn exercise(bytes: Vec<u8>) {
    if let Ok(mut file) = Whisper::open(Image::new(bytes.clone()), "fuzz.wsp") {
        let _ = file.fetch(1_699_990_000, None, 1_700_000_000);
        let _ = file.update_many(&[(1_700_000_000, 1.0), (1_699_999_000, 2.0)], 1_700_000_000);
        let src = Whisper::open(Image::new(valid_file()), "src.wsp").unwrap();
        for mode in [FillMode::Safe, FillMode::Carbonate] {
            let mut dst = Whisper::open(Image::new(bytes.clone()), "fuzz.wsp").unwrap();
            let _ = fill::fill_images(&src, &mut dst, &FillOptions::new(mode, 1_700_000_000));
            let _ = fill::fill_images(
                &dst,
                &mut Whisper::open(Image::new(valid_file()), "d").unwrap(),
                &FillOptions::new(mode, 1_700_000_000),
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        exercise(bytes);
    }

    #[test]
    fn truncated_files_are_refused_by_name(cut in 0usize..768) {
        let bytes = valid_file();
        let cut = cut.min(bytes.len() - 1);
        let err = Whisper::open(Image::new(bytes[..cut].to_vec()), "cut.wsp").unwrap_err();
        prop_assert!(matches!(err, Error::Truncated { .. }), "{}", err);
        prop_assert!(err.to_string().contains("cut.wsp"));
    }

    #[test]
    fn flipped_header_bytes_never_panic(at in 0usize..40, byte in any::<u8>()) {
        let mut bytes = valid_file();
        bytes[at] = byte;
        exercise(bytes);
    }
}

#[test]
fn errors_on_disk_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.wsp");
    std::fs::write(&path, &valid_file()[..100]).unwrap();
    let err = Whisper::open_file(&path, whisper::Access::Read)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("short.wsp") && err.contains("truncated"),
        "{err}"
    );
    let gz = dir.path().join("compressed.wsp");
    let mut bytes = b"whisper_compressed\x00\x01".to_vec();
    bytes.resize(200, 7);
    std::fs::write(&gz, bytes).unwrap();
    let err = Whisper::open_file(&gz, whisper::Access::Read)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("compressed.wsp") && err.contains("go-carbon"),
        "{err}"
    );
    let missing = dir.path().join("missing.wsp");
    let err = Whisper::open_file(&missing, whisper::Access::Read)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.wsp"), "{err}");
}

#[test]
fn fill_refuses_a_file_into_itself_and_a_corrupt_source_leaves_dst_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("dst.wsp");
    std::fs::write(&dst, valid_file()).unwrap();
    let options = FillOptions::new(FillMode::Safe, 1_700_000_000);
    let err = fill::fill_files(&dst, &dst, &options).unwrap_err();
    assert!(matches!(err, fill::Error::SameFile { .. }), "{err}");
    let src = dir.path().join("src.wsp");
    std::fs::write(&src, &valid_file()[..50]).unwrap();
    let before = std::fs::read(&dst).unwrap();
    let err = fill::fill_files(&src, &dst, &options).unwrap_err();
    assert!(err.to_string().contains("src.wsp"), "{err}");
    assert_eq!(std::fs::read(&dst).unwrap(), before);
}
