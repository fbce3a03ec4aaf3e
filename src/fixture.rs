//! Realistic OTLP requests for tests, benchmarks and the load tool: several services,
//! 5–20 spans a trace, user ids, and a chosen share of error, slow and premium traces.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};

pub mod poison;

const SERVICES: [&str; 5] = ["frontend", "checkout", "payments", "inventory", "postgres"];
const OPERATIONS: [&str; 6] = [
    "GET /cart",
    "POST /checkout",
    "charge",
    "reserve",
    "SELECT orders",
    "render",
];

/// A string attribute.
pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// An integer attribute.
pub fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// What kind of trace to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    pub error: bool,
    pub slow: bool,
    pub premium: bool,
}

impl Shape {
    /// A trace with an error on one span (the `errors` example policy keeps it).
    pub const ERROR: Shape = Shape {
        error: true,
        slow: false,
        premium: false,
    };
}

/// One generated trace: its id and its spans, each with the service that emitted it.
#[derive(Debug, Clone)]
pub struct Trace {
    pub trace_id: [u8; 16],
    pub user_id: String,
    pub spans: Vec<(&'static str, Span)>,
}

impl Trace {
    /// Makes every span carry `user.id = user` (several traces of one user).
    pub fn set_user(&mut self, user: &str) {
        self.user_id = user.to_owned();
        for (_, s) in self.spans.iter_mut() {
            for a in s.attributes.iter_mut().filter(|a| a.key == "user.id") {
                *a = kv("user.id", user);
            }
        }
    }
}

/// Deterministic trace generator.
pub struct Gen {
    rng: fastrand::Rng,
    /// Start time of the next trace, in Unix nanoseconds.
    pub now_ns: u64,
}

impl Gen {
    pub fn new(seed: u64) -> Gen {
        Gen {
            rng: fastrand::Rng::with_seed(seed),
            now_ns: 1_767_225_600_000_000_000,
        }
    }

    /// A trace of the realistic mix: 5 % errors, 5 % slow, 5 % premium.
    pub fn mixed(&mut self) -> Trace {
        let shape = Shape {
            error: self.rng.u8(0..100) < 5,
            slow: self.rng.u8(0..100) < 5,
            premium: self.rng.u8(0..100) < 5,
        };
        let n = self.rng.usize(5..=20);
        self.trace(shape, n)
    }

    /// A trace of `n` spans (n >= 1) with the given shape. Its root lasts 20–200 ms, or
    /// 800–1500 ms when slow; the error, if any, is on a leaf span.
    pub fn trace(&mut self, shape: Shape, n: usize) -> Trace {
        let trace_id = loop {
            let id = self.rng.u128(..).to_be_bytes();
            if id != [0; 16] {
                break id;
            }
        };
        let user_id = format!("usr_{:06}", self.rng.u32(0..1_000_000));
        let tier = if shape.premium { "premium" } else { "free" };
        let dur_ms = if shape.slow {
            self.rng.u64(800..1500)
        } else {
            self.rng.u64(20..200)
        };
        let start = self.now_ns;
        self.now_ns += 1_000_000;
        let end = start + dur_ms * 1_000_000;
        let mut spans = Vec::with_capacity(n);
        let mut ids: Vec<[u8; 8]> = Vec::with_capacity(n);
        for i in 0..n {
            let span_id = loop {
                let id = self.rng.u64(1..).to_be_bytes();
                if !ids.contains(&id) {
                    break id;
                }
            };
            let parent = if i == 0 {
                Vec::new()
            } else {
                ids[self.rng.usize(0..i)].to_vec()
            };
            ids.push(span_id);
            let service = if i == 0 {
                SERVICES[0]
            } else {
                SERVICES[1 + (i - 1) % (SERVICES.len() - 1)]
            };
            let s_start = if i == 0 {
                start
            } else {
                start + self.rng.u64(0..(end - start) / 2)
            };
            let s_end = if i == 0 {
                end
            } else {
                s_start + self.rng.u64(1..=(end - s_start))
            };
            let is_error = shape.error && i == n - 1;
            let mut attributes = vec![
                kv("user.id", &user_id),
                kv("user.tier", tier),
                kv("http.route", OPERATIONS[i % OPERATIONS.len()]),
                kv_int("http.status_code", if is_error { 500 } else { 200 }),
            ];
            if i > 0 {
                attributes.truncate(2);
                attributes.push(kv("db.system", "postgresql"));
            }
            spans.push((
                service,
                Span {
                    trace_id: trace_id.to_vec(),
                    span_id: span_id.to_vec(),
                    parent_span_id: parent,
                    name: OPERATIONS[i % OPERATIONS.len()].into(),
                    kind: if i == 0 {
                        span::SpanKind::Server as i32
                    } else {
                        span::SpanKind::Internal as i32
                    },
                    start_time_unix_nano: s_start,
                    end_time_unix_nano: s_end,
                    attributes,
                    status: Some(Status {
                        code: if is_error {
                            status::StatusCode::Error as i32
                        } else {
                            status::StatusCode::Unset as i32
                        },
                        message: if is_error {
                            "payment declined".into()
                        } else {
                            String::new()
                        },
                    }),
                    flags: 0x101,
                    ..Default::default()
                },
            ));
        }
        Trace {
            trace_id,
            user_id,
            spans,
        }
    }
}

/// Groups spans into one request: a ResourceSpans per service, one scope each.
pub fn request<'a>(
    spans: impl IntoIterator<Item = &'a (&'static str, Span)>,
) -> ExportTraceServiceRequest {
    let mut resource_spans: Vec<ResourceSpans> = Vec::new();
    for (service, span) in spans {
        let idx = match resource_spans
            .iter()
            .position(|rs| service_of(rs) == *service)
        {
            Some(i) => i,
            None => {
                resource_spans.push(resource_spans_for(service));
                resource_spans.len() - 1
            }
        };
        resource_spans[idx].scope_spans[0].spans.push(span.clone());
    }
    ExportTraceServiceRequest { resource_spans }
}

/// A request holding every span of these traces.
pub fn request_for(traces: &[Trace]) -> ExportTraceServiceRequest {
    request(traces.iter().flat_map(|t| t.spans.iter()))
}

fn resource_spans_for(service: &str) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                kv("service.name", service),
                kv("service.version", "1.4.2"),
                kv("deployment.environment", "production"),
                kv("host.name", &format!("{service}-7d9f8b-x2k4p")),
            ],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "casefile.fixture".into(),
                version: "1.0.0".into(),
                ..Default::default()
            }),
            spans: Vec::new(),
            schema_url: String::new(),
        }],
        schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
    }
}

pub(crate) fn service_of(rs: &ResourceSpans) -> &str {
    rs.resource
        .as_ref()
        .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
        .and_then(|a| a.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        })
        .unwrap_or("")
}
