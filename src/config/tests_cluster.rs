//! `cluster:` in the loader: a static member list loads; every mistake in it is a problem
//! with its line and path, all at once.

use super::tests::{env, problems, MINIMAL};
use super::*;

#[test]
fn a_static_member_list_loads() {
    let text = format!(
        "{MINIMAL}cluster:\n  self: 10.0.0.2:4317\n  peers:\n    - {{ otlp: 10.0.0.1:4317, api: 10.0.0.1:8990 }}\n    - {{ otlp: 10.0.0.2:4317 }}\n"
    );
    let c = load_with_env(&text, "t.yaml", &env()).unwrap();
    let summary = c.summary();
    assert!(
        summary
            .iter()
            .any(|l| l.starts_with("cluster: member 10.0.0.2:4317 of 2")),
        "{summary:?}"
    );
    assert!(
        c.warnings
            .iter()
            .any(|w| w.problem.path == "cluster.peers[1].api"),
        "{:?}",
        c.warnings
    );
    let cluster = c.cluster.expect("cluster");
    assert_eq!(cluster.me, "10.0.0.2:4317");
    assert_eq!(cluster.peers.len(), 2);
    assert_eq!(cluster.peers[0].api.as_deref(), Some("10.0.0.1:8990"));
    assert!(load_with_env(MINIMAL, "t.yaml", &env())
        .unwrap()
        .cluster
        .is_none());
}

#[test]
fn every_cluster_mistake_is_reported_at_once() {
    let text = format!(
        "{MINIMAL}cluster:\n  self: 10.0.0.9:4317\n  dns: {{ name: casefile }}\n  peers:\n    - {{ otlp: 10.0.0.1:4317 }}\n    - {{ otlp: 10.0.0.1:4317 }}\n    - {{ otlp: nohost, api: \"10.0.0.3:x\" }}\n"
    );
    let got: Vec<(String, String)> = problems(&text)
        .into_iter()
        .map(|l| (l.problem.path, l.problem.message))
        .collect();
    let has = |path: &str, words: &str| got.iter().any(|(p, m)| p == path && m.contains(words));
    assert!(has("cluster.dns", "not built yet"), "{got:?}");
    assert!(has("cluster.peers[1].otlp", "listed twice"), "{got:?}");
    assert!(
        has("cluster.peers[2].otlp", "expected host:port"),
        "{got:?}"
    );
    assert!(has("cluster.peers[2].api", "expected host:port"), "{got:?}");
    assert!(has("cluster.self", "not one of the peers"), "{got:?}");
    // Lines are known.
    assert!(problems(&text).iter().all(|l| l.line.is_some()));
    // No self, no peers; and the write-ahead log beside a cluster.
    let text = format!("{MINIMAL}cluster: {{ peers: [] }}\n");
    let got: Vec<String> = problems(&text)
        .into_iter()
        .map(|l| l.problem.path)
        .collect();
    assert!(
        got.contains(&"cluster.self".to_owned()) && got.contains(&"cluster.peers".to_owned()),
        "{got:?}"
    );
    let text = format!(
        "{MINIMAL}storage: {{ dir: /tmp/x }}\ncluster: {{ self: \"a:1\", peers: [{{ otlp: \"a:1\" }}] }}\n"
    );
    assert!(problems(&text)
        .iter()
        .any(|l| l.problem.path == "cluster" && l.problem.message.contains("storage")));
}

#[test]
fn cluster_tls_is_checked_as_an_exporters_client_tls() {
    let ok = format!(
        "{MINIMAL}cluster:\n  self: a:1\n  peers: [{{ otlp: a:1 }}]\n  tls: {{ insecure_skip_verify: true, server_name_override: casefile.test }}\n"
    );
    let c = load_with_env(&ok, "t.yaml", &env())
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(
        c.tls.and_then(|t| t.server_name_override).as_deref(),
        Some("casefile.test")
    );
    let bad = format!(
        "{MINIMAL}cluster:\n  self: a:1\n  peers: [{{ otlp: a:1 }}]\n  tls: {{ insecure: true, ca_file: /nonexistent/ca.pem }}\n"
    );
    let got: Vec<(String, String)> = problems(&bad)
        .into_iter()
        .map(|l| (l.problem.path, l.problem.message))
        .collect();
    assert!(
        got.iter().any(|(p, _)| p == "cluster.tls.insecure"),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|(p, m)| p.starts_with("cluster.tls") && m.contains("/nonexistent/ca.pem")),
        "{got:?}"
    );
}
