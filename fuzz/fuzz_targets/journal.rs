//! Journals on disk (`.cairn/runs/ID/journal.jsonl`): any bytes either read
//! as a journal or are refused with an error. No panics.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("journal.jsonl");
    std::fs::write(&path, data).expect("write journal");
    match cairn::journal::Journal::read(&path) {
        Ok(j) => {
            let _ = j.status();
            let _ = j.done_steps();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
