//! `runbook.toml` parsing: any text either parses into a manifest whose
//! defaults then resolve, or fails with an error naming the file. No panics.

#![no_main]

use cairn::manifest::{resolve, Inputs, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Manifest::parse("fuzz/runbook.toml", text) {
        Ok(m) => {
            let env = [("HCLOUD_TOKEN".to_string(), "x".to_string())].into();
            if let Err(e) = resolve(&m, &Inputs::default(), &env) {
                let _ = e.to_string();
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("fuzz/runbook.toml"),
                "error without the file: {msg}"
            );
        }
    }
});
