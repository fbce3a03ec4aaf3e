//! `file` exporter: OTLP JSON lines.

use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::export::config::{ExporterCfg, FileCfg};
use crate::wire::json::request_from_json;

fn file_cfg(path: &std::path::Path, flush_every_line: bool) -> ExporterCfg {
    ExporterCfg::File(FileCfg {
        path: path.to_str().unwrap().into(),
        flush_every_line,
    })
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn writes_one_json_line_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/kept.jsonl");
    let ex = start("file", file_cfg(&path, true));
    let (a, b) = (request("first", 2), request("second", 1));
    ex.send(batch_of(&a)).await;
    ex.send(batch_of(&b)).await;
    // Flushed line by line: readable before shutdown.
    eventually("two lines", || lines(&path).len() == 2).await;
    assert_eq!(ex.clone().shutdown(Duration::from_secs(5)).await, 0);
    let lines = lines(&path);
    assert_eq!(lines.len(), 2);
    for (line, want) in lines.iter().zip([&a, &b]) {
        let json: Value = serde_json::from_str(line).expect("each line is one JSON document");
        let span = &json["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["name"], Value::from(first_name(want)));
        assert_eq!(span["traceId"], Value::from("ab".repeat(16)));
        assert_eq!(span["spanId"], Value::from("0101010101010101"));
        assert_eq!(
            span["startTimeUnixNano"],
            Value::from("1700000000000000000")
        );
        assert_eq!(span["kind"], Value::from(2));
        let service = &json["resourceSpans"][0]["resource"]["attributes"][0];
        assert_eq!(service["key"], Value::from("service.name"));
        assert_eq!(service["value"]["stringValue"], Value::from("shop"));
        // ... and it reads back as the same request.
        let back =
            ExportTraceServiceRequest::decode(&request_from_json(line.as_bytes()).unwrap()[..])
                .unwrap();
        assert_eq!(&back, want);
    }
    assert_eq!(
        stats(&ex),
        ExporterStats {
            sent_spans: 3,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn appends_and_flushes_at_shutdown_without_flush_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kept.jsonl");
    std::fs::write(&path, "{\"resourceSpans\":[]}\n").unwrap();
    let ex = start("file/buffered", file_cfg(&path, false));
    for i in 0..5 {
        ex.send(batch_of(&request(&format!("b{i}"), 1))).await;
    }
    assert_eq!(ex.shutdown(Duration::from_secs(5)).await, 0);
    let lines = lines(&path);
    assert_eq!(lines.len(), 6, "appended after the existing line");
    assert_eq!(lines[0], "{\"resourceSpans\":[]}");
    for (i, line) in lines[1..].iter().enumerate() {
        let json: Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"],
            Value::from(format!("b{i}-0"))
        );
    }
}

#[tokio::test]
async fn an_unrenderable_request_is_counted_failed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kept.jsonl");
    let ex = start("file", file_cfg(&path, true));
    let junk = std::sync::Arc::new(ExportBatch {
        request: Bytes::from_static(&[0x0a, 0x05, 0x01]),
        spans: 3,
        traces: 1,
        seq: 0,
    });
    ex.send(junk).await;
    ex.send(batch_of(&request("fine", 1))).await;
    ex.clone().shutdown(Duration::from_secs(5)).await;
    assert_eq!(lines(&path).len(), 1);
    assert_eq!(
        stats(&ex),
        ExporterStats {
            sent_spans: 1,
            failed_spans: 3,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn an_unopenable_file_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = file_cfg(dir.path(), true); // a directory
    let e = Exporters::start(&[("file".into(), cfg)])
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with("exporter file: cannot open"), "{e}");
}

#[tokio::test]
async fn fans_out_to_every_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kept.jsonl");
    let mut down = http_downstream(listen().await, vec![]).await;
    let cfgs = vec![
        ("file".to_owned(), file_cfg(&path, true)),
        (
            "otlphttp".to_owned(),
            ExporterCfg::OtlpHttp(otlp_cfg(&format!("http://{}", down.addr))),
        ),
    ];
    let ex = Exporters::start(&cfgs).unwrap();
    assert_eq!(ex.names(), vec!["file".to_owned(), "otlphttp".to_owned()]);
    let req = request("both", 2);
    ex.send(batch_of(&req)).await;
    assert_eq!(down.next().await.request, req);
    assert_eq!(ex.clone().shutdown(Duration::from_secs(5)).await, 0);
    assert_eq!(lines(&path).len(), 1);
    for (_, s) in ex.stats() {
        assert_eq!(s.sent_spans, 2);
    }
}
