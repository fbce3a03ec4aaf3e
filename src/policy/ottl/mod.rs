//! The `ottl_condition` policy: the Collector's OTTL conditions on spans and span events,
//! parsed and type-checked at load, evaluated on the span's encoded bytes.
//!
//! Parser choice: hand-written recursive descent (`lexer`, `parser`). The subset is about
//! twenty productions with no operator precedence beyond `or` < `and` < `not`; a crate such as
//! `winnow` or `chumsky` would add a dependency (and for chumsky several seconds of build
//! time) to save perhaps a hundred lines, while positioned error messages would need the
//! same work either way. No dependency is added.
//!
//! Supported: paths `name`, `kind`, `status.code`, `status.message`, `attributes["k"]` (and
//! `["k"]["j"]` into maps), `resource.attributes["k"]`, `instrumentation_scope.name`/`.version`/
//! `.attributes`, `trace_id`, `span_id`, `parent_span_id`, `start_time_unix_nano`,
//! `end_time_unix_nano`, `trace_state`, each also `span.`-prefixed; in `spanevent` the event's
//! `name`, `attributes`, `time_unix_nano` and the span's fields as `span.*`. Literals (strings,
//! ints, floats, `0x…` bytes, bools, nil, `SPAN_KIND_*`, `STATUS_CODE_*`), the six
//! comparisons with the Collector's cross-type rules, `and`/`or`/`not`/parentheses, and the
//! converters in [`check::CONVERTERS`].
//!
//! Not supported (a load error names the construct): slice indexes (`["k"][0]`), math
//! (`+ - * /`), other converters and functions, named arguments, `trace_id.string`-style
//! sub-paths, enum names other than span kinds and status codes. Rendering a map or slice
//! as a string (`String(attributes)`, `IsMatch` on a map) is an evaluation error rather than
//! the Collector's JSON; map equality compares encodings.

mod check;
mod eval;
mod expr;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;
mod value;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use metrics::Counter;
use serde::Deserialize;

use self::check::Context;
use self::expr::{Cond, Ctx, Memo};
use super::eval::Decision;
use crate::model::Span;
use crate::wire::{Field, Fields};

/// `ottl_condition` as in the Collector's config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OttlConditionCfg {
    /// `propagate` (the default), `ignore` or `silent`.
    pub error_mode: String,
    pub span: Vec<String>,
    pub spanevent: Vec<String>,
}

/// What an evaluation error does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorMode {
    /// The policy decides "not sampled" for the trace (the Collector's Error decision).
    Propagate,
    /// The condition is false; logged (rate-limited).
    Ignore,
    /// The condition is false; not logged.
    Silent,
}

/// The errors counter, labelled `policy`.
const OTTL_ERRORS: &str = "casefile_policy_ottl_errors_total";
/// At most one log line per policy per this many seconds.
const LOG_EVERY_SECS: u64 = 10;

/// One compiled condition.
#[derive(Debug)]
struct Condition {
    cond: Cond,
    /// Reads only resource/scope paths: evaluated once per run of spans sharing them.
    origin_only: bool,
    /// Reads a path more than once (memo slots to fill while it is evaluated).
    memo: bool,
}

/// A built `ottl_condition` policy.
#[derive(Debug)]
pub struct OttlPolicy {
    span: Vec<Condition>,
    spanevent: Vec<Condition>,
    mode: ErrorMode,
    name: Arc<str>,
    errors: OnceLock<Counter>,
    last_log: AtomicU64,
}

/// Compiles the block; on failure returns `(path suffix, message)` of every problem, the
/// suffix relative to the `ottl_condition` block (`span[1]`).
pub fn build(cfg: &OttlConditionCfg, name: &str) -> Result<OttlPolicy, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let mode = match cfg.error_mode.as_str() {
        "" | "propagate" => ErrorMode::Propagate,
        "ignore" => ErrorMode::Ignore,
        "silent" => ErrorMode::Silent,
        other => {
            problems.push((
                "error_mode".to_owned(),
                format!("unknown error_mode {other:?}; supported: propagate, ignore, silent"),
            ));
            ErrorMode::Propagate
        }
    };
    if cfg.span.is_empty() && cfg.spanevent.is_empty() {
        problems.push((
            String::new(),
            "at least one condition is required in span or spanevent".to_owned(),
        ));
    }
    let mut compile_all = |list: &[String], field: &str, cx: Context| -> Vec<Condition> {
        let mut out = Vec::new();
        for (i, src) in list.iter().enumerate() {
            match compile_one(src, cx) {
                Ok(c) => out.push(c),
                Err(errs) => {
                    problems.extend(errs.into_iter().map(|e| (format!("{field}[{i}]"), e)))
                }
            }
        }
        out
    };
    let span = compile_all(&cfg.span, "span", Context::Span);
    let spanevent = compile_all(&cfg.spanevent, "spanevent", Context::SpanEvent);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(OttlPolicy {
        span,
        spanevent,
        mode,
        name: name.into(),
        errors: OnceLock::new(),
        last_log: AtomicU64::new(0),
    })
}

/// Lexes, parses and checks one condition; errors rendered with line and column.
fn compile_one(src: &str, cx: Context) -> Result<Condition, Vec<String>> {
    let render = |e: lexer::SyntaxError| e.render(src);
    let tokens = lexer::lex(src).map_err(|e| vec![render(e)])?;
    let ast = parser::parse(&tokens).map_err(|e| vec![render(e)])?;
    let (cond, memo) =
        check::compile(&ast, cx).map_err(|es| es.into_iter().map(render).collect::<Vec<_>>())?;
    let origin_only = cond.paths_all(|p| p.origin_only());
    Ok(Condition {
        cond,
        origin_only,
        memo,
    })
}

impl OttlPolicy {
    /// What `casefile check` prints: a heading, then one indented line per condition.
    pub fn describe(&self, cfg: &OttlConditionCfg) -> Vec<String> {
        let mode = match self.mode {
            ErrorMode::Propagate if cfg.error_mode.is_empty() => "propagate (default)",
            ErrorMode::Propagate => "propagate",
            ErrorMode::Ignore => "ignore",
            ErrorMode::Silent => "silent",
        };
        let mut lines = vec![format!(
            "ottl_condition (error_mode {mode}): any condition holds for a span or span event:"
        )];
        lines.extend(cfg.span.iter().map(|c| format!("  span: {c}")));
        lines.extend(cfg.spanevent.iter().map(|c| format!("  spanevent: {c}")));
        lines
    }

    /// Sampled when a condition holds for a span or span event of the trace.
    pub fn evaluate(&self, spans: &[Span]) -> Decision {
        let mut prev: Option<&Span> = None;
        for span in spans {
            let same_origin = prev.is_some_and(|p| {
                Arc::ptr_eq(&p.origin, &span.origin)
                    || (p.resource().id == span.resource().id && p.scope().id == span.scope().id)
            });
            prev = Some(span);
            for c in &self.span {
                if c.origin_only && same_origin {
                    continue;
                }
                match self.check(c, span, &[]) {
                    Some(true) => return Decision::Sampled,
                    Some(false) => {}
                    None => return Decision::NotSampled,
                }
            }
            if self.spanevent.is_empty() {
                continue;
            }
            for f in Fields::new(&span.bytes) {
                let Ok((11, Field::Len(event))) = f else {
                    continue;
                };
                for c in &self.spanevent {
                    match self.check(c, span, event) {
                        Some(true) => return Decision::Sampled,
                        Some(false) => {}
                        None => return Decision::NotSampled,
                    }
                }
            }
        }
        Decision::NotSampled
    }

    /// The condition's value, or `None` when an error must end the evaluation (propagate).
    #[inline]
    fn check(&self, c: &Condition, span: &Span, event: &[u8]) -> Option<bool> {
        let memo = c.memo.then(Memo::new);
        let cx = Ctx {
            span,
            event,
            memo: memo.as_ref(),
        };
        match c.cond.eval(cx) {
            Ok(b) => Some(b),
            Err(e) => self.failed(&e),
        }
    }

    #[cold]
    fn failed(&self, error: &str) -> Option<bool> {
        self.errors
            .get_or_init(|| metrics::counter!(OTTL_ERRORS, "policy" => Arc::clone(&self.name)))
            .increment(1);
        if self.mode != ErrorMode::Silent {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let last = self.last_log.load(Ordering::Relaxed);
            if now >= last + LOG_EVERY_SECS
                && self
                    .last_log
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::warn!(policy = %self.name, error_mode = ?self.mode, "ottl_condition could not be evaluated: {error}");
            }
        }
        match self.mode {
            ErrorMode::Propagate => None,
            ErrorMode::Ignore | ErrorMode::Silent => Some(false),
        }
    }
}

impl Cond {
    /// Whether every path the condition reads satisfies `f` (true for none).
    fn paths_all(&self, f: impl Fn(expr::PathField) -> bool + Copy) -> bool {
        match self {
            Cond::Or(ts) | Cond::And(ts) => ts.iter().all(|t| t.paths_all(f)),
            Cond::Not(t) => t.paths_all(f),
            Cond::Cmp(a, _, b) => a.paths_all(f) && b.paths_all(f),
            Cond::Is(e) => e.paths_all(f),
            Cond::Attr(t) => f(t.field),
        }
    }
}

impl expr::Expr {
    fn paths_all(&self, f: impl Fn(expr::PathField) -> bool + Copy) -> bool {
        use expr::{Call as C, Expr as E};
        match self {
            E::Lit(_) => true,
            E::Path(p) => f(p.field),
            E::Call(c) => match c.as_ref() {
                C::IsMatch(e, _)
                | C::IsString(e)
                | C::IsInt(e)
                | C::IsDouble(e)
                | C::IsBool(e)
                | C::IsMap(e)
                | C::Int(e)
                | C::Double(e)
                | C::String(e)
                | C::Len(e)
                | C::ToLowerCase(e)
                | C::ToUpperCase(e) => e.paths_all(f),
                C::Concat(items, d) => items.iter().all(|e| e.paths_all(f)) && d.paths_all(f),
                C::HasPrefix(a, b) | C::HasSuffix(a, b) => a.paths_all(f) && b.paths_all(f),
                C::Substring(a, b, c) => a.paths_all(f) && b.paths_all(f) && c.paths_all(f),
            },
        }
    }
}
