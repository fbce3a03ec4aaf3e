//! What the kernel says about memory: the cgroup memory limit of this process (v2
//! `memory.max`, v1 `memory.limit_in_bytes`, found through `/proc/self/cgroup`), the
//! host's total memory and this process's resident set. Every file is read under a
//! [`Host`]'s directories, so tests point them at fake trees.

use std::path::{Path, PathBuf};

use super::MemoryError;

/// A limit at or above this is "no limit" (cgroup v1 writes 2^63 rounded to a page).
const UNLIMITED_FROM: u64 = 1 << 60;

/// Where the kernel's files are: `/proc` and `/sys/fs/cgroup` on a real system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// `/proc`: `self/cgroup`, `self/statm`, `self/auxv`, `meminfo`.
    pub proc_dir: PathBuf,
    /// `/sys/fs/cgroup`: v2 files at the top, v1 under `memory/`.
    pub cgroup_dir: PathBuf,
}

impl Host {
    pub fn system() -> Host {
        Host {
            proc_dir: PathBuf::from("/proc"),
            cgroup_dir: PathBuf::from("/sys/fs/cgroup"),
        }
    }
}

/// A memory limit found on the host and the file that states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub bytes: u64,
    /// The file that says so, for messages.
    pub file: PathBuf,
}

fn read(path: &Path) -> Result<String, MemoryError> {
    std::fs::read_to_string(path).map_err(|source| MemoryError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads a limit file: a number of bytes, or `max` (none); anything else is an error.
fn limit_file(path: &Path) -> Result<Option<u64>, MemoryError> {
    let text = read(path)?;
    let t = text.trim();
    if t == "max" {
        return Ok(None);
    }
    match t.parse::<u64>() {
        Ok(n) if n >= UNLIMITED_FROM => Ok(None),
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(MemoryError::Garbage {
            path: path.to_owned(),
            text: t.chars().take(40).collect(),
        }),
    }
}

/// The smallest limit set on `dir` or any of its parents up to `top` (a parent's limit
/// binds its children too). A missing file means no limit at that level.
fn tightest(top: &Path, cgroup_path: &str, file: &str) -> Result<Option<Limit>, MemoryError> {
    let mut best: Option<Limit> = None;
    let mut rel = PathBuf::from(cgroup_path.trim_start_matches('/'));
    loop {
        let path = top.join(&rel).join(file);
        if path.exists() {
            if let Some(bytes) = limit_file(&path)? {
                if best.as_ref().is_none_or(|b| bytes < b.bytes) {
                    best = Some(Limit { bytes, file: path });
                }
            }
        }
        if !rel.pop() {
            return Ok(best);
        }
    }
}

/// The memory limit of this process's cgroup: v1's `memory` hierarchy when a line of
/// `/proc/self/cgroup` names it (hybrid systems list a controller-less `0::` line too),
/// else v2's `0::` line. `Ok(None)`: no cgroup, or no limit.
pub fn cgroup_limit(host: &Host) -> Result<Option<Limit>, MemoryError> {
    let own = host.proc_dir.join("self/cgroup");
    let text = match std::fs::read_to_string(&own) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(MemoryError::Read { path: own, source }),
    };
    let lines: Vec<(&str, &str, &str)> = text
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            Some((parts.next()?, parts.next()?, parts.next()?))
        })
        .collect();
    if let Some((_, _, path)) = lines
        .iter()
        .find(|(_, controllers, _)| controllers.split(',').any(|c| c == "memory"))
    {
        let top = host.cgroup_dir.join("memory");
        // Inside a container the hierarchy is often mounted at the container's own
        // cgroup, so the path named in /proc/self/cgroup does not exist below it.
        let path = if top.join(path.trim_start_matches('/')).is_dir() {
            path
        } else {
            "/"
        };
        return tightest(&top, path, "memory.limit_in_bytes");
    }
    match lines
        .iter()
        .find(|(id, controllers, _)| *id == "0" && controllers.is_empty())
    {
        Some((_, _, path)) => tightest(&host.cgroup_dir, path, "memory.max"),
        None => Ok(None),
    }
}

/// The host's memory (`MemTotal` of `/proc/meminfo`).
pub fn host_total(host: &Host) -> Result<u64, MemoryError> {
    let path = host.proc_dir.join("meminfo");
    let text = read(&path)?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or(MemoryError::Garbage {
            path,
            text: "no MemTotal line".into(),
        })
}

/// Reads this process's resident set from `/proc/self/statm` (a few dozen bytes: cheap
/// enough to read every check interval).
#[derive(Debug, Clone)]
pub struct Rss {
    statm: PathBuf,
    /// statm counts pages; read once from the auxiliary vector.
    page_size: u64,
}

impl Rss {
    pub fn new(host: &Host) -> Rss {
        Rss {
            statm: host.proc_dir.join("self/statm"),
            page_size: page_size(&host.proc_dir.join("self/auxv")).unwrap_or(4096),
        }
    }

    /// Resident bytes now.
    pub fn read(&self) -> Result<u64, MemoryError> {
        let text = read(&self.statm)?;
        text.split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u64>().ok())
            .map(|pages| pages * self.page_size)
            .ok_or_else(|| MemoryError::Garbage {
                path: self.statm.clone(),
                text: text.trim().chars().take(40).collect(),
            })
    }
}

/// `AT_PAGESZ` from the auxiliary vector (pairs of native-endian words).
fn page_size(auxv: &Path) -> Option<u64> {
    const AT_PAGESZ: u64 = 6;
    let bytes = std::fs::read(auxv).ok()?;
    bytes
        .chunks_exact(16)
        .map(|p| {
            let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().expect("8 bytes"));
            (word(&p[..8]), word(&p[8..]))
        })
        .find(|(k, _)| *k == AT_PAGESZ)
        .map(|(_, v)| v)
        .filter(|v| v.is_power_of_two())
}
