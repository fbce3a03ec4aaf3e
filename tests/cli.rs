//! The `casefile` binary itself: `--version`, `check` on good and bad files, and `run`
//! stopped by SIGTERM, which must decide pending traces, flush the file exporter and exit 0.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod common;

use common::process::Process;

use casefile::fixture::{self, Gen, Shape};
use prost::Message;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_casefile"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn version_is_printed() {
    let out = bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("casefile {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_accepts_the_shipped_examples_and_prints_policies() {
    for f in [
        "config/casefile.yaml",
        "config/sidecar.yaml",
        "config/gateway.yaml",
    ] {
        let out = bin()
            .args(["check", "--config"])
            .arg(root().join(f))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{f}: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(": OK"), "{stdout}");
        assert!(stdout.contains("errors"), "policies are listed: {stdout}");
    }
}

#[test]
fn check_reports_every_problem_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "receivers:\n  otlp:\n    protocols:\n      grpc: { endpoint: 127.0.0.1:4317 }\nprocessors:\n  tail_sampling:\n    decision_wait: soon\n    policies: []\nexporters:\n  otlp: { endpont: x }\n",
    )
    .unwrap();
    let out = bin()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let p = path.display();
    assert!(
        err.contains(&format!("{p}:7: processors.tail_sampling.decision_wait")),
        "{err}"
    );
    assert!(err.contains(&format!("{p}:10: exporters.otlp")), "{err}");
    assert!(err.contains("endpont"), "{err}");
}

/// A Collector config casefile runs as the Collector does but warns about: `check` says so
/// with the line, and lists each policy's effective shape (clamped, defaults filled in).
#[test]
fn check_lists_each_policys_effective_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.yaml");
    let out_file = dir.path().join("kept.jsonl");
    std::fs::write(
        &path,
        format!(
            r#"receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: 127.0.0.1:0 }}
processors:
  tail_sampling:
    policies:
      - {{ name: most, type: probabilistic, probabilistic: {{ sampling_percentage: 150 }} }}
      - {{ name: nothing, type: string_attribute, string_attribute: {{ key: k, values: [] }} }}
      - name: errors-not-health
        type: and
        and:
          and_sub_policy:
            - {{ name: errors, type: status_code, status_code: {{ status_codes: [ERROR] }} }}
            - {{ name: not-health, type: not, not: {{ not_sub_policy: {{ name: health, type: string_attribute, string_attribute: {{ key: http.route, values: [/health] }} }} }} }}
exporters:
  file: {{ path: {} }}
"#,
            out_file.display()
        ),
    )
    .unwrap();
    let stdout = common::check_ok(&path, &[]);
    let p = path.display();
    assert!(
        stdout.contains(&format!("warning: {p}:8: processors.tail_sampling.policies[0].probabilistic.sampling_percentage: 150 is outside 0-100")),
        "{stdout}"
    );
    let policies: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("policies, as casefile runs them"))
        .skip(1)
        .collect();
    assert_eq!(
        policies,
        [
            "  most: probabilistic 100% of trace ids (sampling_percentage 150 clamped, as the Collector does; hash_salt: default \"default-hash-seed\")",
            "  nothing: string_attribute k in [] (exact; no values: never samples)",
            "  errors-not-health: and: all of:",
            "    errors: status_code in [ERROR]",
            "    not-health: not: the opposite of:",
            "      health: string_attribute http.route in [/health] (exact)",
        ],
        "{stdout}"
    );
}

#[test]
fn check_reports_a_missing_file() {
    let out = bin()
        .args(["check", "--config", "/nonexistent/casefile.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot read config file /nonexistent/casefile.yaml"));
}

fn post(addr: &str, body: Vec<u8>) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn write_config(dir: &Path, out: &Path) -> PathBuf {
    let path = dir.join("run.yaml");
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:0" }}
processors:
  tail_sampling:
    decision_wait: 1h
    policies:
      - {{ name: errors, type: status_code, status_code: {{ status_codes: [ERROR] }} }}
exporters:
  file: {{ path: "{}" }}
support:
  api: {{ endpoint: "" }}
shutdown_timeout: 10s
"#,
        out.display()
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn sigterm_decides_pending_traces_flushes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("kept.jsonl");
    let cfg = write_config(dir.path(), &out_file);
    let mut daemon = Process::start(&cfg);
    let addr = daemon.wait_addr("OTLP/HTTP receiver");

    let mut g = Gen::new(21);
    let err = g.trace(Shape::ERROR, 6);
    let ok = g.trace(Shape::default(), 6);
    let body = fixture::request_for(&[err.clone(), ok.clone()]).encode_to_vec();
    assert_eq!(post(&addr, body), 200);

    // The window is an hour: only shutdown can decide these traces.
    let (ok, rest) = daemon.stop();
    assert!(ok, "the daemon did not exit 0; log:\n{}", rest.join("\n"));

    let text = std::fs::read_to_string(&out_file).unwrap();
    let ids: Vec<String> = text
        .lines()
        .flat_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let mut ids = Vec::new();
            for rs in v["resourceSpans"].as_array().unwrap() {
                for ss in rs["scopeSpans"].as_array().unwrap() {
                    for s in ss["spans"].as_array().unwrap() {
                        ids.push(s["traceId"].as_str().unwrap().to_owned());
                    }
                }
            }
            ids
        })
        .collect();
    assert_eq!(
        ids.len(),
        6,
        "every span of the error trace, nothing of the other: {text}"
    );
    assert!(ids.iter().all(|i| *i == hex::encode(err.trace_id)));
}

/// Runs the binary off the async runtime.
async fn run_bin(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        bin()
            .args(&args)
            .env_remove("CASEFILE_API_TOKEN")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_and_complain_clients_talk_to_the_api() {
    let (_down, addr) = common::Downstream::start().await;
    let daemon = common::start(common::config(addr, "1h", "")).await;
    let mut client = common::client(&daemon).await;
    let mut g = Gen::new(22);
    let t = g.trace(Shape::ERROR, 4);
    client
        .export(fixture::request_for(std::slice::from_ref(&t)))
        .await
        .unwrap();
    let api = format!("http://{}", daemon.api_addr.unwrap());
    let id = hex::encode(t.trace_id);

    let out = run_bin(vec![
        "lookup".into(),
        "--api".into(),
        api.clone(),
        format!("user.id={}", t.user_id),
        "--json".into(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["traces"][0]["trace_id"], id.as_str());

    let args = vec![
        "lookup".into(),
        "--api".into(),
        api.clone(),
        format!("user.id={}", t.user_id),
        "--errors".into(),
        "--since".into(),
        "30000h".into(),
    ];
    let out = run_bin(args).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.starts_with("START"), "{table}");
    assert!(table.contains(&id) && table.contains("pending"), "{table}");

    let out = run_bin(vec![
        "lookup".into(),
        "--api".into(),
        api.clone(),
        "http.route=/x".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not indexed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run_bin(vec![
        "complain".into(),
        "--api".into(),
        api.clone(),
        "--ticket".into(),
        "cs_9".into(),
        "--trace".into(),
        id.clone(),
        "--label".into(),
        "slow".into(),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("filed") && text.contains(&format!("{id}  kept")),
        "{text}"
    );

    let out = run_bin(vec![
        "complain".into(),
        "--api".into(),
        api,
        "--ticket".into(),
        "cs_10".into(),
        "--user".into(),
        t.user_id.clone(),
        "--json".into(),
    ])
    .await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["watch_until"].is_string(), "{v}");
    assert_eq!(v["traces"][0]["outcome"], "flagged");
    daemon.shutdown().await;
}

#[test]
fn sighup_and_file_changes_reload_policies_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("kept.jsonl");
    let cfg = write_config(dir.path(), &out_file);
    let mut daemon = Process::start(&cfg);
    let addr = daemon.wait_addr("OTLP/HTTP receiver");

    // SIGHUP with the file unchanged: reloaded, same policies.
    daemon.signal("-HUP");
    let line = daemon.wait_line("a reload", |l| l.contains("config reloaded"));
    assert!(line.contains("SIGHUP") && line.contains("errors"), "{line}");

    // A broken file is refused with its problem; the daemon keeps running.
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        good.replace("decision_wait: 1h", "decision_wait: soon"),
    )
    .unwrap();
    let line = daemon.wait_line("a refused reload", |l| l.contains("reload rejected"));
    assert!(line.contains("decision_wait"), "{line}");

    // A new policy in the file applies without a restart, to traces already held.
    let mut g = Gen::new(23);
    let plain = g.trace(Shape::default(), 4);
    assert_eq!(
        post(
            &addr,
            fixture::request_for(std::slice::from_ref(&plain)).encode_to_vec()
        ),
        200
    );
    std::fs::write(
        &cfg,
        good.replace(
            "{ name: errors, type: status_code, status_code: { status_codes: [ERROR] } }",
            "{ name: everything, type: always_sample }",
        ),
    )
    .unwrap();
    let line = daemon.wait_line("the new policy", |l| l.contains("config reloaded"));
    assert!(
        line.contains("file changed") && line.contains("everything"),
        "{line}"
    );

    let (ok, rest) = daemon.stop();
    assert!(ok, "the daemon did not exit 0; log:\n{}", rest.join("\n"));
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(
        text.contains(&hex::encode(plain.trace_id)),
        "the held trace was kept by the reloaded policy: {text}"
    );
}

#[test]
fn what_if_replays_a_capture_through_two_policy_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = Gen::new(24);
    let errors: Vec<_> = (0..3).map(|_| g.trace(Shape::ERROR, 4)).collect();
    let plain: Vec<_> = (0..5).map(|_| g.trace(Shape::default(), 2)).collect();
    // What the file exporter writes: one OTLP/JSON request per line.
    let capture = dir.path().join("capture.jsonl");
    let lines: Vec<String> = errors
        .iter()
        .chain(&plain)
        .map(|t| {
            let proto = fixture::request_for(std::slice::from_ref(t)).encode_to_vec();
            casefile::wire::json::request_to_json(&proto).unwrap()
        })
        .collect();
    std::fs::write(&capture, lines.join("\n")).unwrap();
    let policy_file = |name: &str, policies: &str| {
        let p = dir.path().join(name);
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

    let out = bin()
        .args(["what-if", "--json", "--config"])
        .arg(&errors_only)
        .arg("--against")
        .arg(&everything)
        .arg(&capture)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"]["traces"], 8, "{v}");
    assert_eq!(v["outcome"]["kept_traces"], 3, "{v}");
    assert_eq!(v["outcome"]["kept_spans"], 12, "{v}");
    assert_eq!(
        v["outcome"]["estimated_traces"], 3.0,
        "kept by errors: each stands for itself"
    );
    assert_eq!(
        v["outcome"]["by_policy"],
        serde_json::json!([["errors", 3]])
    );
    assert_eq!(v["against"]["kept_traces"], 8, "{v}");
    let changed: Vec<&str> = v["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["trace_id"].as_str().unwrap())
        .collect();
    let mut want: Vec<String> = plain.iter().map(|t| hex::encode(t.trace_id)).collect();
    want.sort();
    let mut changed: Vec<String> = changed.into_iter().map(str::to_owned).collect();
    changed.sort();
    assert_eq!(changed, want, "the plain traces change decision");

    // The table, for people.
    let out = bin()
        .args(["what-if", "--config"])
        .arg(&errors_only)
        .arg(&capture)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("keeps 3 of 8 traces (37.5 %)"), "{text}");
    assert!(
        text.contains("adjusted counts: 3 traces, 12 spans (captured: 8, 22)"),
        "{text}"
    );

    // A bad capture: every problem with its file and line, exit 2.
    std::fs::write(&capture, format!("{}\nnot json\n", lines[0])).unwrap();
    let out = bin()
        .args(["what-if", "--config"])
        .arg(&errors_only)
        .arg(&capture)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2: ", capture.display())), "{err}");
}
