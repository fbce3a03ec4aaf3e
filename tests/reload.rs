//! Live reload in process: new policies apply to traces already buffered, a config whose
//! policies do not build is refused and the running ones stay, and settings that need a
//! restart are named.

mod common;

use casefile::fixture::{self, Gen, Shape};
use casefile::policy::PolicyCfg;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_policies_decide_buffered_traces_and_bad_ones_are_refused() {
    let (down, addr) = Downstream::start().await;
    let started = config(addr, "1h", "");
    let daemon = start(started.clone()).await;
    let mut client = client(&daemon).await;
    let mut g = Gen::new(51);
    let plain = g.trace(Shape::default(), 3);
    client
        .export(fixture::request_for(std::slice::from_ref(&plain)))
        .await
        .unwrap();
    assert_eq!(daemon.buffer.held_traces(), 1);

    // A config whose policies do not build is refused; the running policies stay.
    let mut bad = started.clone();
    bad.tail_sampling.policies = vec![serde_yaml_ng::from_str::<PolicyCfg>(
        "{ name: o, type: ottl_condition, ottl_condition: {} }",
    )
    .unwrap()];
    let err = daemon.reload(&started, &bad).unwrap_err();
    assert!(err.to_string().contains("ottl_condition"), "{err}");
    assert_eq!(
        daemon.buffer.policies().names(),
        ["errors", "slow", "premium"]
    );

    // Keep everything from now on, and say what waits for a restart.
    let mut new = started.clone();
    new.tail_sampling.policies =
        vec![
            serde_yaml_ng::from_str::<PolicyCfg>("{ name: everything, type: always_sample }")
                .unwrap(),
        ];
    new.exporters.clear();
    let r = daemon.reload(&started, &new).unwrap();
    assert_eq!(r.policies, ["everything"]);
    assert_eq!(r.needs_restart, ["exporters"]);
    assert_eq!(daemon.buffer.held_traces(), 1, "nothing buffered is lost");

    daemon.shutdown().await;
    let id = hex::encode(plain.trace_id);
    let got = down.spans_by_trace();
    assert_eq!(
        got.get(&id).map(Vec::len),
        Some(3),
        "the buffered plain trace is kept by the new policy"
    );
    assert_eq!(
        root_attr(&got[&id], "casefile.policy").as_deref(),
        Some("everything")
    );
}
