//! The protobuf fast path on arbitrary bytes, checked against prost's full decode.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| casefile_fuzz::protobuf(data));
