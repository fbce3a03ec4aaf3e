//! The keys of what kept traces carry (`use_tracestate`, `adjusted_count_attribute`,
//! `record_policy_attributes`): read, refused with their line, warned about.

use super::tests::{env, problems, MINIMAL};
use super::*;

#[test]
fn adjusted_count_and_record_policy_keys() {
    let on = MINIMAL.replace(
        "    policies:",
        "    use_tracestate: true\n    adjusted_count_attribute: true\n    record_policy_attributes: collector\n    policies:",
    );
    let c = load_with_env(&on, "ok.yaml", &env()).unwrap();
    assert_eq!(
        c.tail_sampling.output,
        crate::policy::Output {
            use_tracestate: true,
            adjusted_count_attribute: true,
            record: crate::policy::RecordPolicy::Collector,
        }
    );
    let off = load_with_env(MINIMAL, "ok.yaml", &env()).unwrap();
    assert_eq!(off.tail_sampling.output, crate::policy::Output::default());

    let bad = MINIMAL.replace(
        "    policies:",
        "    record_policy_attributes: otel\n    policies:",
    );
    let ps = problems(&bad);
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert_eq!(
        (ps[0].problem.path.as_str(), ps[0].line),
        ("processors.tail_sampling.record_policy_attributes", Some(8))
    );
    assert!(ps[0].problem.message.contains("`collector`"), "{ps:#?}");

    let alone = MINIMAL.replace(
        "    policies:",
        "    adjusted_count_attribute: true\n    policies:",
    );
    let ps = problems(&alone);
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert_eq!(
        (ps[0].problem.path.as_str(), ps[0].line),
        ("processors.tail_sampling.adjusted_count_attribute", Some(8))
    );
    assert!(ps[0].problem.message.contains("use_tracestate"), "{ps:#?}");
}

#[test]
fn use_tracestate_warns_about_salts_and_first_match() {
    let text = MINIMAL.replace(
        "    policies:\n      - { name: all, type: always_sample }",
        "    use_tracestate: true\n    sample_on_first_match: true\n    policies:\n      - { name: p, type: probabilistic, probabilistic: { sampling_percentage: 5, hash_salt: s } }\n      - { name: a, type: and, and: { and_sub_policy: [ { name: q, type: probabilistic, probabilistic: { hash_salt: t } } ] } }",
    );
    let c = load_with_env(&text, "ok.yaml", &env()).unwrap();
    let warned: Vec<(&str, Option<usize>)> = c
        .warnings
        .iter()
        .map(|w| (w.problem.path.as_str(), w.line))
        .collect();
    assert_eq!(
        warned,
        [
            ("processors.tail_sampling.policies[0].probabilistic.hash_salt", Some(11)),
            (
                "processors.tail_sampling.policies[1].and.and_sub_policy[0].probabilistic.hash_salt",
                Some(12)
            ),
            ("processors.tail_sampling.sample_on_first_match", Some(9)),
        ]
    );
}
