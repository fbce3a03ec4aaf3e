//! The config loader on arbitrary text (invalid UTF-8 replaced, so every input is text).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| casefile_fuzz::config(&String::from_utf8_lossy(data)));
