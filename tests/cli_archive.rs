//! The archive through the `casefile` binary: `archive stats` and `archive export` read an
//! archive offline (never writing to it), `what-if --archive --since` replays its traffic
//! through two policy files, and `show` prints a trace's case file served from the archive
//! by a running daemon; `lookup` takes `--start`/`--end` in every form the API takes and
//! names the zone it prints.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use casefile::archive::{Archive, ArchiveCfg, Traces};
use casefile::fixture::{self, kv, Gen, Shape, Trace};
use casefile::wire::decode::decode_request;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{span::Event, Span};
use prost::Message;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_casefile"));
    c.env_remove("CASEFILE_API_TOKEN").env("TZ", "UTC");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A generator whose traces start `ago` before now.
fn gen(seed: u64, ago: Duration) -> Gen {
    let mut g = Gen::new(seed);
    g.now_ns = now_ns() - ago.as_nanos() as u64;
    g
}

fn archive_cfg(dir: &Path) -> ArchiveCfg {
    ArchiveCfg {
        dir: dir.to_owned(),
        retention: Duration::from_secs(72 * 3600),
        max_bytes: 64 << 20,
        traces: Traces::All,
        attributes: vec!["user.id".into(), "session.id".into()],
        hash_key: None,
    }
}

fn spans_of(t: &Trace) -> Vec<casefile::model::Span> {
    decode_request(&fixture::request_for(std::slice::from_ref(t)).encode_to_vec())
        .unwrap()
        .spans
}

/// The fixture's spans of a trace, by span id.
fn protos(t: &Trace) -> BTreeMap<Vec<u8>, Span> {
    t.spans
        .iter()
        .map(|(_, s)| (s.span_id.clone(), s.clone()))
        .collect()
}

/// Spans of a request, by span id, with the service of each.
/// `casefile archive export --dir dir --trace id`.
fn export(dir: &Path, id: &str) -> std::process::Output {
    run(&[
        "archive",
        "export",
        "--dir",
        dir.to_str().unwrap(),
        "--trace",
        id,
    ])
}

/// The spans of an `archive export` document, by span id, with their services.
fn exported_spans(out: &std::process::Output) -> BTreeMap<Vec<u8>, (String, Span)> {
    assert!(out.status.success(), "{}", text(&out.stderr));
    let proto = casefile::wire::json::request_from_json(&out.stdout).unwrap();
    request_spans(&ExportTraceServiceRequest::decode(proto.as_slice()).unwrap())
}

fn request_spans(req: &ExportTraceServiceRequest) -> BTreeMap<Vec<u8>, (String, Span)> {
    let mut out = BTreeMap::new();
    for rs in &req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
            .and_then(|a| a.value.as_ref())
            .and_then(|v| match v.value.as_ref()? {
                opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s) => {
                    Some(s.clone())
                }
                _ => None,
            })
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                out.insert(s.span_id.clone(), (service.clone(), s.clone()));
            }
        }
    }
    out
}

/// Every file of `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let m = std::fs::metadata(&p).unwrap().modified().unwrap();
            (p.clone(), (std::fs::read(&p).unwrap(), m))
        })
        .collect()
}

/// An archive of 3 kept error traces and 5 dropped plain ones from the last hour, and one
/// dropped trace from 30 hours ago.
struct Made {
    errors: Vec<Trace>,
    plain: Vec<Trace>,
    old: Trace,
}

fn make_archive(dir: &Path) -> Made {
    let mut old_gen = gen(91, Duration::from_secs(30 * 3600));
    let old = old_gen.trace(Shape::default(), 3);
    let mut g = gen(92, Duration::from_secs(3600));
    let errors: Vec<Trace> = (0..3).map(|_| g.trace(Shape::ERROR, 4)).collect();
    let plain: Vec<Trace> = (0..5).map(|_| g.trace(Shape::default(), 2)).collect();
    let a = Archive::open(archive_cfg(dir)).unwrap();
    a.record_dropped(vec![(old.trace_id, spans_of(&old))]);
    for t in &errors {
        a.record_kept(spans_of(t));
    }
    a.record_dropped(plain.iter().map(|t| (t.trace_id, spans_of(t))).collect());
    a.close();
    Made { errors, plain, old }
}

#[test]
fn archive_stats_and_export_read_an_archive_offline_and_never_write_to_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("archive");
    let made = make_archive(&dir);
    let before = snapshot(&dir);

    let out = run(&["archive", "stats", "--json", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["traces"], 9, "{v}");
    assert!(v["segments"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["bytes"].as_u64().unwrap() > 0, "{v}");
    let oldest = casefile::support::index::rfc3339(made.old.spans[0].1.start_time_unix_nano);
    assert_eq!(v["oldest_trace_start"], oldest.as_str(), "{v}");
    let last = made.plain.last().unwrap().spans[0].1.start_time_unix_nano;
    assert_eq!(
        v["newest_trace_start"],
        casefile::support::index::rfc3339(last).as_str(),
        "{v}"
    );

    let out = run(&["archive", "stats", "--dir", dir.to_str().unwrap()]);
    let t = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        t.contains("segments:") && t.contains("trace records:   9"),
        "{t}"
    );
    assert!(
        t.contains(&format!("oldest start:    {oldest} (UTC)")),
        "{t}"
    );

    // Export: one OTLP/JSON document whose spans are the trace's, with their services.
    let target = &made.errors[1];
    let id = hex::encode(target.trace_id);
    let out = export(&dir, &id);
    let got = exported_spans(&out);
    let want = protos(target);
    assert_eq!(
        got.values().map(|(_, s)| s.clone()).collect::<Vec<_>>(),
        want.values().cloned().collect::<Vec<_>>()
    );
    for (svc, s) in target.spans.iter() {
        assert_eq!(got[&s.span_id].0, *svc, "the span's resource is kept");
    }

    // Unknown id: exit 1 and a message; a bad id: exit 2; no directory: exit 1.
    let unknown = "0123456789abcdef0123456789abcdef";
    let out = export(&dir, unknown);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("not in the archive"),
        "{}",
        text(&out.stderr)
    );
    let out = export(&dir, "xyz");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid trace id"),
        "{}",
        text(&out.stderr)
    );
    let missing = tmp.path().join("nope");
    for args in [
        vec!["archive", "stats", "--dir", missing.to_str().unwrap()],
        vec![
            "archive",
            "export",
            "--dir",
            missing.to_str().unwrap(),
            "--trace",
            &id,
        ],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("archive directory") && err.contains("nope"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // A file is not an archive directory.
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let out = run(&["archive", "stats", "--dir", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not a directory"),
        "{}",
        text(&out.stderr)
    );

    // A directory that holds no archive.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = run(&["archive", "stats", "--dir", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("holds no archive"),
        "{}",
        text(&out.stderr)
    );

    assert_eq!(
        snapshot(&dir),
        before,
        "the archive directory is left as it was"
    );
}

#[test]
fn the_segment_a_running_daemon_is_writing_is_read_without_being_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("archive");
    let mut g = gen(94, Duration::from_secs(60));
    let traces: Vec<Trace> = (0..4).map(|_| g.trace(Shape::default(), 3)).collect();
    let a = Archive::open(archive_cfg(&dir)).unwrap();
    a.record_dropped(traces.iter().map(|t| (t.trace_id, spans_of(t))).collect());
    // Written, not sealed: the data file has no index yet.
    a.flush();
    let before = snapshot(&dir);
    assert!(
        !before
            .keys()
            .any(|p| p.to_string_lossy().ends_with(".index")),
        "{before:?}"
    );
    let out = run(&["archive", "stats", "--json", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["traces"], 4, "{v}");
    let id = hex::encode(traces[2].trace_id);
    let out = export(&dir, &id);
    let got = exported_spans(&out);
    assert_eq!(
        got.into_values().map(|(_, s)| s).collect::<Vec<_>>(),
        protos(&traces[2]).into_values().collect::<Vec<_>>()
    );
    assert_eq!(snapshot(&dir), before, "the live segment is left as it was");
    a.close();
}

#[test]
fn kept_traces_of_a_dropped_only_archive_have_no_spans_to_export_or_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("archive");
    let mut g = gen(95, Duration::from_secs(60));
    let kept = g.trace(Shape::ERROR, 3);
    let dropped = g.trace(Shape::default(), 2);
    let a = Archive::open(ArchiveCfg {
        traces: Traces::Dropped,
        ..archive_cfg(&dir)
    })
    .unwrap();
    a.record_kept(spans_of(&kept));
    a.record_dropped(vec![(dropped.trace_id, spans_of(&dropped))]);
    a.close();
    let id = hex::encode(kept.trace_id);
    let out = export(&dir, &id);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("archived without its spans"),
        "{}",
        text(&out.stderr)
    );
    let policies = tmp.path().join("all.yaml");
    std::fs::write(
        &policies,
        "processors:\n  tail_sampling:\n    policies:\n      - { name: all, type: always_sample }\n",
    )
    .unwrap();
    let out = bin()
        .args(["what-if", "--json", "--archive"])
        .arg(&dir)
        .arg("--config")
        .arg(&policies)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"]["traces"], 1, "{v}");
    assert_eq!(v["archived_without_spans"], 1, "{v}");
}

#[test]
fn what_if_replays_the_archived_traffic_through_two_policy_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("archive");
    let made = make_archive(&dir);
    let policy_file = |name: &str, policies: &str| {
        let p = tmp.path().join(name);
        std::fs::write(
            &p,
            format!("processors:\n  tail_sampling:\n    policies:\n      {policies}\n"),
        )
        .unwrap();
        p
    };
    let errors_only = policy_file(
        "errors.yaml",
        "- { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }",
    );
    let everything = policy_file("all.yaml", "- { name: all, type: always_sample }");
    let before = snapshot(&dir);

    let out = bin()
        .args(["what-if", "--json", "--archive"])
        .arg(&dir)
        .args(["--since", "24h", "--config"])
        .arg(&errors_only)
        .arg("--against")
        .arg(&everything)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The 30-hour-old trace is outside --since 24h; kept and dropped traces are replayed.
    assert_eq!(v["outcome"]["traces"], 8, "{v}");
    assert_eq!(v["outcome"]["spans"], 3 * 4 + 5 * 2, "{v}");
    assert_eq!(v["outcome"]["kept_traces"], 3, "{v}");
    assert_eq!(v["against"]["kept_traces"], 8, "{v}");
    let mut changed: Vec<String> = v["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["trace_id"].as_str().unwrap().to_owned())
        .collect();
    changed.sort();
    let mut want: Vec<String> = made.plain.iter().map(|t| hex::encode(t.trace_id)).collect();
    want.sort();
    assert_eq!(changed, want, "the dropped plain traces change decision");

    // Without --since, the whole archive; the table for people.
    let out = bin()
        .args(["what-if", "--archive"])
        .arg(&dir)
        .arg("--config")
        .arg(&errors_only)
        .arg("--against")
        .arg(&everything)
        .output()
        .unwrap();
    let t = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(t.contains("keeps 3 of 9 traces"), "{t}");
    assert!(t.contains("6 trace(s) decided differently"), "{t}");
    assert!(t.contains(&hex::encode(made.old.trace_id)), "{t}");

    // Clear errors: a missing archive, a bad duration.
    let out = bin()
        .args(["what-if", "--archive"])
        .arg(tmp.path().join("nope"))
        .arg("--config")
        .arg(&errors_only)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("archive directory"),
        "{}",
        text(&out.stderr)
    );
    let out = bin()
        .args(["what-if", "--archive"])
        .arg(&dir)
        .args(["--since", "yesterday", "--config"])
        .arg(&errors_only)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--since"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        snapshot(&dir),
        before,
        "what-if never writes to the archive"
    );
}

/// Runs the binary off the async runtime.
async fn run_bin(args: Vec<String>, tz: &str) -> Output {
    let tz = tz.to_owned();
    tokio::task::spawn_blocking(move || bin().env("TZ", tz).args(&args).output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_prints_the_case_file_of_an_archived_trace_and_lookup_takes_any_time_form() {
    let tmp = tempfile::tempdir().unwrap();
    let (_down, down_addr) = common::Downstream::start().await;
    let mut cfg = common::config(down_addr, "100ms", "");
    cfg.support.index.max_traces = 50;
    cfg.support.complaints.rescue_window = Duration::ZERO;
    let mut acfg = archive_cfg(&tmp.path().join("archive"));
    acfg.attributes = cfg.support.index.attributes.clone();
    cfg.support.archive = Some(acfg);
    let daemon = common::start(cfg).await;
    let mut client = common::client(&daemon).await;

    let mut g = gen(93, Duration::ZERO);
    let mut target = g.trace(Shape::ERROR, 5);
    target.set_user("usr_show");
    target.spans[0]
        .1
        .attributes
        .push(kv("session.id", "sess_show"));
    let last = target.spans.len() - 1;
    let at = target.spans[last].1.start_time_unix_nano;
    target.spans[last].1.events.push(Event {
        time_unix_nano: at,
        name: "exception".into(),
        attributes: vec![
            kv("exception.type", "CardError"),
            kv("exception.message", "insufficient funds"),
        ],
        dropped_attributes_count: 0,
    });
    client
        .export(fixture::request_for(std::slice::from_ref(&target)))
        .await
        .unwrap();
    // 60 more traces push it out of the 50-trace index: its summary and spans come from
    // the archive.
    let others: Vec<Trace> = (0..60).map(|_| g.trace(Shape::default(), 2)).collect();
    for chunk in others.chunks(20) {
        client.export(fixture::request_for(chunk)).await.unwrap();
    }
    let api_addr = daemon.api_addr.unwrap();
    let id = hex::encode(target.trace_id);
    let path = format!("/api/v1/traces/{id}");
    let mut api_json = serde_json::Value::Null;
    for _ in 0..400 {
        let (code, v) = common::api_get(api_addr, &path, None).await;
        if code == 200 && v["held"] == "archive" {
            api_json = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(api_json["held"], "archive", "never served from the archive");
    let api = format!("http://{api_addr}");

    let out = run_bin(
        vec!["show".into(), id.clone(), "--api".into(), api.clone()],
        "UTC",
    )
    .await;
    let t = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(t.starts_with(&format!("trace {id}")), "{t}");
    assert!(t.contains("held:      archive"), "{t}");
    assert!(t.contains("decision:  kept"), "{t}");
    assert!(t.contains("reasons:   errors"), "{t}");
    assert!(t.contains("(UTC)"), "{t}");
    assert!(t.contains("spans:     5"), "{t}");
    for (svc, s) in &target.spans {
        assert!(
            t.lines()
                .any(|l| l.contains(&format!("{svc}  {}  ", s.name))),
            "span {svc} {} is in the tree: {t}",
            s.name
        );
    }
    let err_line = t
        .lines()
        .find(|l| l.contains("ERROR: payment declined") && l.contains("ms"))
        .unwrap_or_else(|| panic!("the error span is marked: {t}"));
    assert!(err_line.starts_with("✗ "), "{t}");
    assert!(
        t.contains("exception: CardError: insufficient funds"),
        "the exception event is under its span: {t}"
    );
    assert!(t.contains("user.id = usr_show"), "{t}");
    assert!(t.contains("session.id = sess_show"), "{t}");

    // --json: the API's answer, whose spans parse back to the ones sent.
    let out = run_bin(
        vec![
            "show".into(),
            id.clone(),
            "--api".into(),
            api.clone(),
            "--json".into(),
        ],
        "UTC",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, api_json);
    let doc = serde_json::json!({ "resourceSpans": v["resource_spans"] }).to_string();
    let proto = casefile::wire::json::request_from_json(doc.as_bytes()).unwrap();
    let got = request_spans(&ExportTraceServiceRequest::decode(proto.as_slice()).unwrap());
    // Kept spans are archived as exported: the root names the policy that kept it.
    let mut got: Vec<Span> = got.into_values().map(|(_, s)| s).collect();
    let root = got
        .iter_mut()
        .find(|s| s.parent_span_id.is_empty())
        .unwrap();
    assert_eq!(root.attributes.pop(), Some(kv("casefile.policy", "errors")));
    assert_eq!(got, protos(&target).into_values().collect::<Vec<_>>());

    // Not found: a clear message, exit 1; a bad id: exit 2.
    let out = run_bin(
        vec![
            "show".into(),
            "0123456789abcdef0123456789abcdef".into(),
            "--api".into(),
            api.clone(),
        ],
        "UTC",
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );
    let out = run_bin(
        vec!["show".into(), "nothex".into(), "--api".into(), api.clone()],
        "UTC",
    )
    .await;
    assert_eq!(out.status.code(), Some(2));

    // Lookup finds the archived trace; --start/--end in RFC 3339 with an offset, epoch
    // seconds and milliseconds; the table names its zone, UTC or local with --local.
    let start = target.spans[0].1.start_time_unix_nano;
    let hour_ago_ms = (start / 1_000_000 - 3_600_000).to_string();
    let in_an_hour_s = (start / 1_000_000_000 + 3600).to_string();
    let secs = start / 1_000_000_000 - 60;
    let plus_one = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs + 3600))
        .to_string()
        .replace('Z', "+01:00");
    for (s, e) in [
        (hour_ago_ms.as_str(), in_an_hour_s.as_str()),
        (plus_one.as_str(), in_an_hour_s.as_str()),
    ] {
        let out = run_bin(
            vec![
                "lookup".into(),
                "user.id=usr_show".into(),
                "--api".into(),
                api.clone(),
                "--start".into(),
                s.into(),
                "--end".into(),
                e.into(),
            ],
            "UTC",
        )
        .await;
        let t = text(&out.stdout);
        assert!(out.status.success(), "{s} {e}: {}", text(&out.stderr));
        assert!(t.starts_with("START (UTC)"), "{t}");
        assert!(t.contains(&id), "{s}..{e}: {t}");
        assert!(t.contains(&casefile::support::index::rfc3339(start)), "{t}");
    }
    // A range after the trace: not listed.
    let later = (start / 1_000_000_000 + 60).to_string();
    let out = run_bin(
        vec![
            "lookup".into(),
            "user.id=usr_show".into(),
            "--api".into(),
            api.clone(),
            "--start".into(),
            later,
        ],
        "UTC",
    )
    .await;
    assert!(out.status.success());
    assert!(!text(&out.stdout).contains(&id), "{}", text(&out.stdout));
    // --local in a +05:30 zone.
    let out = run_bin(
        vec![
            "lookup".into(),
            "user.id=usr_show".into(),
            "--api".into(),
            api.clone(),
            "--local".into(),
        ],
        "<+0530>-5:30",
    )
    .await;
    let t = text(&out.stdout);
    assert!(t.starts_with("START (local)"), "{t}");
    let row = t
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("{t}"));
    let local_start =
        casefile::support::index::rfc3339(start + 19_800 * 1_000_000_000).replace('Z', "+05:30");
    assert!(row.starts_with(&local_start), "{row}");
    // show --local too.
    let out = run_bin(
        vec![
            "show".into(),
            id.clone(),
            "--api".into(),
            api.clone(),
            "--local".into(),
        ],
        "<+0530>-5:30",
    )
    .await;
    let t = text(&out.stdout);
    assert!(
        t.contains(&format!("{local_start} (local time, UTC+05:30)")),
        "{t}"
    );
    // A bad instant is the API's clear refusal.
    let out = run_bin(
        vec![
            "lookup".into(),
            "user.id=usr_show".into(),
            "--api".into(),
            api,
            "--start".into(),
            "tuesday".into(),
        ],
        "UTC",
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("RFC 3339"),
        "{}",
        text(&out.stderr)
    );
    daemon.shutdown().await;
}

/// Kept traces are archived as exported, with what the decision wrote on them
/// (`casefile.policy` on the root); what-if replays them as received, without it.
#[test]
fn what_if_replays_archived_kept_traces_without_what_the_decision_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("archive");
    let mut g = gen(93, Duration::from_secs(600));
    let mut kept = g.trace(Shape::ERROR, 3);
    kept.spans[0]
        .1
        .attributes
        .push(kv("casefile.policy", "errors"));
    let a = Archive::open(archive_cfg(&dir)).unwrap();
    a.record_kept(spans_of(&kept));
    a.close();
    let policies = |name: &str, policy: &str| {
        let p = tmp.path().join(name);
        let text = format!("processors:\n  tail_sampling:\n    policies:\n      - {policy}\n");
        std::fs::write(&p, text).unwrap();
        p
    };
    let by_stamp = policies(
        "stamp.yaml",
        "{ name: stamp, type: string_attribute, string_attribute: { key: casefile.policy, values: [errors] } }",
    );
    let errors = policies(
        "errors.yaml",
        "{ name: errors, type: status_code, status_code: { status_codes: [ERROR] } }",
    );
    let out = bin()
        .args(["what-if", "--json", "--archive"])
        .arg(&dir)
        .arg("--config")
        .arg(&by_stamp)
        .arg("--against")
        .arg(&errors)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"]["traces"], 1, "{v}");
    assert_eq!(
        v["outcome"]["kept_traces"], 0,
        "no casefile.policy as received: {v}"
    );
    assert_eq!(v["against"]["kept_traces"], 1, "{v}");
}
