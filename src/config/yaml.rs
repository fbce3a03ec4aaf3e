//! The YAML layer under the config loader: parses the text into a `serde_yaml_ng::Value`,
//! expands `${env:VAR}` references in scalar values, and maps each key path to the line it
//! stands on, so every problem can be reported with its file and line.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, Span, SpannedEventReceiver};
use serde_yaml_ng::Value;

use super::Problem;

/// Looks up environment variables; tests pass a map instead of touching the process env.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Line numbers (1-based) of every key and sequence item, by dotted path
/// (`processors.tail_sampling.policies[2].latency`).
#[derive(Debug, Default)]
pub struct Lines(HashMap<String, usize>);

impl Lines {
    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.0.get(p) {
                return Some(*l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

enum Frame {
    /// In a mapping: the path of the mapping, and the key whose value comes next.
    Map(String, Option<String>),
    /// In a sequence: its path and the index of the next item.
    Seq(String, usize),
}

#[derive(Default)]
struct LineRecorder {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl LineRecorder {
    /// Path of the node that starts now, and records its line.
    fn enter_node(&mut self, line: usize) -> Option<String> {
        let path = match self.stack.last_mut() {
            None => return Some(String::new()),
            Some(Frame::Seq(p, i)) => {
                let path = format!("{p}[{i}]");
                *i += 1;
                path
            }
            Some(Frame::Map(p, key)) => {
                let k = key.take()?;
                if p.is_empty() {
                    k
                } else {
                    format!("{p}.{k}")
                }
            }
        };
        self.lines.entry(path.clone()).or_insert(line);
        Some(path)
    }
}

impl<'i> SpannedEventReceiver<'i> for LineRecorder {
    fn on_event(&mut self, ev: Event<'i>, span: Span) {
        let line = span.start.line();
        match ev {
            Event::Scalar(value, ..) => {
                // A scalar where a key is expected is a key.
                if let Some(Frame::Map(p, key @ None)) = self.stack.last_mut() {
                    let path = if p.is_empty() {
                        value.to_string()
                    } else {
                        format!("{p}.{value}")
                    };
                    self.lines.entry(path).or_insert(line);
                    *key = Some(value.into_owned());
                } else {
                    self.enter_node(line);
                }
            }
            Event::MappingStart(..) => {
                let p = self.enter_node(line).unwrap_or_default();
                self.stack.push(Frame::Map(p, None));
            }
            Event::SequenceStart(..) => {
                let p = self.enter_node(line).unwrap_or_default();
                self.stack.push(Frame::Seq(p, 0));
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                self.enter_node(line);
            }
            _ => {}
        }
    }
}

/// Parses `text`: its value and the line of every path. A syntax error is one problem
/// with its line.
pub fn parse(text: &str) -> Result<(Value, Lines), (Option<usize>, String)> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        (line, format!("invalid YAML: {e}"))
    })?;
    let mut rec = LineRecorder::default();
    // serde_yaml_ng accepted the text, so this parser will too; a failure only costs lines.
    let _ = Parser::new_from_str(text).load(&mut rec, false);
    Ok((value, Lines(rec.lines)))
}

/// Expands `${env:VAR}`, `${VAR}` and `${env:VAR:-default}` in every string scalar;
/// `$$` is a literal `$`. A value that is one whole reference is re-read as YAML, so
/// `num_traces: ${env:N}` becomes a number. Unset variables without a default are problems.
pub fn expand_env(value: &mut Value, env: &dyn Env, path: &str, problems: &mut Vec<Problem>) {
    match value {
        Value::String(s) if s.contains('$') => match expand_str(s, env) {
            Ok((expanded, whole)) => {
                *value = if whole {
                    reparse_scalar(expanded)
                } else {
                    Value::String(expanded)
                };
            }
            Err(msg) => problems.push(Problem::new(path, msg)),
        },
        Value::Sequence(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                expand_env(v, env, &format!("{path}[{i}]"), problems);
            }
        }
        Value::Mapping(m) => {
            for (k, v) in m.iter_mut() {
                let key = k
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{k:?}"));
                let p = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                expand_env(v, env, &p, problems);
            }
        }
        Value::Tagged(t) => expand_env(&mut t.value, env, path, problems),
        _ => {}
    }
}

fn reparse_scalar(s: String) -> Value {
    match serde_yaml_ng::from_str::<Value>(&s) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(s),
    }
}

/// Returns the expanded string and whether the input was a single reference.
fn expand_str(s: &str, env: &dyn Env) -> Result<(String, bool), String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut refs = 0;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("$$") {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix("${") {
            let end = r
                .find('}')
                .ok_or_else(|| format!("unterminated ${{ in {s:?}"))?;
            out.push_str(&lookup(&r[..end], env)?);
            rest = &r[end + 1..];
            refs += 1;
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    let whole = refs == 1
        && s.trim().starts_with("${")
        && s.trim().ends_with('}')
        && s.matches("${").count() == 1;
    Ok((out, whole))
}

fn lookup(reference: &str, env: &dyn Env) -> Result<String, String> {
    let body = reference.strip_prefix("env:").unwrap_or(reference);
    let (name, default) = match body.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (body, None),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "invalid environment reference ${{{reference}}}: use ${{env:NAME}}"
        ));
    }
    match (env.var(name), default) {
        (Some(v), _) => Ok(v),
        (None, Some(d)) => Ok(d.to_owned()),
        (None, None) => Err(format!(
            "environment variable {name} is not set (write ${{env:{name}:-default}} for a default)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        [
            ("N".to_string(), "250".to_string()),
            ("HOST".to_string(), "tempo".to_string()),
        ]
        .into()
    }

    #[test]
    fn lines_of_block_and_flow_paths() {
        let text =
            "a:\n  b: 1\n  list:\n    - { name: x, t: 2 }\n    - name: y\n      t: 3\nc: [1, 2]\n";
        let (_, lines) = parse(text).unwrap();
        assert_eq!(lines.of("a"), Some(1));
        assert_eq!(lines.of("a.b"), Some(2));
        assert_eq!(lines.of("a.list[0].t"), Some(4));
        assert_eq!(lines.of("a.list[1]"), Some(5));
        assert_eq!(lines.of("a.list[1].t"), Some(6));
        assert_eq!(
            lines.of("a.list[1].missing.deeper"),
            Some(5),
            "nearest ancestor"
        );
        assert_eq!(lines.of("c[1]"), Some(7));
    }

    #[test]
    fn syntax_errors_carry_their_line() {
        let (line, msg) = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(line.is_some(), "{msg}");
        assert!(msg.starts_with("invalid YAML"));
    }

    #[test]
    fn expands_references_and_retypes_whole_values() {
        let mut v: Value = serde_yaml_ng::from_str(
            "n: ${env:N}\nurl: http://${HOST}:4317\nd: ${env:MISSING:-5s}\nlit: $$HOME\nq: '${N}'\n",
        )
        .unwrap();
        let mut problems = Vec::new();
        expand_env(&mut v, &env(), "", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(v["n"], Value::from(250));
        assert_eq!(v["url"], Value::from("http://tempo:4317"));
        assert_eq!(v["d"], Value::from("5s"));
        assert_eq!(v["lit"], Value::from("$HOME"));
        assert_eq!(v["q"], Value::from(250));
    }

    #[test]
    fn unset_variables_are_problems_with_their_path() {
        let mut v: Value =
            serde_yaml_ng::from_str("a:\n  - x: ${env:NOPE}\n  - y: ${bad name}\n").unwrap();
        let mut problems = Vec::new();
        expand_env(&mut v, &env(), "", &mut problems);
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].path, "a[0].x");
        assert!(problems[0].message.contains("NOPE is not set"));
        assert_eq!(problems[1].path, "a[1].y");
    }
}
