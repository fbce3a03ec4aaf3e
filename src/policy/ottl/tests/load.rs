//! ottl_condition load-time errors: every problem with its line and column, all at once.

use super::*;

#[test]
fn every_problem_is_reported_with_its_line_and_column() {
    let yaml = r#"
- name: bad
  type: ottl_condition
  ottl_condition:
    error_mode: loud
    span:
      - 'Foo(name) == "x"'
      - 'attributes["a"] == 1 and nme == "x"'
      - 'IsMatch(attributes["a"], "(unclosed")'
      - 'HasPrefix(kind, "x") and Substring(name, "1", 2) == "a" and Len(name, 1) == 1'
      - |
        name == "a" and
          kind = SPAN_KIND_SERVER
      - 'attributes["a"]'
      - 'kind == SPAN_KIND_SERVERS'
      - 'name == "unterminated'
      - 'name == ''single'''
      - 'name == "a" and'
      - 'set(name, "x")'
      - 'TraceID(0x0102) == trace_id'
      - 'attributes["a"][0] == 1'
      - 'IsMatch(name, pattern)'
    spanevent:
      - 'kind == SPAN_KIND_SERVER'
"#;
    let got = problems(yaml);
    let at = |path: &str| -> Vec<String> {
        got.iter()
            .filter(|(p, _)| p == path)
            .map(|(_, m)| m.clone())
            .collect()
    };
    let base = "policies[0].ottl_condition";
    assert_eq!(at(&format!("{base}.error_mode")).len(), 1, "{got:#?}");
    let first = |i: usize| at(&format!("{base}.span[{i}]")).join(" | ");
    assert!(
        first(0).starts_with(
            "line 1, column 1: unknown function Foo; casefile supports the converters IsMatch,"
        ),
        "{}",
        first(0)
    );
    assert!(
        first(1)
            .starts_with("line 1, column 26: unknown path nme in a span condition; known: name,"),
        "{}",
        first(1)
    );
    assert!(
        first(2).starts_with("line 1, column 26: invalid regex \"(unclosed\": "),
        "{}",
        first(2)
    );
    // Three type errors in one condition, all reported.
    let three = at(&format!("{base}.span[3]"));
    assert_eq!(
        three,
        [
            "line 1, column 11: HasPrefix expects a string here, got an int",
            "line 1, column 42: Substring expects an int here, got a string",
            "line 1, column 61: Len takes 1 argument, got 2",
        ]
    );
    assert_eq!(
        first(4),
        "line 2, column 8: \"=\" is assignment; compare with \"==\""
    );
    assert!(
        first(5).starts_with("line 1, column 1: a path is not a condition"),
        "{}",
        first(5)
    );
    assert!(
        first(6).starts_with("line 1, column 9: unknown enum SPAN_KIND_SERVERS;"),
        "{}",
        first(6)
    );
    assert_eq!(first(7), "line 1, column 9: unterminated string");
    assert_eq!(
        first(8),
        "line 1, column 9: unexpected character '\\'' (strings are double-quoted)"
    );
    assert_eq!(
        first(9),
        "line 1, column 16: expected a value, found end of condition"
    );
    assert!(
        first(10).starts_with("line 1, column 1: unknown function set (editors such as set"),
        "{}",
        first(10)
    );
    assert_eq!(first(11), "line 1, column 9: TraceID needs 16 bytes, got 2");
    assert!(
        first(12).starts_with("line 1, column 17: casefile does not support slice indexes"),
        "{}",
        first(12)
    );
    assert_eq!(
        first(13),
        "line 1, column 15: IsMatch takes its pattern as a string literal"
    );
    assert!(at(&format!("{base}.spanevent[0]"))[0]
        .starts_with("line 1, column 1: unknown path kind in a spanevent condition"));
    assert_eq!(got.len(), 18, "{got:#?}");
}

#[test]
fn an_empty_block_and_unknown_keys_are_refused() {
    let got = problems("- { name: o, type: ottl_condition, ottl_condition: {} }");
    assert_eq!(got[0].0, "policies[0].ottl_condition");
    assert!(got[0].1.contains("at least one condition"));
    let r: Result<Vec<PolicyCfg>, _> = serde_yaml_ng::from_str(
        "- { name: o, type: ottl_condition, ottl_condition: { spans: ['true'] } }",
    );
    assert!(r.is_err());
}

#[test]
fn describe_lists_the_conditions() {
    let p = build(&policy(
        "ignore",
        &[r#"name == "a""#],
        &[r#"name == "exception""#],
    ));
    assert_eq!(
        p.describe(),
        [
            "ottl: ottl_condition (error_mode ignore): any condition holds for a span or span event:",
            r#"  span: name == "a""#,
            r#"  spanevent: name == "exception""#,
        ]
    );
}
