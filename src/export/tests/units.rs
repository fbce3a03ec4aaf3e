//! Backoff, error classification and endpoint parsing.

use std::time::Duration;

use tonic::Code;

use crate::export::config::{RetryCfg, Security};
use crate::export::grpc::endpoint_uri;
use crate::export::http::traces_uri;
use crate::export::retry::Backoff;
use crate::export::ExportError;

use super::{ms, otlp_cfg};

fn retry(initial: u64, max: u64, max_elapsed: u64, randomization_factor: f64) -> RetryCfg {
    RetryCfg {
        enabled: true,
        initial_interval: ms(initial),
        max_interval: ms(max),
        max_elapsed_time: ms(max_elapsed),
        randomization_factor,
        multiplier: 1.5,
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_to_the_cap_and_stops_after_max_elapsed() {
    let mut b = Backoff::new(&retry(100, 300, 1000, 0.0));
    let d = |ms: u64| Some(Duration::from_millis(ms));
    assert_eq!(b.next(None), d(100));
    assert_eq!(b.next(None), d(150));
    assert_eq!(b.next(None), d(225));
    assert_eq!(b.next(None), d(300));
    assert_eq!(b.next(None), d(300));
    // The server's wish wins when longer.
    assert_eq!(b.next(Some(Duration::from_millis(700))), d(700));
    tokio::time::advance(Duration::from_millis(800)).await;
    assert_eq!(b.next(None), None, "800 ms elapsed + 300 ms > 1 s");
    let mut forever = Backoff::new(&retry(100, 300, 0, 0.0));
    tokio::time::advance(Duration::from_secs(86_400)).await;
    assert!(forever.next(None).is_some());
}

#[test]
fn backoff_jitter_stays_within_the_randomization_factor() {
    let mut b = Backoff::new(&retry(1000, 1000, 0, 0.5));
    let delays: Vec<Duration> = (0..200).map(|_| b.next(None).unwrap()).collect();
    assert!(delays
        .iter()
        .all(|d| *d >= Duration::from_millis(500) && *d <= Duration::from_millis(1500)));
    assert!(delays.iter().any(|d| *d != delays[0]), "jittered");
}

#[test]
fn retryable_errors_follow_the_otlp_spec() {
    let grpc = |code, retry_delay| ExportError::Grpc {
        code,
        message: String::new(),
        retry_delay,
    };
    for code in [
        Code::Unavailable,
        Code::Cancelled,
        Code::DeadlineExceeded,
        Code::Aborted,
        Code::OutOfRange,
        Code::DataLoss,
    ] {
        assert!(grpc(code, None).is_retryable(), "{code:?}");
    }
    for code in [
        Code::InvalidArgument,
        Code::Unauthenticated,
        Code::PermissionDenied,
        Code::NotFound,
        Code::Unknown,
    ] {
        assert!(!grpc(code, None).is_retryable(), "{code:?}");
    }
    assert!(!grpc(Code::ResourceExhausted, None).is_retryable());
    assert!(grpc(Code::ResourceExhausted, Some(Duration::from_secs(1))).is_retryable());
    let http = |status| ExportError::Http {
        status,
        message: String::new(),
        retry_after: None,
    };
    for status in [429, 502, 503, 504] {
        assert!(http(status).is_retryable(), "{status}");
    }
    for status in [400, 401, 403, 404, 413, 500] {
        assert!(!http(status).is_retryable(), "{status}");
    }
    assert!(ExportError::Transport("refused".into()).is_retryable());
    assert!(ExportError::Timeout(Duration::from_secs(1)).is_retryable());
}

#[test]
fn content_refusals_are_told_from_endpoint_errors() {
    let grpc = |code, retry_delay| ExportError::Grpc {
        code,
        message: String::new(),
        retry_delay,
    };
    let http = |status| ExportError::Http {
        status,
        message: String::new(),
        retry_after: None,
    };
    assert_eq!(
        grpc(Code::InvalidArgument, None).refusal_reason(),
        Some("invalid_argument")
    );
    assert_eq!(
        grpc(Code::ResourceExhausted, None).refusal_reason(),
        Some("resource_exhausted")
    );
    assert_eq!(
        grpc(Code::Internal, None).refusal_reason(),
        Some("internal")
    );
    assert_eq!(
        grpc(Code::FailedPrecondition, None).refusal_reason(),
        Some("failed_precondition")
    );
    assert_eq!(http(400).refusal_reason(), Some("http_400"));
    assert_eq!(http(413).refusal_reason(), Some("http_413"));
    // Throttling is retried, not split; endpoint errors fail every part alike.
    let throttled = grpc(Code::ResourceExhausted, Some(Duration::from_secs(1)));
    assert_eq!(throttled.refusal_reason(), None);
    for code in [
        Code::Unauthenticated,
        Code::PermissionDenied,
        Code::Unimplemented,
        Code::NotFound,
        Code::OutOfRange,
        Code::Unavailable,
        Code::Unknown,
    ] {
        assert_eq!(grpc(code, None).refusal_reason(), None, "{code:?}");
    }
    for status in [401, 403, 404, 405, 429, 500, 503] {
        assert_eq!(http(status).refusal_reason(), None, "{status}");
    }
    let io = ExportError::Io(std::io::Error::other("disk full"));
    assert_eq!(io.refusal_reason(), None);
}

#[test]
fn grpc_endpoints() {
    let plain = |e: &str| endpoint_uri("x", e, Security::Plaintext);
    assert_eq!(plain("tempo:4317").unwrap(), "http://tempo:4317");
    assert_eq!(
        plain(" http://10.0.0.1:4317 ").unwrap(),
        "http://10.0.0.1:4317"
    );
    assert_eq!(plain("[::1]:4317").unwrap(), "http://[::1]:4317");
    assert_eq!(
        endpoint_uri("x", "HTTPS://tempo:4317", Security::Tls).unwrap(),
        "https://tempo:4317"
    );
    assert_eq!(
        endpoint_uri("x", "tempo:4317", Security::Tls).unwrap(),
        "https://tempo:4317"
    );
    assert!(matches!(
        plain("unix:///tmp/s"),
        Err(ExportError::InvalidEndpoint { .. })
    ));
    assert!(matches!(
        plain("tempo 4317"),
        Err(ExportError::InvalidEndpoint { .. })
    ));
}

/// Plaintext or TLS, as the Collector decides, and contradictions refused.
#[test]
fn exporter_security_follows_scheme_and_insecure() {
    let grpc = |endpoint: &str, insecure: bool| {
        let mut c = otlp_cfg(endpoint);
        c.tls.insecure = insecure;
        c.security(false)
    };
    assert_eq!(grpc("tempo:4317", false), Ok(Security::Tls));
    assert_eq!(grpc("tempo:4317", true), Ok(Security::Plaintext));
    assert_eq!(grpc("http://tempo:4317", false), Ok(Security::Plaintext));
    assert_eq!(grpc("https://tempo:4317", false), Ok(Security::Tls));
    let e = grpc("https://tempo:4317", true).unwrap_err();
    assert_eq!(e[0].0, "tls.insecure");

    let http = |endpoint: &str| {
        let mut c = otlp_cfg(endpoint);
        c.tls.insecure = false;
        c.security(true)
    };
    assert_eq!(http("https://gw"), Ok(Security::Tls));
    assert_eq!(http("http://gw"), Ok(Security::Plaintext));
    let mut c = otlp_cfg("http://gw");
    c.traces_endpoint = Some("https://gw/t".into());
    c.tls.insecure = false;
    assert_eq!(
        c.security(true),
        Ok(Security::Tls),
        "traces_endpoint decides"
    );

    let mut c = otlp_cfg("http://gw");
    c.tls.ca_file = Some("/etc/ca.pem".into());
    let e = c.security(true).unwrap_err();
    assert_eq!(e[0].0, "tls.ca_file");
    assert!(e[0].1.contains("https://"), "{e:?}");

    let mut c = otlp_cfg("tempo:4317");
    c.tls.insecure = false;
    c.tls.cert_file = Some("/etc/client.pem".into());
    let e = c.security(false).unwrap_err();
    assert_eq!(e[0].0, "tls.key_file");
    c.tls.cert_file = None;
    c.tls.server_name_override = Some("not a name!".into());
    assert_eq!(
        c.security(false).unwrap_err()[0].0,
        "tls.server_name_override"
    );
}

#[test]
fn http_endpoints() {
    let uri = |endpoint: &str, traces: Option<&str>| {
        let mut c = otlp_cfg(endpoint);
        c.traces_endpoint = traces.map(String::from);
        traces_uri("x", &c).map(|u| u.to_string())
    };
    assert_eq!(
        uri("http://collector:4318", None).unwrap(),
        "http://collector:4318/v1/traces"
    );
    assert_eq!(
        uri("http://collector:4318/", None).unwrap(),
        "http://collector:4318/v1/traces"
    );
    assert_eq!(
        uri("http://gw/otlp", None).unwrap(),
        "http://gw/otlp/v1/traces"
    );
    assert_eq!(
        uri("", Some("http://gw:80/custom")).unwrap(),
        "http://gw:80/custom"
    );
    assert_eq!(uri("https://gw", None).unwrap(), "https://gw/v1/traces");
    assert_eq!(
        uri("http://gw", Some("https://gw/t")).unwrap(),
        "https://gw/t"
    );
    assert!(matches!(
        uri("gw:4318", None),
        Err(ExportError::InvalidEndpoint { .. })
    ));
}

#[test]
fn handles_and_futures_can_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let ex = crate::export::Exporters::start(&[]).unwrap();
    send_sync(&ex);
    send(&ex.send(super::batch_of(&super::request("x", 1))));
    send(&ex.clone().shutdown(Duration::ZERO));
}
