//! Inventory files (`--inventory hosts.toml`): any bytes either read as hosts
//! or fail with an error naming the file. No panics.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hosts.toml");
    std::fs::write(&path, data).expect("write inventory");
    if let Err(e) = cairn::launch::read_inventory(&path) {
        assert!(
            e.0.contains("hosts.toml"),
            "error without the file: {}",
            e.0
        );
    }
});
