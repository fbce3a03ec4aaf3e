//! Threshold encoding and tracestate stamping, against values computed independently
//! (Python with exact fractions: `T = 2^56 - round(p × 2^56)`, hex without trailing zeros).

use super::*;

/// (percentage, th value) computed outside casefile.
const VECTORS: &[(f64, &str)] = &[
    (50.0, "8"),
    (25.0, "c"),
    (10.0, "e6666666666666"),
    (1.0, "fd70a3d70a3d71"),
    (33.3, "aac083126e979"),
    (12.345, "e06594af4f0d84"),
    (0.01, "fff972474538ef"),
    (99.99, "00068db8bac718"),
];

#[test]
fn thresholds_encode_as_the_specification_computes_them() {
    for (pct, th) in VECTORS {
        assert_eq!(encode(threshold_of(*pct)), *th, "{pct}%");
    }
    assert_eq!(threshold_of(100.0), 0);
    assert_eq!(encode(0), "0", "keep-all is th:0, not empty");
    assert_eq!(threshold_of(250.0), 0);
    assert_eq!(threshold_of(0.0), NEVER);
    assert_eq!(threshold_of(-3.0), NEVER);
    assert_eq!(threshold_of(f64::NAN), NEVER);
    assert_eq!(threshold_of(1e-16), NEVER, "below 2^-56");
}

#[test]
fn adjusted_counts_are_the_inverse_probability() {
    assert_eq!(adjusted_count(0), 1.0);
    assert_eq!(adjusted_count(threshold_of(50.0)), 2.0);
    assert_eq!(adjusted_count(threshold_of(25.0)), 4.0);
    assert!((adjusted_count(threshold_of(10.0)) - 10.0).abs() < 1e-9);
    assert!((adjusted_count(threshold_of(33.3)) - 1.0 / 0.333).abs() < 1e-9);
}

#[test]
fn trace_id_randomness_is_the_low_56_bits_big_endian() {
    let id = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xaa, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
        0x07,
    ];
    assert_eq!(trace_id_randomness(&id), 0x01_0203_0405_0607);
}

#[test]
fn a_bare_or_empty_header_gets_ot_first() {
    assert_eq!(
        stamp("", threshold_of(50.0)),
        Ok((Some("ot=th:8".into()), 1 << 55))
    );
    let (h, _) = stamp(
        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
        threshold_of(25.0),
    )
    .unwrap();
    assert_eq!(
        h.as_deref(),
        Some("ot=th:c,congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    );
}

#[test]
fn rv_and_other_ot_fields_are_kept_and_ot_moves_to_the_front() {
    let (h, t) = stamp("a=1,ot=xx:y;rv:abcdef01234567,b=2", threshold_of(50.0)).unwrap();
    assert_eq!(h.as_deref(), Some("ot=rv:abcdef01234567;th:8;xx:y,a=1,b=2"));
    assert_eq!(t, 1 << 55);
}

#[test]
fn a_head_threshold_is_raised_never_lowered() {
    // Head sampling at 50 % (th:8), tail at 25 % (th:c): the stricter one wins.
    let (h, t) = stamp("ot=th:8", threshold_of(25.0)).unwrap();
    assert_eq!(h.as_deref(), Some("ot=th:c"));
    assert_eq!(t, threshold_of(25.0));
    // Head at 10 %, tail at 50 %: the head's threshold stays as it was written.
    let (h, t) = stamp("ot=th:E6666666666666;rv:00000000000001", threshold_of(50.0)).unwrap();
    assert_eq!(h, None, "untouched, upper-case hex included");
    assert_eq!(t, 0xe6666666666666);
    // Equal: nothing to write.
    assert_eq!(stamp("ot=th:8", 1 << 55), Ok((None, 1 << 55)));
}

#[test]
fn malformed_headers_are_left_alone() {
    for bad in [
        "ot=th:8,ot=th:c",       // duplicate member
        "OT=th:8",               // upper-case key
        "ot=th:xyz",             // th not hex
        "ot=th:123456789abcdef", // th longer than 14 digits
        "ot=th:",                // th empty
        "ot=rv:abc",             // rv shorter than 14 digits
        "ot=th:8;;rv:1",         // empty ot field
        "ot=Th:8",               // upper-case ot key
        "ot=th:8;x:a+b",         // bad ot value character
        "a=1,b",                 // member without =
    ] {
        assert_eq!(stamp(bad, 1 << 55), Err(Malformed), "{bad}");
        assert_eq!(read(bad), Err(Malformed), "{bad}");
    }
    let long = format!("ot=th:8;x:{}", "a".repeat(250));
    assert_eq!(stamp(&long, 1), Err(Malformed), "ot value over 256 bytes");
}

#[test]
fn read_finds_threshold_and_randomness() {
    assert_eq!(read(""), Ok(OtValues::default()));
    assert_eq!(read("a=1"), Ok(OtValues::default()));
    assert_eq!(
        read("a=1,ot=th:c;rv:0123456789abcd"),
        Ok(OtValues {
            threshold: Some(0xc0_0000_0000_0000),
            randomness: Some(0x01_2345_6789_abcd),
        })
    );
}
