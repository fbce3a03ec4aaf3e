//! The OTLP/JSON reader on arbitrary bytes, with a round trip through the writer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| casefile_fuzz::json(data));
