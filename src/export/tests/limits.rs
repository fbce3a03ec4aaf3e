//! Bounded requests: the decider cuts kept spans into requests within the exporters'
//! `sending_queue.batch` bounds; a span too large alone is dropped as `too_large`; the
//! write-ahead log does not replay a span the downstream refused once isolated.

use std::collections::HashSet;
use std::time::Duration;

use proptest::prelude::*;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;

use super::*;
use crate::export::chunk::request_chunks;
use crate::export::config::{BatchCfg, ExporterCfg, FileCfg, RequestLimits};
use crate::model;
use crate::wire::decode::{decode_request_with, Checks};
use crate::wire::encode::encode_request;

/// A request of one trace: under each of `resources` resources (two scopes each), spans
/// whose `big` attribute holds the given numbers of bytes, spread round-robin.
fn sized_request(trace: u8, resources: usize, sizes: &[usize]) -> ExportTraceServiceRequest {
    let mut req = request("sized", 0);
    let template = req.resource_spans.pop().unwrap();
    for r in 0..resources {
        let mut rs = template.clone();
        rs.schema_url = format!("https://r/{r}");
        rs.scope_spans = (0..2)
            .map(|s| ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: format!("scope-{r}-{s}"),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        req.resource_spans.push(rs);
    }
    for (i, &size) in sizes.iter().enumerate() {
        let span = Span {
            trace_id: vec![trace; 16],
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: format!("sized-{i}"),
            attributes: vec![KeyValue {
                key: "big".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("x".repeat(size))),
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let rs = &mut req.resource_spans[i % resources];
        rs.scope_spans[(i / resources) % 2].spans.push(span);
    }
    req
}

/// The spans as the decoder reads them, with no ingest size bound (`max_span_bytes` may be
/// set above the export bound; the exporters must still cope).
fn spans_of(req: &ExportTraceServiceRequest) -> Vec<model::Span> {
    let checks = Checks {
        max_span_bytes: usize::MAX,
        ..Checks::default()
    };
    decode_request_with(&req.encode_to_vec(), &checks)
        .unwrap()
        .spans
}

/// Chunks cover the spans once, in order, each within the bounds (a span too large alone
/// in a chunk of its own).
fn check_chunks(spans: &[model::Span], limits: RequestLimits) -> usize {
    let chunks = request_chunks(spans, limits);
    let mut next = 0;
    for c in &chunks {
        assert_eq!(c.start, next, "contiguous");
        assert!(!c.is_empty() && c.len() <= limits.max_spans);
        let len = encode_request(&spans[c.clone()]).len();
        assert!(
            len <= limits.max_bytes || c.len() == 1,
            "{} spans in {len} bytes over {}",
            c.len(),
            limits.max_bytes
        );
        next = c.end;
    }
    assert_eq!(next, spans.len());
    chunks.len()
}

#[test]
fn a_6mib_trace_is_cut_into_requests_within_the_bounds() {
    let limits = RequestLimits::default();
    // Many small spans, then a few big ones.
    let many = spans_of(&sized_request(1, 3, &vec![1000; 6300]));
    assert!(check_chunks(&many, limits) >= 2);
    let few = spans_of(&sized_request(2, 1, &[512 << 10; 12]));
    assert_eq!(
        check_chunks(&few, limits),
        3,
        "five 512 KiB spans a request"
    );
    // Items: the span bound, and the byte bound still.
    let items = RequestLimits {
        max_spans: 100,
        ..limits
    };
    assert_eq!(check_chunks(&many, items), 63);
    assert_eq!(check_chunks(&few, items), 3);
    // A span over the bound travels alone.
    let mut sizes = vec![100; 10];
    sizes[4] = 4 << 20;
    let mixed = spans_of(&sized_request(3, 2, &sizes));
    let chunks = request_chunks(&mixed, limits);
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[1].len(), 1);
    assert!(mixed[chunks[1].start].bytes.len() > 4 << 20);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn chunks_never_exceed_the_byte_bound(
        sizes in prop::collection::vec(0usize..40_000, 1..60),
        resources in 1usize..4,
        max_bytes in 65_536usize..200_000,
        max_spans in 1usize..50,
    ) {
        let spans = spans_of(&sized_request(4, resources, &sizes));
        check_chunks(&spans, RequestLimits { max_bytes, max_spans });
    }
}

fn bytes_bound(cfg: &mut OtlpCfg, max: u64) {
    cfg.sending_queue.batch = BatchCfg {
        max_size: Some(crate::config::size::ByteSize(max)),
        ..Default::default()
    };
}

#[tokio::test]
async fn request_limits_are_the_smallest_over_the_otlp_exporters() {
    let file = || {
        ExporterCfg::File(FileCfg {
            path: std::env::temp_dir()
                .join(format!("casefile-limits-{}.jsonl", std::process::id()))
                .to_string_lossy()
                .into_owned(),
            flush_every_line: false,
        })
    };
    let only_file = Exporters::start(&[("file".into(), file())]).unwrap();
    assert_eq!(only_file.request_limits().max_bytes, usize::MAX);
    assert_eq!(only_file.request_limits().max_spans, 4096);
    let mut a = otlp_cfg("127.0.0.1:1");
    bytes_bound(&mut a, 1 << 20);
    let mut b = otlp_cfg("http://127.0.0.1:1");
    b.sending_queue.batch.sizer = Some("items".into());
    b.sending_queue.batch.max_size = Some(crate::config::size::ByteSize(100));
    let ex = Exporters::start(&[
        ("otlp".into(), ExporterCfg::Otlp(a)),
        ("otlphttp".into(), ExporterCfg::OtlpHttp(b)),
        ("file".into(), file()),
    ])
    .unwrap();
    assert_eq!(
        ex.request_limits(),
        RequestLimits {
            max_bytes: 1 << 20,
            max_spans: 100
        }
    );
    ex.shutdown(Duration::ZERO).await;
    only_file.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn a_batch_over_the_bound_is_split_before_sending_and_a_lone_span_dropped() {
    let mut down = grpc_downstream(listen().await, vec![]).await;
    let mut cfg = otlp_cfg(&down.addr.to_string());
    bytes_bound(&mut cfg, 64 << 10);
    let ex = start("otlp", ExporterCfg::Otlp(cfg));
    ex.send(batch_of(&sized_request(5, 1, &[40_000; 4]))).await;
    ex.send(batch_of(&sized_request(6, 1, &[100_000]))).await;
    ex.clone().shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        down.calls(),
        4,
        "four requests of one span; the lone large span not sent"
    );
    for _ in 0..4 {
        assert_eq!(
            down.next().await.request.resource_spans[0].scope_spans[0]
                .spans
                .len(),
            1
        );
    }
    let s = stats(&ex);
    assert_eq!((s.sent_spans, s.failed_spans, s.dropped_spans), (4, 1, 1));
    assert_eq!(ex.dropped_by_reason()[0].1, [("too_large", 1)]);
}

/// A buffer keeping every trace.
fn keep_all() -> crate::buffer::Buffer {
    use crate::buffer::{Buffer, BufferCfg};
    let cfgs: Vec<crate::policy::PolicyCfg> =
        serde_yaml_ng::from_str("[{ name: everything, type: always_sample }]").unwrap();
    let policies = crate::policy::Policies::build(&cfgs, false).unwrap();
    let cfg = crate::config::embedded_default().tail_sampling;
    Buffer::new(BufferCfg::from_config(&cfg, 512 << 20), policies)
}

/// End to end through the decider to a gRPC downstream with the default 4 MiB limit: a
/// 6 MiB trace arrives whole in several requests, a 5 MiB span is dropped as too large.
#[tokio::test]
async fn the_decider_sends_a_6mib_trace_in_requests_a_4mib_server_accepts() {
    let mut down = grpc_downstream(listen().await, vec![]).await;
    let ex = start("otlp", ExporterCfg::Otlp(otlp_cfg(&down.addr.to_string())));
    let buffer = keep_all();
    let now = tokio::time::Instant::now();
    buffer.ingest(spans_of(&sized_request(7, 2, &[512 << 10; 12])), now);
    buffer.ingest(spans_of(&sized_request(8, 1, &[5 << 20])), now);
    buffer.decide_all(now, false);
    crate::decider::flush(&buffer, &ex, None).await;
    ex.clone().shutdown(Duration::from_secs(5)).await;
    let mut names = HashSet::new();
    while let Ok(got) = down.got.try_recv() {
        assert!(got.request.encoded_len() <= 3 << 20);
        for span in got
            .request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            assert_eq!(span.trace_id, vec![7; 16]);
            assert!(names.insert(span.name.clone()), "{} twice", span.name);
        }
    }
    assert_eq!(names.len(), 12);
    let s = stats(&ex);
    assert_eq!((s.sent_spans, s.failed_spans), (12, 1));
    assert_eq!(ex.dropped_by_reason()[0].1, [("too_large", 1)]);
}

/// With `storage.dir`: a span the downstream refused once isolated is finished with its
/// batch, so a replay after a crash does not send it again (nor the delivered ones).
#[tokio::test]
async fn a_refused_span_is_not_replayed_from_the_write_ahead_log() {
    use crate::config::{Fsync, StorageCfg};
    use crate::storage::Storage;
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageCfg {
        dir: dir.path().to_owned(),
        segment_size: 1 << 20,
        fsync: Fsync::Never,
    };
    let mut req = request("good", 6);
    req.resource_spans[0].scope_spans[0].spans[4].name = "poison-4".into();
    let bytes = req.encode_to_vec();
    {
        let s = Arc::new(Storage::open(&cfg, Duration::from_secs(1)).unwrap());
        let buffer = keep_all();
        buffer.set_decision_log(s.clone());
        s.append(&bytes).unwrap();
        let now = tokio::time::Instant::now();
        buffer.ingest(spans_of(&req), now);
        buffer.decide_all(now, false);
        let down =
            grpc_poison_downstream(Reply::Fail(tonic::Code::InvalidArgument, Bytes::new())).await;
        let ex = start("otlp", ExporterCfg::Otlp(otlp_cfg(&down.addr.to_string())));
        crate::decider::flush(&buffer, &ex, Some(&s)).await;
        ex.clone().shutdown(Duration::from_secs(5)).await;
        assert_eq!(stats(&ex).dropped_spans, 1);
        s.checkpoint(
            tokio::time::Instant::now(),
            ex.peek_next_batch(),
            ex.oldest_unfinished(),
        );
    } // killed before the log was cleared
    let s = Arc::new(Storage::open(&cfg, Duration::from_secs(1)).unwrap());
    let buffer = keep_all();
    let r = s.restore(&buffer);
    assert_eq!((r.spans, r.delivered), (6, 6));
    assert_eq!(buffer.held_traces(), 0, "nothing to send again");
}
