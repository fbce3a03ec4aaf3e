//! Fake /proc and /sys/fs/cgroup trees: cgroup v2 and v1 limits, "max", nesting,
//! garbage; resident memory from statm; the budget derived from them.

use std::fs;
use std::path::Path;

use super::*;
use crate::config::{self, Config};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn host(dir: &tempfile::TempDir) -> Host {
    Host {
        proc_dir: dir.path().join("proc"),
        cgroup_dir: dir.path().join("cgroup"),
    }
}

fn v2(limit: &str) -> (tempfile::TempDir, Host) {
    let d = tempfile::tempdir().unwrap();
    let h = host(&d);
    write(&h.proc_dir, "self/cgroup", "0::/kubepods/pod1/c1\n");
    write(&h.cgroup_dir, "kubepods/pod1/c1/memory.max", limit);
    (d, h)
}

#[test]
fn cgroup_v2_limit_is_read_from_the_own_cgroup() {
    let (_d, h) = v2("268435456\n");
    let l = host::cgroup_limit(&h).unwrap().unwrap();
    assert_eq!(l.bytes, 256 << 20);
    assert!(l.file.ends_with("kubepods/pod1/c1/memory.max"));
}

#[test]
fn cgroup_v2_max_means_no_limit_but_a_parent_limit_binds() {
    let (_d, h) = v2("max\n");
    assert_eq!(host::cgroup_limit(&h).unwrap(), None);
    write(&h.cgroup_dir, "kubepods/pod1/memory.max", "1073741824\n");
    write(&h.cgroup_dir, "kubepods/memory.max", "4294967296\n");
    assert_eq!(host::cgroup_limit(&h).unwrap().unwrap().bytes, 1 << 30);
}

#[test]
fn cgroup_v2_garbage_is_an_error_naming_the_file() {
    let (_d, h) = v2("lots\n");
    let e = host::cgroup_limit(&h).unwrap_err().to_string();
    assert!(e.contains("memory.max") && e.contains("lots"), "{e}");
}

#[test]
fn cgroup_v1_limit_and_its_unlimited_value() {
    let d = tempfile::tempdir().unwrap();
    let h = host(&d);
    write(
        &h.proc_dir,
        "self/cgroup",
        "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n",
    );
    write(
        &h.cgroup_dir,
        "memory/docker/abc/memory.limit_in_bytes",
        "536870912\n",
    );
    assert_eq!(host::cgroup_limit(&h).unwrap().unwrap().bytes, 512 << 20);
    write(
        &h.cgroup_dir,
        "memory/docker/abc/memory.limit_in_bytes",
        "9223372036854771712\n",
    );
    assert_eq!(host::cgroup_limit(&h).unwrap(), None);
}

#[test]
fn a_hybrid_system_reads_the_v1_memory_hierarchy() {
    let d = tempfile::tempdir().unwrap();
    let h = host(&d);
    write(&h.proc_dir, "self/cgroup", "0::/\n4:memory:/svc\n");
    write(
        &h.cgroup_dir,
        "memory/svc/memory.limit_in_bytes",
        "209715200\n",
    );
    assert_eq!(host::cgroup_limit(&h).unwrap().unwrap().bytes, 200 << 20);
}

#[test]
fn cgroup_v1_mounted_at_the_container_root() {
    let d = tempfile::tempdir().unwrap();
    let h = host(&d);
    write(&h.proc_dir, "self/cgroup", "4:memory:/docker/abc\n");
    write(&h.cgroup_dir, "memory/memory.limit_in_bytes", "104857600\n");
    assert_eq!(host::cgroup_limit(&h).unwrap().unwrap().bytes, 100 << 20);
}

#[test]
fn no_cgroup_file_means_no_limit() {
    let d = tempfile::tempdir().unwrap();
    assert_eq!(host::cgroup_limit(&host(&d)).unwrap(), None);
}

#[test]
fn resident_memory_from_statm() {
    let d = tempfile::tempdir().unwrap();
    let h = host(&d);
    write(&h.proc_dir, "self/statm", "5000 2560 300 10 0 900 0\n");
    // No auxv in the fake tree: 4 KiB pages.
    assert_eq!(Rss::new(&h).read().unwrap(), 2560 * 4096);
    write(&h.proc_dir, "self/statm", "garbage");
    assert!(Rss::new(&h).read().is_err());
    // The real one reads something plausible.
    let real = Rss::new(&Host::system()).read().unwrap();
    assert!(real > 1 << 20 && real < 64 << 30, "{real}");
}

const BASE: &str = r#"
receivers: { otlp: { protocols: { grpc: { endpoint: "127.0.0.1:0" } } } }
processors:
  tail_sampling:
    policies: [ { name: all, type: always_sample } ]
"#;

fn load(extra_processors: &str, rest: &str) -> Config {
    let yaml =
        format!("{BASE}{extra_processors}exporters: {{ file: {{ path: /dev/null }} }}\n{rest}");
    config::load_str(&yaml, "t.yaml").unwrap_or_else(|e| panic!("{e}"))
}

const SMALL_SUPPORT: &str =
    "support:\n  index: { max_traces: 10000 }\n  complaints: { rescue_max_bytes: 8MiB }\n";

#[test]
fn without_any_limit_the_buffer_keeps_its_default() {
    let d = tempfile::tempdir().unwrap();
    let b = Budget::resolve(&load("", ""), &host(&d));
    assert_eq!((b.limit, b.soft), (None, None));
    assert_eq!(b.max_buffer_bytes, budget::DEFAULT_BUFFER_BYTES);
    assert_eq!(b.buffer_from, "default");
    assert!(b.lines()[0].contains("no limit"), "{:?}", b.lines());
}

#[test]
fn the_buffer_is_derived_from_the_cgroup_limit() {
    let (_d, h) = v2("1073741824\n");
    let c = load("", SMALL_SUPPORT);
    let b = Budget::resolve(&c, &h);
    let limit = (1u64 << 30) * 80 / 100;
    assert_eq!(b.limit, Some(limit));
    assert_eq!(b.soft, Some(limit - limit / 5));
    let reserved = budget::reserved(&c);
    // 32 MiB process, 2 × 16 MiB requests, 10 000 × 400 B index, 8 MiB rescue, caches.
    assert_eq!(
        reserved,
        (32 << 20) + (32 << 20) + 4_000_000 + (8 << 20) + 600_000 * 24
    );
    assert_eq!(
        b.max_buffer_bytes as u64,
        (b.soft.unwrap() - reserved) * 100 / 150
    );
    assert_eq!(b.buffer_from, "derived");
    assert!(b.warnings.is_empty(), "{:?}", b.warnings);
    let text = b.lines().join("\n");
    assert!(text.contains("80% of the cgroup limit 1024.0MiB"), "{text}");
    // `casefile check` shows the same figures.
    let summary = c.summary_with(&b).join("\n");
    assert!(
        summary.contains(&text) && summary.contains("buffer bound:"),
        "{summary}"
    );
}

#[test]
fn an_explicit_limit_and_buffer_win_over_the_cgroup() {
    let (_d, h) = v2("1073741824\n");
    let c = load(
        "  memory_limiter: { limit_mib: 300, spike_limit_mib: 50, check_interval: 1s }\n",
        SMALL_SUPPORT,
    );
    let b = Budget::resolve(&c, &h);
    assert_eq!((b.limit, b.soft), (Some(300 << 20), Some(250 << 20)));
    assert_eq!(b.check_interval, std::time::Duration::from_secs(1));
    assert_eq!(b.buffer_from, "derived");
    let yaml = format!(
        "{BASE}    max_buffer_bytes: 200MiB\n  memory_limiter: {{ limit_mib: 300 }}\nexporters: {{ file: {{ path: /dev/null }} }}\n"
    );
    let c = config::load_str(&yaml, "t.yaml").unwrap();
    let b = Budget::resolve(&c, &h);
    assert_eq!((b.max_buffer_bytes, b.buffer_from), (200 << 20, "set"));
    assert!(
        b.warnings
            .iter()
            .any(|w| w.contains("over the soft memory level")),
        "a buffer that cannot fit is pointed out: {:?}",
        b.warnings
    );
}

#[test]
fn percentages_refer_to_the_cgroup_limit() {
    let (_d, h) = v2("1073741824\n");
    let c = load(
        "  memory_limiter: { limit_percentage: 50, spike_limit_percentage: 10 }\n",
        SMALL_SUPPORT,
    );
    let b = Budget::resolve(&c, &h);
    assert_eq!(b.limit, Some(512 << 20));
    assert_eq!(b.soft, Some((512 << 20) - (1u64 << 30) / 10));
}

#[test]
fn a_garbage_cgroup_file_falls_back_with_a_warning() {
    let (_d, h) = v2("lots\n");
    let b = Budget::resolve(&load("", ""), &h);
    assert_eq!(b.limit, None);
    assert_eq!(b.max_buffer_bytes, budget::DEFAULT_BUFFER_BYTES);
    assert!(b.warnings[0].contains("lots"), "{:?}", b.warnings);
}

#[test]
fn a_budget_too_small_for_the_other_holders_is_pointed_out() {
    let (_d, h) = v2("134217728\n");
    let b = Budget::resolve(&load("", ""), &h);
    assert_eq!(b.max_buffer_bytes, budget::MIN_BUFFER_BYTES);
    assert!(
        b.warnings[0].contains("support.index.max_traces"),
        "{:?}",
        b.warnings
    );
}

#[test]
fn memory_limiter_mistakes_are_problems() {
    for (block, path) in [
        (
            "{ limit_mib: 100, limit_percentage: 50 }",
            "limit_percentage",
        ),
        (
            "{ limit_mib: 100, spike_limit_mib: 100 }",
            "spike_limit_mib",
        ),
        ("{ limit_percentage: 120 }", "limit_percentage"),
        ("{ check_interval: 0s, limit_mib: 100 }", "check_interval"),
        ("{ limit_gib: 1 }", "limit_gib"),
    ] {
        let yaml = format!(
            "{BASE}  memory_limiter: {block}\nexporters: {{ file: {{ path: /dev/null }} }}\n"
        );
        let e = config::load_str(&yaml, "t.yaml").unwrap_err().to_string();
        assert!(
            e.contains("processors.memory_limiter") && e.contains(path),
            "{block}: {e}"
        );
    }
}

/// What the shipped configs' comments promise: the pod limits they name fit their bounds.
#[test]
fn shipped_configs_fit_the_pod_limits_their_comments_name() {
    for (file, pod_limit) in [
        ("config/sidecar.yaml", 384u64 << 20),
        ("config/gateway.yaml", 13u64 << 30),
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let c = config::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let d = tempfile::tempdir().unwrap();
        let h = host(&d);
        write(&h.proc_dir, "self/cgroup", "0::/\n");
        write(&h.cgroup_dir, "memory.max", &pod_limit.to_string());
        let b = Budget::resolve(&c, &h);
        assert_eq!(b.buffer_from, "set", "{file}");
        assert!(b.warnings.is_empty(), "{file}: {:?}", b.warnings);
        let smaller = pod_limit / 100 * 85;
        write(&h.cgroup_dir, "memory.max", &smaller.to_string());
        let b = Budget::resolve(&c, &h);
        assert!(
            !b.warnings.is_empty(),
            "{file}: a smaller pod is warned about"
        );
    }
}

/// A member of a tier reserves what may wait for the other members.
#[test]
fn a_tier_member_reserves_its_forwarding_queue() {
    let alone = budget::reserved(&load("", SMALL_SUPPORT));
    let tier = format!("{SMALL_SUPPORT}cluster: {{ self: \"a:1\", peers: [{{ otlp: \"a:1\" }}, {{ otlp: \"b:1\" }}] }}\n");
    assert_eq!(
        budget::reserved(&load("", &tier)),
        alone + crate::cluster::MAX_QUEUED as u64
    );
}
