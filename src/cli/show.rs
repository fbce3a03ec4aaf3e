//! `casefile show TRACE_ID`: a trace's case file from the support API
//! (`GET /api/v1/traces/{id}`), printed as a tree: what casefile decided and why, where it
//! holds the trace, the spans indented by parent with their service, duration, offset from
//! the trace's start and status (errors marked, exception events under their span), and
//! the indexed keys the trace carries. `--json` prints the API's answer.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::client::{self, ApiArgs};
use super::zone;

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The trace id (32 hex digits).
    trace_id: String,
    /// Print times in the local time zone instead of UTC.
    #[arg(long)]
    local: bool,
    #[command(flatten)]
    api: ApiArgs,
}

pub fn show(a: ShowArgs) -> ExitCode {
    let id = match super::archive::parse_id(&a.trace_id) {
        Ok(id) => hex::encode(id),
        Err(e) => {
            eprintln!("casefile: {e}");
            return ExitCode::from(2);
        }
    };
    match client::call(
        &a.api,
        http::Method::GET,
        &format!("/api/v1/traces/{id}"),
        None,
    ) {
        Err(e) => {
            eprintln!("casefile: {e}");
            ExitCode::FAILURE
        }
        Ok((200, v)) if a.api.json => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Ok((200, v)) => {
            print!("{}", render(&v, a.local));
            ExitCode::SUCCESS
        }
        Ok((404, _)) => {
            eprintln!(
                "casefile: trace {id} not found: casefile holds neither its spans nor its summary (never seen, or past the index and the archive's retention)"
            );
            ExitCode::FAILURE
        }
        Ok((status, v)) => client::failed(status, &v),
    }
}

/// What a decision means, for people.
fn decision_words(d: &str) -> &str {
    match d {
        "pending" => "pending: still in its decision window, not decided yet",
        "sampled" => "kept: sent downstream",
        "dropped" => "dropped: not sent downstream (a complaint about it rescues it)",
        "rescued" => "rescued: dropped, then sent downstream on a complaint",
        other => other,
    }
}

/// Where the spans were read from.
fn held_words(h: &str) -> &str {
    match h {
        "pending" => "pending (the buffer: the trace is in its decision window)",
        "rescue_ring" => "rescue_ring (memory: the last minutes of dropped traces)",
        "archive" => "archive (on disk)",
        other => other,
    }
}

/// An OTLP/JSON AnyValue as text.
fn any_value(v: &Value) -> String {
    let Some(obj) = v.as_object() else {
        return v.to_string();
    };
    let Some((kind, inner)) = obj.iter().next() else {
        return String::new();
    };
    match kind.as_str() {
        "stringValue" => inner.as_str().unwrap_or_default().to_owned(),
        "intValue" | "doubleValue" | "boolValue" => match inner {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
        "arrayValue" => {
            let items: Vec<String> = inner["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(any_value)
                .collect();
            format!("[{}]", items.join(", "))
        }
        "kvlistValue" => {
            let items: Vec<String> = inner["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|kv| {
                    format!(
                        "{}={}",
                        kv["key"].as_str().unwrap_or(""),
                        any_value(&kv["value"])
                    )
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        "bytesValue" => format!("bytes:{}", inner.as_str().unwrap_or_default()),
        _ => inner.to_string(),
    }
}

/// The value of attribute `key` in an OTLP/JSON attribute list.
fn attr<'a>(attrs: &'a Value, key: &str) -> Option<&'a Value> {
    attrs
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| &kv["value"])
}

/// A uint64 as OTLP/JSON writes it (a string) or as a number.
fn nanos(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        other => other.as_u64(),
    }
}

/// One span of the tree, as read from `resource_spans`.
struct Node<'a> {
    span: &'a Value,
    resource: &'a Value,
    service: String,
    start: u64,
    end: u64,
    error: bool,
}

impl Node<'_> {
    fn status(&self) -> String {
        let st = &self.span["status"];
        let code = match &st["code"] {
            Value::Number(n) => n.as_u64().unwrap_or(0),
            Value::String(s) if s.ends_with("ERROR") => 2,
            Value::String(s) if s.ends_with("OK") => 1,
            _ => 0,
        };
        let msg = st["message"].as_str().unwrap_or_default();
        let word = match code {
            2 => "ERROR",
            1 => "ok",
            _ => "unset",
        };
        if msg.is_empty() {
            word.to_owned()
        } else {
            format!("{word}: {msg}")
        }
    }

    fn exceptions(&self) -> Vec<String> {
        self.span["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["name"] == "exception")
            .map(|e| {
                let a = &e["attributes"];
                let get = |k| attr(a, k).map(any_value).unwrap_or_default();
                let (ty, msg) = (get("exception.type"), get("exception.message"));
                let mut line = match (ty.is_empty(), msg.is_empty()) {
                    (false, false) => format!("{ty}: {msg}"),
                    (false, true) => ty,
                    (true, false) => msg,
                    (true, true) => "(no type or message)".to_owned(),
                };
                if let Some(first) = get("exception.stacktrace").lines().next() {
                    line.push_str(&format!(" | {first}"));
                }
                line
            })
            .collect()
    }
}

fn nodes(v: &Value) -> Vec<Node<'_>> {
    let mut out = Vec::new();
    for rs in v["resource_spans"].as_array().into_iter().flatten() {
        let resource = &rs["resource"];
        let service = attr(&resource["attributes"], "service.name")
            .map(any_value)
            .unwrap_or_else(|| "(unknown service)".to_owned());
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for span in ss["spans"].as_array().into_iter().flatten() {
                let start = nanos(&span["startTimeUnixNano"]).unwrap_or(0);
                let end = nanos(&span["endTimeUnixNano"]).unwrap_or(start);
                let mut n = Node {
                    span,
                    resource,
                    service: service.clone(),
                    start,
                    end,
                    error: false,
                };
                n.error = n.status().starts_with("ERROR");
                out.push(n);
            }
        }
    }
    out
}

/// The case file as text.
pub fn render(v: &Value, local: bool) -> String {
    let mut o = String::new();
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let nodes = nodes(v);
    let trace_start = nodes
        .iter()
        .map(|n| n.start)
        .min()
        .or_else(|| crate::support::time::parse_nanos(&s("start")));
    let _ = writeln!(o, "trace {}", s("trace_id"));
    let _ = writeln!(o, "  decision:  {}", decision_words(&s("decision")));
    let reasons: Vec<&str> = v["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let _ = writeln!(
        o,
        "  reasons:   {}",
        if reasons.is_empty() {
            "-".to_owned()
        } else {
            reasons.join(", ")
        }
    );
    let _ = writeln!(o, "  root:      {}  {}", s("root_service"), s("root_name"));
    let start = match crate::support::time::parse_nanos(&s("start")).or(trace_start) {
        Some(t) => zone::format(t, local),
        None => s("start"),
    };
    let _ = writeln!(o, "  start:     {start} ({})", zone::label(local));
    let _ = writeln!(
        o,
        "  duration:  {:.1} ms",
        v["duration_ms"].as_f64().unwrap_or(0.0)
    );
    let _ = writeln!(
        o,
        "  spans:     {}{}",
        v["span_count"].as_u64().unwrap_or(0),
        if v["error"].as_bool() == Some(true) {
            " (with an error)"
        } else {
            ""
        }
    );
    let held = v["held"].as_str();
    let _ = writeln!(
        o,
        "  held:      {}",
        held.map_or(
            "nowhere: casefile has its summary only (kept traces' spans went downstream)",
            held_words
        )
    );
    if let Some(url) = v["url"].as_str() {
        let _ = writeln!(o, "  url:       {url}");
    }
    let errors: Vec<&Node> = nodes.iter().filter(|n| n.error).collect();
    if !errors.is_empty() {
        let _ = writeln!(o, "  errors:    {}", errors.len());
        for n in &errors {
            let _ = writeln!(
                o,
                "    {}  {}  {}",
                n.service,
                n.span["name"].as_str().unwrap_or(""),
                n.status()
            );
        }
    }
    if !nodes.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "spans (duration, offset from the trace's start, status):"
        );
        tree(&mut o, &nodes, trace_start.unwrap_or(0));
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "indexed keys:");
    let names: Vec<&str> = v["indexed_attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if names.is_empty() {
        let _ = writeln!(o, "  (no attribute is indexed)");
    }
    for name in names {
        let mut values: Vec<String> = Vec::new();
        for n in &nodes {
            for a in [&n.span["attributes"], &n.resource["attributes"]] {
                if let Some(val) = attr(a, name).map(any_value) {
                    if !values.contains(&val) {
                        values.push(val);
                    }
                }
            }
        }
        let shown = if values.is_empty() {
            if nodes.is_empty() {
                "(spans not held)".to_owned()
            } else {
                "-".to_owned()
            }
        } else {
            values.join(", ")
        };
        let _ = writeln!(o, "  {name} = {shown}");
    }
    o
}

/// The spans indented by parent, children in start order; spans whose parent casefile
/// does not hold are printed as roots, marked.
fn tree(o: &mut String, nodes: &[Node], t0: u64) {
    let id = |n: &Node| n.span["spanId"].as_str().unwrap_or_default().to_owned();
    let parent = |n: &Node| {
        n.span["parentSpanId"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let by_id: HashMap<String, usize> = nodes.iter().enumerate().map(|(i, n)| (id(n), i)).collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        match by_id.get(&parent(n)) {
            Some(&p) if p != i && !parent(n).is_empty() => children.entry(p).or_default().push(i),
            _ => roots.push(i),
        }
    }
    let by_start = |v: &mut Vec<usize>| v.sort_by_key(|&i| (nodes[i].start, i));
    by_start(&mut roots);
    for v in children.values_mut() {
        by_start(v);
    }
    // Iterative depth-first walk (a cycle of parent ids cannot loop: each span once).
    let mut seen = vec![false; nodes.len()];
    let mut stack: Vec<(usize, String, bool, bool)> = roots
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &i)| (i, String::new(), k == 0, true))
        .collect();
    while let Some((i, indent, last, root)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        let n = &nodes[i];
        let branch = if root {
            ""
        } else if last {
            "└─ "
        } else {
            "├─ "
        };
        let orphan = if root && !parent(n).is_empty() {
            "  (parent span not held)"
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "{}{indent}{branch}{}  {}  {:.1} ms  +{:.1} ms  {}{orphan}",
            if n.error { "✗ " } else { "  " },
            n.service,
            n.span["name"].as_str().unwrap_or(""),
            n.end.saturating_sub(n.start) as f64 / 1e6,
            n.start.saturating_sub(t0) as f64 / 1e6,
            n.status(),
        );
        let child_indent = if root {
            indent.clone()
        } else if last {
            format!("{indent}   ")
        } else {
            format!("{indent}│  ")
        };
        let kids = children.get(&i).cloned().unwrap_or_default();
        for e in n.exceptions() {
            let bar = if kids.is_empty() { "   " } else { "│  " };
            let _ = writeln!(o, "  {child_indent}{bar}exception: {e}");
        }
        for (k, &c) in kids.iter().enumerate().rev() {
            stack.push((c, child_indent.clone(), k == kids.len() - 1, false));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn span(id: &str, parent: &str, name: &str, start: u64, end: u64, code: u64) -> Value {
        json!({ "traceId": "ab", "spanId": id, "parentSpanId": parent, "name": name,
            "startTimeUnixNano": start.to_string(), "endTimeUnixNano": end.to_string(),
            "status": { "code": code, "message": if code == 2 { "declined" } else { "" } },
            "attributes": [{ "key": "user.id", "value": { "stringValue": "usr_1" } }] })
    }

    #[test]
    fn the_tree_nests_children_under_parents_and_marks_errors() {
        let t0 = 1_767_225_600_000_000_000u64;
        let mut err = span("c", "b", "charge", t0 + 5_000_000, t0 + 9_000_000, 2);
        err["events"] = json!([{ "name": "exception", "attributes": [
            { "key": "exception.type", "value": { "stringValue": "CardError" } },
            { "key": "exception.message", "value": { "stringValue": "insufficient funds" } }] }]);
        let v = json!({
            "trace_id": "ab", "decision": "dropped", "reasons": [], "root_service": "api",
            "root_name": "POST /checkout", "start": "2026-01-01T00:00:00.000Z",
            "duration_ms": 20.0, "span_count": 4, "error": true, "held": "archive",
            "indexed_attributes": ["user.id", "session.id"],
            "resource_spans": [
                { "resource": { "attributes": [{ "key": "service.name", "value": { "stringValue": "api" } }] },
                  "scopeSpans": [{ "spans": [span("a", "", "POST /checkout", t0, t0 + 20_000_000, 0)] }] },
                { "resource": { "attributes": [{ "key": "service.name", "value": { "stringValue": "pay" } }] },
                  "scopeSpans": [{ "spans": [span("b", "a", "pay", t0 + 1_000_000, t0 + 10_000_000, 0), err,
                                             span("d", "zz", "late", t0 + 2_000_000, t0 + 3_000_000, 1)] }] }
            ]
        });
        let text = render(&v, false);
        assert!(text.contains("held:      archive"), "{text}");
        assert!(text.contains("dropped: not sent downstream"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let at = |needle: &str| {
            lines
                .iter()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("{needle}: {text}"))
        };
        assert!(
            lines[at("api  POST /checkout  20.0 ms")].starts_with("  api"),
            "{text}"
        );
        assert!(
            lines[at("pay  pay  9.0 ms  +1.0 ms")].contains("└─ pay"),
            "{text}"
        );
        let charge = lines[at("pay  charge  4.0 ms  +5.0 ms  ERROR: declined")];
        assert!(
            charge.starts_with("✗ ") && charge.contains("   └─ pay"),
            "{text}"
        );
        assert!(at("exception: CardError: insufficient funds") == at("pay  charge  4.0") + 1);
        assert!(
            lines[at("late")].contains("(parent span not held)"),
            "{text}"
        );
        assert!(text.contains("user.id = usr_1"), "{text}");
        assert!(text.contains("session.id = -"), "{text}");
    }

    #[test]
    fn a_summary_without_spans_says_so() {
        let v = json!({ "trace_id": "ab", "decision": "sampled", "reasons": ["errors"],
            "start": "2026-01-01T00:00:00.000Z", "indexed_attributes": ["user.id"] });
        let text = render(&v, false);
        assert!(text.contains("held:      nowhere"), "{text}");
        assert!(text.contains("reasons:   errors"), "{text}");
        assert!(text.contains("user.id = (spans not held)"), "{text}");
        assert!(text.contains("2026-01-01T00:00:00.000Z (UTC)"), "{text}");
    }
}
