//! ottl_condition shapes from public Collector configs, in every place a policy may sit.

use super::*;

fn http(status: Option<i64>, route: &str) -> Vec<Span> {
    let mut attrs = vec![kv("http.route", route)];
    if let Some(code) = status {
        attrs.push(kv_int("http.response.status_code", code));
    }
    one(span(0, 1).attrs(attrs))
}

#[test]
fn numeric_threshold_with_a_nil_guard() {
    let c = r#"attributes["http.response.status_code"] != nil and attributes["http.response.status_code"] >= 500"#;
    assert!(holds(c, &http(Some(503), "/cart")));
    assert!(!holds(c, &http(Some(404), "/cart")));
    assert!(!holds(c, &http(None, "/cart")));
}

#[test]
fn shapes_inside_and_drop_not_and_composite() {
    let yaml = r#"
- name: drop-health
  type: drop
  drop:
    drop_sub_policy:
      - name: health-route
        type: ottl_condition
        ottl_condition:
          span:
            - 'IsMatch(attributes["http.route"], "^/(health|ready)")'
- name: checkout-errors
  type: and
  and:
    and_sub_policy:
      - name: checkout
        type: ottl_condition
        ottl_condition:
          span:
            - 'resource.attributes["service.name"] == "checkout"'
      - name: server-errors
        type: ottl_condition
        ottl_condition:
          error_mode: ignore
          span:
            - 'kind == SPAN_KIND_SERVER and attributes["http.response.status_code"] >= 500'
      - name: half
        type: probabilistic
        probabilistic: { sampling_percentage: 100 }
- name: not-cart
  type: not
  not:
    not_sub_policy:
      name: cart
      type: ottl_condition
      ottl_condition:
        span:
          - 'name == "GET /cart"'
- name: budget
  type: composite
  composite:
    max_total_spans_per_second: 1000
    policy_order: [slow-ratio, exceptions]
    composite_sub_policy:
      - name: slow-ratio
        type: ottl_condition
        ottl_condition:
          span:
            - 'Double(attributes["x"]) > 0.1'
      - name: exceptions
        type: ottl_condition
        ottl_condition:
          spanevent:
            - 'name == "exception"'
    rate_allocation:
      - { policy: slow-ratio, percent: 50 }
      - { policy: exceptions, percent: 50 }
"#;
    let p = build(yaml);
    let named = |s: &[Span]| -> Vec<String> {
        verdict(&p, s)
            .policies
            .iter()
            .map(|n| n.to_string())
            .collect()
    };
    let mk =
        |name: &str, kind: SpanKind, attrs: Vec<KeyValue>, service: &str, events: Vec<Event>| {
            let mut s = span(0, 1).attrs(attrs);
            s.name = name.into();
            s.kind = kind as i32;
            s.events = events;
            trace(vec![(vec![kv("service.name", service)], vec![s])])
        };
    use SpanKind::{Client, Server};
    // Health checks are dropped whatever else matches.
    let health = mk(
        "GET /cart",
        Server,
        vec![
            kv("http.route", "/health/live"),
            kv_int("http.response.status_code", 500),
        ],
        "checkout",
        vec![],
    );
    assert!(!verdict(&p, &health).sampled);
    // checkout server errors: and; the cart span is not kept by not-cart.
    let err = mk(
        "GET /cart",
        Server,
        vec![kv_int("http.response.status_code", 502)],
        "checkout",
        vec![],
    );
    assert_eq!(named(&err), ["checkout-errors"]);
    let client_err = mk(
        "GET /cart",
        Client,
        vec![kv_int("http.response.status_code", 502)],
        "checkout",
        vec![],
    );
    assert!(!verdict(&p, &client_err).sampled);
    // not: anything but GET /cart.
    let other = mk("GET /pay", Client, vec![], "frontend", vec![]);
    assert_eq!(named(&other), ["not-cart"]);
    // composite: Double cast, then exception events.
    let ratio = mk(
        "GET /cart",
        Client,
        vec![kv("x", "0.5")],
        "frontend",
        vec![],
    );
    assert_eq!(named(&ratio), ["budget"]);
    let exc = mk(
        "GET /cart",
        Client,
        vec![],
        "frontend",
        vec![event("exception", 5, vec![])],
    );
    assert_eq!(named(&exc), ["budget"]);
    let nothing = mk(
        "GET /cart",
        Client,
        vec![kv("x", "0.05")],
        "frontend",
        vec![event("log", 5, vec![])],
    );
    assert!(!verdict(&p, &nothing).sampled);
}

#[test]
fn resource_only_conditions_are_evaluated_once_per_block_with_the_same_result() {
    // Many spans under one resource: the answer is the same as for one.
    let many: Vec<ProtoSpan> = (0..50).map(|i| span(i, i + 1)).collect();
    let t = trace(vec![
        (vec![kv("service.name", "a")], many),
        (vec![kv("service.name", "b")], vec![span(0, 1)]),
    ]);
    assert!(holds(r#"resource.attributes["service.name"] == "b""#, &t));
    assert!(!holds(r#"resource.attributes["service.name"] == "c""#, &t));
}

#[test]
fn repeated_paths_read_once_give_the_same_answers_beyond_the_memo_slots() {
    let s = one(span(0, 1).attrs(vec![
        kv_int("a", 1),
        kv_int("b", 2),
        kv_int("c", 3),
        kv_int("d", 4),
        kv_int("e", 5),
    ]));
    let c = ["a", "b", "c", "d", "e"]
        .iter()
        .enumerate()
        .map(|(i, k)| {
            format!(
                r#"attributes["{k}"] >= {} and attributes["{k}"] <= {}"#,
                i + 1,
                i + 1
            )
        })
        .collect::<Vec<_>>()
        .join(" and ");
    assert!(holds(&c, &s));
    assert!(!holds(&c.replace("<= 5", "<= 4"), &s));
    // A converter result is not memoised by mistake: two different converters on one path.
    assert!(holds(
        r#"ToUpperCase(name) == "OP" and ToLowerCase(name) == "op" and name == "op""#,
        &one(span(0, 1))
    ));
}

#[test]
fn fused_attribute_tests_keep_order_flips_and_mixed_groups() {
    let s = one(span(0, 1).attrs(vec![kv_int("n", 503), kv("s", "b")]));
    for (c, want) in [
        (r#"500 <= attributes["n"] and 599 >= attributes["n"]"#, true),
        (r#"500 < attributes["n"] and attributes["n"] < 503"#, false),
        (
            r#"attributes["s"] == "a" or attributes["s"] == "b" or attributes["n"] == 1"#,
            true,
        ),
        (
            r#"attributes["s"] == "a" or attributes["n"] == 1 or attributes["s"] == "c""#,
            false,
        ),
        (
            r#"(attributes["n"] >= 500 and attributes["n"] <= 599) or attributes["n"] == 1"#,
            true,
        ),
        (
            r#"not (attributes["n"] == 1 or attributes["n"] == 2)"#,
            true,
        ),
        (
            r#"attributes["n"] != nil and attributes["n"] >= 500 and attributes["missing"] == nil"#,
            true,
        ),
        (
            r#"resource.attributes["n"] == nil and attributes["n"] == 503"#,
            true,
        ),
    ] {
        assert_eq!(holds(c, &s), want, "{c}");
    }
}
