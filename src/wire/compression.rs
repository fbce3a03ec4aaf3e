//! Every compression casefile speaks, in one place: the receivers decode request bodies
//! with [`decompress`] (never more than a size limit, whatever the body claims) and the
//! exporters encode with [`compress`].
//!
//! The names and framings are the Collector's (`confighttp`, `configgrpc`):
//! - `gzip` (several members read as one stream, as Go's reader does);
//! - `zlib` and `deflate`: both the zlib format (RFC 1950), as the Collector reads and
//!   writes `deflate`;
//! - `zstd`: zstd frames;
//! - `snappy`: over HTTP the block format, as the Collector's exporters send it; a body
//!   that starts with the framing format's stream identifier is read as framed, as the
//!   Collector's receiver does (older Collectors framed it); over gRPC the framing format
//!   (the Collector's gRPC snappy codec);
//! - `x-snappy-framed`: the snappy framing format;
//! - `lz4`: the LZ4 frame format.

use std::io::Read;

/// A compression, by its Content-Encoding / grpc-encoding / `compression:` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Gzip,
    Zstd,
    Zlib,
    /// The zlib format under the name `deflate` (as HTTP and the Collector mean it).
    Deflate,
    /// Snappy block format (HTTP; framed bodies are recognised on decode).
    Snappy,
    /// Snappy framing format (`x-snappy-framed` over HTTP, `snappy` over gRPC).
    SnappyFramed,
    Lz4,
}

/// The Content-Encodings the OTLP/HTTP receiver accepts, as the Collector's receiver does.
pub const HTTP_ENCODINGS: &[Codec] = &[
    Codec::Gzip,
    Codec::Zstd,
    Codec::Zlib,
    Codec::Deflate,
    Codec::Snappy,
    Codec::SnappyFramed,
    Codec::Lz4,
];

/// The grpc-encodings the OTLP/gRPC receiver accepts: what the Collector's exporters send,
/// and `deflate` (grpc's zlib), which grpc's own clients offer.
pub const GRPC_ENCODINGS: &[&str] = &["gzip", "zstd", "snappy", "deflate"];

/// The `compression:` values of an `otlp` (gRPC) exporter, `none` aside.
pub const GRPC_EXPORTER_CHOICES: &[&str] = &["gzip", "zstd", "snappy"];

/// The `compression:` values of an `otlphttp` exporter, `none` aside.
pub const HTTP_EXPORTER_CHOICES: &[&str] = &[
    "gzip",
    "zstd",
    "zlib",
    "deflate",
    "snappy",
    "x-snappy-framed",
    "lz4",
];

impl Codec {
    /// The HTTP Content-Encoding name (case-insensitive, as HTTP content codings are).
    pub fn from_http(name: &str) -> Option<Codec> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Codec::Gzip,
            "zstd" => Codec::Zstd,
            "zlib" => Codec::Zlib,
            "deflate" => Codec::Deflate,
            "snappy" => Codec::Snappy,
            "x-snappy-framed" => Codec::SnappyFramed,
            "lz4" => Codec::Lz4,
            _ => return None,
        })
    }

    /// The grpc-encoding name: gRPC's `snappy` is the framing format.
    pub fn from_grpc(name: &str) -> Option<Codec> {
        Some(match name {
            "gzip" => Codec::Gzip,
            "zstd" => Codec::Zstd,
            "snappy" => Codec::SnappyFramed,
            "deflate" => Codec::Deflate,
            _ => return None,
        })
    }

    /// The name sent in Content-Encoding.
    pub fn http_name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
            Codec::Zlib => "zlib",
            Codec::Deflate => "deflate",
            Codec::Snappy => "snappy",
            Codec::SnappyFramed => "x-snappy-framed",
            Codec::Lz4 => "lz4",
        }
    }

    /// The name sent in grpc-encoding (only the gRPC codecs have one).
    pub fn grpc_name(self) -> Option<&'static str> {
        match self {
            Codec::Gzip => Some("gzip"),
            Codec::Zstd => Some("zstd"),
            Codec::SnappyFramed => Some("snappy"),
            Codec::Deflate => Some("deflate"),
            _ => None,
        }
    }
}

/// The supported Content-Encodings as one list for error messages.
pub fn http_encodings_list() -> String {
    let names: Vec<_> = HTTP_ENCODINGS.iter().map(|c| c.http_name()).collect();
    format!("{} (or none)", names.join(", "))
}

/// Why a body could not be decompressed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecompressError {
    /// More than the limit once decompressed; nothing past it was kept.
    #[error("more than {limit} bytes once decompressed")]
    TooLarge { limit: usize },
    #[error("invalid {codec} data: {reason}")]
    Corrupt { codec: &'static str, reason: String },
}

/// The snappy framing format's stream identifier chunk, the start of every framed stream.
const SNAPPY_STREAM_IDENTIFIER: &[u8] = b"\xff\x06\x00\x00sNaPpY";

/// The largest zstd window accepted: the decoder allocates the window a frame declares, so
/// a bomb's header could otherwise ask for 128 MiB. 8 MiB (what zstd's level 19 and Go's
/// default encoder use) or the next power of two above `limit`, at most zstd's 128 MiB.
fn zstd_window_log_max(limit: usize) -> u32 {
    let needed = usize::BITS - limit.max(1).saturating_sub(1).leading_zeros();
    needed.clamp(23, 27)
}

/// Decompresses `input` into at most `limit` bytes: past it, [`DecompressError::TooLarge`]
/// and never more than `limit + 1` bytes allocated for the output.
pub fn decompress(codec: Codec, input: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let name = codec.http_name();
    let corrupt = |e: std::io::Error| DecompressError::Corrupt {
        codec: name,
        reason: e.to_string(),
    };
    let hint = size_hint(codec, input);
    match codec {
        Codec::Gzip => read_bounded(
            flate2::read::MultiGzDecoder::new(input),
            input.len(),
            hint,
            limit,
        )
        .map_err(|e| e.map(corrupt)),
        Codec::Zlib | Codec::Deflate => read_bounded(
            flate2::read::ZlibDecoder::new(input),
            input.len(),
            hint,
            limit,
        )
        .map_err(|e| e.map(corrupt)),
        Codec::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(input).map_err(corrupt)?;
            d.window_log_max(zstd_window_log_max(limit))
                .map_err(corrupt)?;
            read_bounded(d, input.len(), hint, limit).map_err(|e| e.map(corrupt))
        }
        Codec::Snappy if !input.starts_with(SNAPPY_STREAM_IDENTIFIER) => {
            let len = snap::raw::decompress_len(input).map_err(|e| DecompressError::Corrupt {
                codec: name,
                reason: e.to_string(),
            })?;
            if len > limit {
                return Err(DecompressError::TooLarge { limit });
            }
            snap::raw::Decoder::new()
                .decompress_vec(input)
                .map_err(|e| DecompressError::Corrupt {
                    codec: name,
                    reason: e.to_string(),
                })
        }
        Codec::Snappy | Codec::SnappyFramed => read_bounded(
            snap::read::FrameDecoder::new(input),
            input.len(),
            hint,
            limit,
        )
        .map_err(|e| e.map(corrupt)),
        Codec::Lz4 => read_bounded(
            lz4_flex::frame::FrameDecoder::new(input),
            input.len(),
            hint,
            limit,
        )
        .map_err(|e| e.map(corrupt)),
    }
}

/// Bodies larger than this are decompressed on the blocking pool (a 20 MiB body takes tens
/// of milliseconds: not on an async worker).
pub const BLOCKING_ABOVE: usize = 256 * 1024;

/// [`decompress`], on the blocking pool for a body over [`BLOCKING_ABOVE`].
pub async fn decompress_async(
    codec: Codec,
    input: bytes::Bytes,
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    if input.len() <= BLOCKING_ABOVE {
        return decompress(codec, &input, limit);
    }
    tokio::task::spawn_blocking(move || decompress(codec, &input, limit))
        .await
        .unwrap_or_else(|e| {
            Err(DecompressError::Corrupt {
                codec: codec.http_name(),
                reason: e.to_string(),
            })
        })
}

/// Either over the limit, or an I/O error to turn into [`DecompressError::Corrupt`].
enum Bounded {
    TooLarge(usize),
    Io(std::io::Error),
}

impl Bounded {
    fn map(self, corrupt: impl Fn(std::io::Error) -> DecompressError) -> DecompressError {
        match self {
            Bounded::TooLarge(limit) => DecompressError::TooLarge { limit },
            Bounded::Io(e) => corrupt(e),
        }
    }
}

/// Reads `r` to its end into a buffer that grows by doubling but never past `limit + 1`
/// bytes; reaching `limit + 1` means the body is too large.
/// The decompressed size a body states, when its format says it: gzip's trailer (the last
/// member's size mod 2^32) or a zstd frame's content size. A hint only: the reader still
/// stops at the limit and grows past a wrong one.
fn size_hint(codec: Codec, input: &[u8]) -> Option<usize> {
    match codec {
        Codec::Gzip if input.len() >= 18 && input.starts_with(&[0x1f, 0x8b]) => {
            let tail: [u8; 4] = input[input.len() - 4..].try_into().ok()?;
            Some(u32::from_le_bytes(tail) as usize)
        }
        Codec::Zstd => zstd::zstd_safe::get_frame_content_size(input)
            .ok()
            .flatten()
            .and_then(|n| usize::try_from(n).ok()),
        _ => None,
    }
}

/// OTLP compresses 5 to 20 times; a stated size past this ratio is not used to allocate.
const MAX_HINTED_RATIO: usize = 64;

/// Reads `r` to its end into one buffer, never past `limit`. With a size `hint` the buffer
/// is allocated once (no regrowth copies); without, it starts at four times the input and
/// doubles.
fn read_bounded(
    mut r: impl Read,
    input_len: usize,
    hint: Option<usize>,
    limit: usize,
) -> Result<Vec<u8>, Bounded> {
    let cap = limit.saturating_add(1);
    let mut buf: Vec<u8> = Vec::new();
    let mut filled = 0;
    let mut next = match hint {
        // One byte more than stated, so the read that finds the end needs no regrowth.
        // Trusted only within a plausible ratio: a forged trailer must not buy a
        // limit-sized, zero-filled buffer for a few bytes of input.
        Some(h) if h < cap && h <= input_len.saturating_mul(MAX_HINTED_RATIO) => {
            (h + 1).max(input_len)
        }
        _ => input_len.saturating_mul(4).clamp(16 << 10, 1 << 20),
    }
    .min(cap);
    loop {
        if filled == buf.len() {
            if buf.len() >= cap {
                return Err(Bounded::TooLarge(limit));
            }
            buf.reserve_exact(next - buf.len());
            buf.resize(next, 0);
            next = next.saturating_mul(2).min(cap);
        }
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Bounded::Io(e)),
        }
    }
    if filled > limit {
        return Err(Bounded::TooLarge(limit));
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Compresses `data` as the Collector's exporters do (gzip and zlib at zlib's default
/// level 6, zstd at its default level 3, snappy and lz4 have no level).
pub fn compress(codec: Codec, data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let out = Vec::with_capacity(data.len() / 4 + 64);
    Ok(match codec {
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            e.write_all(data)?;
            e.finish()?
        }
        Codec::Zlib | Codec::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(out, flate2::Compression::default());
            e.write_all(data)?;
            e.finish()?
        }
        Codec::Zstd => zstd::bulk::compress(data, zstd::DEFAULT_COMPRESSION_LEVEL)?,
        Codec::Snappy => snap::raw::Encoder::new()
            .compress_vec(data)
            .map_err(std::io::Error::other)?,
        Codec::SnappyFramed => {
            let mut e = snap::write::FrameEncoder::new(out);
            e.write_all(data)?;
            e.into_inner().map_err(|e| e.into_error())?
        }
        Codec::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(out);
            e.write_all(data)?;
            e.finish().map_err(std::io::Error::other)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| format!("span-{} ", i % 977).into_bytes())
            .collect()
    }

    #[test]
    fn every_codec_round_trips() {
        let data = sample();
        for &c in HTTP_ENCODINGS {
            let z = compress(c, &data).unwrap();
            assert!(z.len() < data.len() / 2, "{c:?} compresses");
            assert_eq!(decompress(c, &z, data.len()).unwrap(), data, "{c:?}");
            assert_eq!(
                decompress(c, &z, data.len() - 1),
                Err(DecompressError::TooLarge {
                    limit: data.len() - 1
                }),
                "{c:?} one byte over the limit"
            );
        }
    }

    #[test]
    fn snappy_reads_both_framings_as_the_collector_does() {
        let data = sample();
        let framed = compress(Codec::SnappyFramed, &data).unwrap();
        assert_eq!(decompress(Codec::Snappy, &framed, 1 << 30).unwrap(), data);
        let empty = compress(Codec::Snappy, b"").unwrap();
        assert_eq!(decompress(Codec::Snappy, &empty, 10).unwrap(), b"");
    }

    #[test]
    fn a_bomb_is_refused_without_allocating_it() {
        // 1 GiB of zeros, compressed in streaming fashion (never held whole here).
        use std::io::Write;
        let zeros = vec![0u8; 1 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut zs = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        let mut lz = lz4_flex::frame::FrameEncoder::new(Vec::new());
        let mut sn = snap::write::FrameEncoder::new(Vec::new());
        for _ in 0..1024 {
            gz.write_all(&zeros).unwrap();
            zs.write_all(&zeros).unwrap();
            lz.write_all(&zeros).unwrap();
            sn.write_all(&zeros).unwrap();
        }
        let bombs = [
            (Codec::Gzip, gz.finish().unwrap()),
            (Codec::Zstd, zs.finish().unwrap()),
            (Codec::Lz4, lz.finish().unwrap()),
            (Codec::SnappyFramed, sn.into_inner().unwrap()),
        ];
        for (c, bomb) in bombs {
            assert!(bomb.len() < 64 << 20, "{c:?} {}", bomb.len());
            assert_eq!(
                decompress(c, &bomb, 4 << 20),
                Err(DecompressError::TooLarge { limit: 4 << 20 }),
                "{c:?}"
            );
        }
        // A snappy block declares its length: refused before any output exists.
        let mut block = Vec::new();
        let mut n = 1u64 << 30;
        while n >= 0x80 {
            block.push((n as u8) | 0x80);
            n >>= 7;
        }
        block.push(n as u8);
        block.extend_from_slice(&[0x00, 0x00]);
        assert_eq!(
            decompress(Codec::Snappy, &block, 4 << 20),
            Err(DecompressError::TooLarge { limit: 4 << 20 })
        );
    }

    #[test]
    fn a_stated_size_allocates_once_and_a_false_one_only_costs_regrowth() {
        // Compresses about as OTLP does (a few times, well under the trusted ratio).
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| format!("span-{} ", i.wrapping_mul(2_654_435_761)).into_bytes())
            .collect();
        let gz = compress(Codec::Gzip, &data).unwrap();
        let zs = zstd::bulk::compress(&data, 3).unwrap();
        assert_eq!(size_hint(Codec::Gzip, &gz), Some(data.len()));
        assert_eq!(size_hint(Codec::Zstd, &zs), Some(data.len()));
        for (c, z) in [(Codec::Gzip, &gz), (Codec::Zstd, &zs)] {
            let out = decompress(c, z, 1 << 30).unwrap();
            assert_eq!(out, data, "{c:?}");
            assert_eq!(out.capacity(), data.len() + 1, "{c:?}: one allocation");
        }
        // Two gzip members: the trailer states the last one's size only; it is a hint,
        // and the buffer grows past it.
        let mut two = compress(Codec::Gzip, b"first member, short").unwrap();
        two.extend_from_slice(&gz);
        let out = decompress(Codec::Gzip, &two, 1 << 30).unwrap();
        assert_eq!(&out[..19], b"first member, short");
        assert_eq!(&out[19..], &data[..]);
        // A trailer stating far more than any real ratio is not trusted to allocate (and
        // fails gzip's own length check).
        let mut forged = gz.clone();
        let n = forged.len();
        forged[n - 4..].copy_from_slice(&(u32::MAX / 2).to_le_bytes());
        assert!(matches!(
            decompress(Codec::Gzip, &forged, usize::MAX),
            Err(DecompressError::Corrupt { .. })
        ));
    }

    #[test]
    fn zstd_refuses_a_huge_declared_window() {
        assert_eq!(zstd_window_log_max(4 << 20), 23);
        assert_eq!(zstd_window_log_max(20 << 20), 25);
        assert_eq!(zstd_window_log_max(usize::MAX), 27);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Untrusted bodies: valid streams with bytes flipped, cut or extended, and plain
        /// garbage, never panic and never decode past the limit.
        #[test]
        fn damaged_streams_never_panic_nor_pass_the_limit(
            seed in 0u64..1000,
            flips in proptest::collection::vec((0usize..1 << 16, proptest::prelude::any::<u8>()), 0..8),
            cut in 0usize..1 << 16,
            garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let data: Vec<u8> = (0..4000u64).flat_map(|i| ((i * seed) % 251).to_le_bytes()).collect();
            for &c in HTTP_ENCODINGS {
                let mut z = compress(c, &data).unwrap();
                for &(at, b) in &flips {
                    let n = z.len();
                    z[at % n] ^= b;
                }
                z.truncate(cut.max(1).min(z.len()));
                z.extend_from_slice(&garbage[..garbage.len() % 7]);
                let limit = data.len() / 2;
                if let Ok(out) = decompress(c, &z, limit) {
                    proptest::prop_assert!(out.len() <= limit);
                }
                let _ = decompress(c, &garbage, limit);
            }
        }
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        for &c in HTTP_ENCODINGS {
            let r = decompress(c, b"\x01\x02\x03not compressed at all", 1 << 20);
            assert!(
                matches!(r, Err(DecompressError::Corrupt { .. })),
                "{c:?}: {r:?}"
            );
        }
    }
}
