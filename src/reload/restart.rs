//! Part of `reload`: the settings a reload cannot apply to a running daemon (new
//! listeners, new connections, a new store or log, a buffer laid out anew), each named by
//! its exact key, so the log says precisely what waits for a restart.

use crate::config::{Config, ServerTlsCfg};

/// The restart-only keys whose values differ between the running config and `new`.
pub(super) fn needs_restart(running: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |key: &str, differs: bool| {
        if differs {
            out.push(key.to_owned());
        }
    };
    receivers(running, new, &mut check);
    let debug = |a: &dyn std::fmt::Debug| format!("{a:?}");
    // Exporters keep their connections and queues; only their certificate files are read
    // again (see `tls::live`).
    check(
        "exporters",
        debug(&running.exporters) != debug(&new.exporters),
    );

    let (a, b) = (&running.tail_sampling, &new.tail_sampling);
    let ts = "processors.tail_sampling";
    check(
        &format!("{ts}.decision_wait"),
        a.decision_wait != b.decision_wait,
    );
    check(
        &format!("{ts}.decision_wait_after_root_received"),
        a.decision_wait_after_root_received != b.decision_wait_after_root_received,
    );
    check(&format!("{ts}.num_traces"), a.num_traces != b.num_traces);
    check(
        &format!("{ts}.max_buffer_bytes"),
        a.max_buffer_bytes != b.max_buffer_bytes,
    );
    check(&format!("{ts}.num_shards"), a.num_shards != b.num_shards);
    check(
        &format!("{ts}.decision_cache.sampled_cache_size"),
        a.sampled_cache_size != b.sampled_cache_size,
    );
    check(
        &format!("{ts}.decision_cache.non_sampled_cache_size"),
        a.non_sampled_cache_size != b.non_sampled_cache_size,
    );
    check(
        &format!("{ts}.maximum_trace_size_bytes"),
        a.maximum_trace_size_bytes != b.maximum_trace_size_bytes,
    );
    check(
        &format!("{ts}.drop_pending_traces_on_shutdown"),
        a.drop_pending_traces_on_shutdown != b.drop_pending_traces_on_shutdown,
    );

    check(
        "processors.memory_limiter",
        running.memory_limiter != new.memory_limiter,
    );

    let (a, b) = (&running.support, &new.support);
    check("support.api.endpoint", a.api.endpoint != b.api.endpoint);
    // Certificate paths of the API apply live; serving TLS or not takes a restart.
    check(
        "support.api.tls",
        a.api.tls.is_some() != b.api.tls.is_some(),
    );
    // A new list applies live; turning the index on or off does not.
    check(
        "support.index.attributes",
        a.index.attributes.is_empty() != b.index.attributes.is_empty(),
    );
    check(
        "support.index.hash_values",
        a.index.hash_values != b.index.hash_values,
    );
    check(
        "support.index.hash_key",
        a.index.hash_key != b.index.hash_key,
    );
    check(
        "support.complaints.store",
        a.complaints.store != b.complaints.store,
    );
    // Retention and max_bytes apply live; where the archive is and what it keeps do not.
    let (x, y) = (a.archive.as_ref(), b.archive.as_ref());
    check(
        "support.archive.dir",
        x.map(|c| &c.dir) != y.map(|c| &c.dir),
    );
    check(
        "support.archive.traces",
        x.map(|c| c.traces) != y.map(|c| c.traces),
    );
    // A new window or bound applies live; turning the rescue buffer on or off does not.
    let rescue_on =
        |c: &crate::config::ComplaintsCfg| !c.rescue_window.is_zero() && c.rescue_max_bytes > 0;
    check(
        "support.complaints.rescue_window",
        rescue_on(&a.complaints) != rescue_on(&b.complaints),
    );

    check("storage", debug(&running.storage) != debug(&new.storage));
    // Members, their owners and forwarders are set at start (membership changes need the
    // hand-off, not built yet).
    check("cluster", running.cluster != new.cluster);
    check("logging.level", running.logging.level != new.logging.level);
    check(
        "logging.format",
        running.logging.format != new.logging.format,
    );
    check(
        "shutdown_timeout",
        running.shutdown_grace != new.shutdown_grace,
    );
    out
}

/// The receivers' keys: the span checks, a protocol turned on or off, its endpoint, its
/// size bound, and whether it serves TLS (its certificate paths apply live).
fn receivers(running: &Config, new: &Config, check: &mut impl FnMut(&str, bool)) {
    let tls_on = |t: &Option<ServerTlsCfg>| t.is_some();
    let p = "receivers.otlp.protocols";
    let (a, b) = (&running.receivers, &new.receivers);
    let (ca, cb) = (&a.checks, &b.checks);
    check(
        "receivers.otlp.invalid_utf8",
        ca.invalid_utf8 != cb.invalid_utf8,
    );
    check(
        "receivers.otlp.max_span_bytes",
        ca.max_span_bytes != cb.max_span_bytes,
    );
    match (&a.grpc, &b.grpc) {
        (Some(a), Some(b)) => {
            check(&format!("{p}.grpc.endpoint"), a.endpoint != b.endpoint);
            check(
                &format!("{p}.grpc.max_recv_msg_size_mib"),
                a.max_recv_msg_size != b.max_recv_msg_size,
            );
            check(&format!("{p}.grpc.tls"), tls_on(&a.tls) != tls_on(&b.tls));
        }
        (a, b) => check(&format!("{p}.grpc"), a.is_some() != b.is_some()),
    }
    match (&a.http, &b.http) {
        (Some(a), Some(b)) => {
            check(&format!("{p}.http.endpoint"), a.endpoint != b.endpoint);
            check(
                &format!("{p}.http.max_request_body_size"),
                a.max_request_body_size != b.max_request_body_size,
            );
            check(&format!("{p}.http.tls"), tls_on(&a.tls) != tls_on(&b.tls));
        }
        (a, b) => check(&format!("{p}.http"), a.is_some() != b.is_some()),
    }
}

#[cfg(test)]
mod tests {
    /// A changed member list waits for a restart, named.
    #[test]
    fn the_cluster_needs_a_restart() {
        let load = |peers: &str| {
            let text = format!(
                "receivers: {{ otlp: {{ protocols: {{ grpc: }} }} }}\nprocessors: {{ tail_sampling: {{ policies: [{{ name: all, type: always_sample }}] }} }}\nexporters: {{ file: {{ path: /tmp/o.jsonl }} }}\ncluster: {{ self: \"a:1\", peers: [{peers}] }}\n"
            );
            let env = std::collections::HashMap::<String, String>::new();
            crate::config::load_with_env(&text, "t.yaml", &env).unwrap()
        };
        let one = load("{ otlp: \"a:1\" }");
        let two = load("{ otlp: \"a:1\" }, { otlp: \"b:1\" }");
        assert_eq!(super::needs_restart(&one, &two), ["cluster"]);
        assert!(super::needs_restart(&one, &one).is_empty());
    }
}
