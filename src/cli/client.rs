//! The support client: `casefile lookup` and `casefile complain` call a running casefile's
//! support API and print a readable table, or the API's JSON with `--json`.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Args;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use super::https::{self, TlsFiles};
use super::zone;
use crate::config::duration;

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Base URL of casefile's support API: http:// or https://.
    #[arg(long, env = "CASEFILE_API", default_value = "http://127.0.0.1:8990")]
    pub(super) api: String,
    /// PEM CA bundle that signed the API's certificate (https://); without it, the
    /// system trust store.
    #[arg(long, env = "CASEFILE_API_CA_FILE")]
    ca_file: Option<String>,
    /// PEM client certificate, for an API that requires one (mTLS); needs --key-file.
    #[arg(long, env = "CASEFILE_API_CERT_FILE", requires = "key_file")]
    cert_file: Option<String>,
    /// PEM private key of --cert-file (unencrypted).
    #[arg(long, env = "CASEFILE_API_KEY_FILE", requires = "cert_file")]
    key_file: Option<String>,
    /// Bearer token, when the API requires one.
    #[arg(long, env = "CASEFILE_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Debug, Args)]
pub struct LookupArgs {
    /// What to look up: an indexed attribute and its value, e.g. user.id=usr_k8x9m2.
    key: String,
    /// Only traces that started within this long before now (e.g. 30m, 2h).
    #[arg(long, conflicts_with = "start")]
    since: Option<String>,
    /// Only traces that started before this long ago (e.g. 10m).
    #[arg(long, conflicts_with = "end")]
    until: Option<String>,
    /// Only traces that started at or after this instant: RFC 3339 with `Z` or an offset
    /// (2026-12-04T14:15:00+01:00), or Unix epoch seconds or milliseconds (passed to the
    /// API as typed).
    #[arg(long)]
    start: Option<String>,
    /// Only traces that started at or before this instant (same forms as --start).
    #[arg(long)]
    end: Option<String>,
    /// Print start times in the local time zone (with its offset) instead of UTC.
    #[arg(long)]
    local: bool,
    /// Only traces with an error.
    #[arg(long)]
    errors: bool,
    #[arg(long, default_value_t = 20)]
    limit: usize,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(true).args(["trace", "user", "attr"])))]
pub struct ComplainArgs {
    /// The support ticket this complaint comes from.
    #[arg(long)]
    ticket: String,
    /// A trace id (32 hex digits).
    #[arg(long)]
    trace: Option<String>,
    /// A user id (user.id or enduser.id): their traces are acted on and watched.
    #[arg(long)]
    user: Option<String>,
    /// An indexed attribute, key=value (repeatable).
    #[arg(long)]
    attr: Vec<String>,
    #[arg(long)]
    label: Option<String>,
    /// Free text from the ticket.
    #[arg(long)]
    text: Option<String>,
    /// Only the user's traces that started within this long before now.
    #[arg(long)]
    since: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

fn ago(what: &str, d: &str) -> Result<String, String> {
    let d = duration::parse(d).map_err(|e| format!("--{what}: {e}"))?;
    let t = SystemTime::now()
        .checked_sub(d)
        .ok_or_else(|| format!("--{what} is too far back"))?;
    Ok(humantime::format_rfc3339_seconds(t).to_string())
}

/// Sends one request; returns the status and the JSON body.
pub(super) fn call(
    api: &ApiArgs,
    method: http::Method,
    path_and_query: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let url = format!("{}{}", api.api.trim_end_matches('/'), path_and_query);
        let mut req = http::Request::builder()
            .method(method)
            .uri(&url)
            .header("accept", "application/json");
        if let Some(t) = &api.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Full::new(bytes::Bytes::from(v.to_string()))
            }
            None => Full::new(bytes::Bytes::new()),
        };
        let req = req
            .body(body)
            .map_err(|e| format!("bad URL {url:?}: {e}"))?;
        let files = TlsFiles {
            ca_file: api.ca_file.clone(),
            cert_file: api.cert_file.clone(),
            key_file: api.key_file.clone(),
        };
        let resp = tokio::time::timeout(Duration::from_secs(30), https::send(req, &files)?)
            .await
            .map_err(|_| format!("{url}: no answer within 30s"))?
            .map_err(|e| format!("cannot reach {url}: {}", https::explain(&e)))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, v))
    })
}

/// Prints an API error and returns the exit code for it.
pub(super) fn failed(status: u16, v: &Value) -> ExitCode {
    let msg = v["error"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string());
    eprintln!("casefile: the API answered {status}: {msg}");
    if status == 401 {
        eprintln!("  (pass --token or set CASEFILE_API_TOKEN)");
    }
    ExitCode::FAILURE
}

pub(super) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn lookup(a: LookupArgs) -> ExitCode {
    let Some((attr, value)) = a.key.split_once('=') else {
        eprintln!("casefile: lookup takes attribute=value, e.g. user.id=usr_k8x9m2");
        return ExitCode::from(2);
    };
    let mut q = format!("{}={}&limit={}", encode(attr), encode(value), a.limit);
    for (name, d, param) in [("since", &a.since, "start"), ("until", &a.until, "end")] {
        if let Some(d) = d {
            match ago(name, d) {
                Ok(t) => q.push_str(&format!("&{param}={}", encode(&t))),
                Err(e) => {
                    eprintln!("casefile: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    }
    for (param, t) in [("start", &a.start), ("end", &a.end)] {
        if let Some(t) = t {
            q.push_str(&format!("&{param}={}", encode(t)));
        }
    }
    if a.errors {
        q.push_str("&status=error");
    }
    match call(
        &a.api,
        http::Method::GET,
        &format!("/api/v1/traces?{q}"),
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
            print_traces(attr, value, &v, a.local);
            ExitCode::SUCCESS
        }
        Ok((status, v)) => failed(status, &v),
    }
}

/// In a tier: the members that did not answer, on stderr (their traces are missing).
fn print_partial(v: &Value) {
    for p in v["partial"].as_array().into_iter().flatten() {
        eprintln!(
            "casefile: member {} did not answer ({}): its traces are not in this answer",
            p["member"].as_str().unwrap_or("?"),
            p["error"].as_str().unwrap_or("no reason given")
        );
    }
}

fn print_traces(attr: &str, value: &str, v: &Value, local: bool) {
    print_partial(v);
    let traces = v["traces"].as_array().cloned().unwrap_or_default();
    if traces.is_empty() {
        println!("no traces for {attr}={value} in that time range");
        return;
    }
    let zone = if local { "local" } else { "UTC" };
    println!(
        "{:<29} {:>10} {:<14} {:<22} {:<5} {:>5} {:<9} {:<18} TRACE",
        format!("START ({zone})"),
        "DURATION",
        "SERVICE",
        "OPERATION",
        "ERROR",
        "SPANS",
        "DECISION",
        "REASONS"
    );
    for t in &traces {
        let s = |k: &str| t[k].as_str().unwrap_or("").to_owned();
        let reasons: Vec<&str> = t["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let link = t["url"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| s("trace_id"));
        println!(
            "{:<29} {:>8.1}ms {:<14} {:<22} {:<5} {:>5} {:<9} {:<18} {link}",
            zone::show(&s("start"), local),
            t["duration_ms"].as_f64().unwrap_or(0.0),
            s("root_service"),
            s("root_name"),
            if t["error"].as_bool() == Some(true) {
                "yes"
            } else {
                ""
            },
            t["span_count"].as_u64().unwrap_or(0),
            s("decision"),
            reasons.join(","),
        );
    }
}

pub fn complain(a: ComplainArgs) -> ExitCode {
    let mut attributes = serde_json::Map::new();
    for kv in &a.attr {
        let Some((k, v)) = kv.split_once('=') else {
            eprintln!("casefile: --attr takes key=value, not {kv:?}");
            return ExitCode::from(2);
        };
        attributes.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    let mut body = json!({ "ticket_id": a.ticket, "trace_id": a.trace, "user_id": a.user, "label": a.label, "text": a.text });
    if !attributes.is_empty() {
        body["attributes"] = Value::Object(attributes);
    }
    if let Some(d) = &a.since {
        match ago("since", d) {
            Ok(t) => body["start"] = Value::String(t),
            Err(e) => {
                eprintln!("casefile: {e}");
                return ExitCode::from(2);
            }
        }
    }
    // Absent fields are omitted rather than sent as null.
    if let Value::Object(m) = &mut body {
        m.retain(|_, v| !v.is_null());
    }
    match call(&a.api, http::Method::POST, "/api/v1/complaints", Some(body)) {
        Err(e) => {
            eprintln!("casefile: {e}");
            ExitCode::FAILURE
        }
        Ok((201, v)) if a.api.json => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Ok((201, v)) => {
            print_partial(&v);
            println!(
                "complaint {} filed",
                v["complaint_id"].as_str().unwrap_or("?")
            );
            for t in v["traces"].as_array().into_iter().flatten() {
                let what = match t["outcome"].as_str().unwrap_or("") {
                    "flagged" => "kept: still in its window, it will be sent on at its decision",
                    "already_sampled" => "already kept",
                    "rescued" => "rescued: it had been dropped and is sent on now",
                    "not_found" => "not found: casefile no longer holds it",
                    "not_rescued_limit" => {
                        "not rescued: past support.complaints.max_rescue_traces for one complaint"
                    }
                    other => other,
                };
                println!("  {}  {what}", t["trace_id"].as_str().unwrap_or("?"));
            }
            if let Some(until) = v["watch_until"].as_str() {
                println!("  watching: every new trace of this key is kept until {until}");
            }
            ExitCode::SUCCESS
        }
        Ok((status, v)) => failed(status, &v),
    }
}
