//! Record batch parsing and validation must never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = freshet_log::batch::split(data);
    let _ = freshet_log::batch::decode_uncompressed(data);
});
