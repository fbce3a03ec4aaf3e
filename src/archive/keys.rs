//! Keys on disk: for each indexed attribute value of a trace (span or resource
//! attributes), the index's 16-byte digest of `name ‖ 0x00 ‖ value` ([`KeyHash`]): HMAC-SHA256
//! under `hash_key` (truncated) with `hash_values`, else xxh3-128 seeded with the archive's
//! own random seed (`<dir>/seed`, created once, so keys keep their meaning across restarts;
//! the index hashes with the same seed while the archive is on). A raw value never reaches
//! an index structure.

use std::io::{Read, Write};
use std::path::Path;

use super::files;
use super::pack::varint;
use crate::model::Span;
use crate::support::index::Key;
pub(crate) use crate::support::index::KeyHash as Hasher;

/// What the archive reads of a trace's spans (the index's [`KeyHash`] itself lives with
/// the index; this is the archive's walk of a whole trace).
impl Hasher {
    /// The keys of one trace's spans: `(position in attributes, key)`, each once. A value
    /// repeated on the spans (the same encoded bytes) is hashed once, and each resource
    /// block is read once for all the traces of a batch (`resources`, by block id: ids are
    /// never reused).
    pub(crate) fn keys_of(
        &self,
        attributes: &[String],
        spans: &[Span],
        resources: &mut ResourceKeys,
    ) -> Vec<(u16, Key)> {
        let mut out = Vec::new();
        self.keys_into(attributes, spans, resources, &mut out);
        out
    }

    /// [`Hasher::keys_of`] into `out` (cleared first).
    pub(crate) fn keys_into<'s>(
        &self,
        attributes: &[String],
        spans: &'s [Span],
        resources: &mut ResourceKeys,
        out: &mut Vec<(u16, Key)>,
    ) {
        out.clear();
        let mut seen = Seen::default();
        let mut last = u64::MAX;
        let position = |k: &[u8]| attributes.iter().position(|a| a.as_bytes() == k);
        for span in spans {
            let rid = span.resource().id;
            if rid != last {
                last = rid;
                if resources.len() >= 4096 {
                    resources.clear();
                }
                let keys = resources.entry(rid).or_insert_with(|| {
                    let mut keys = Vec::new();
                    let mut attrs = span.resource().resource_attributes();
                    while let Some((k, v)) = attrs.next_raw() {
                        if let Some(i) = position(k) {
                            if let Some(key) = self.key_of_raw(k, v) {
                                add(&mut keys, (i as u16, key));
                            }
                        }
                    }
                    keys
                });
                for k in keys.iter() {
                    add(out, *k);
                }
            }
            let mut each = |k: &'s [u8], v: &'s [u8]| {
                let Some(i) = position(k) else { return };
                if seen.contains(i, v) {
                    return;
                }
                seen.push(i, v);
                if let Some(key) = self.key_of_raw(k, v) {
                    add(out, (i as u16, key));
                }
            };
            if !span_attributes(&span.bytes, &mut each) {
                // Not as SDKs write spans: the general walk (what the fast one saw is
                // seen again, and skipped).
                let mut attrs = span.attributes();
                while let Some((k, v)) = attrs.next_raw() {
                    each(k, v);
                }
            }
        }
    }
}

/// (attribute position, encoded value) pairs already hashed for a trace: on the stack for
/// the few a trace has.
#[derive(Default)]
struct Seen<'s> {
    few: [(usize, &'s [u8]); 8],
    n: usize,
    more: Vec<(usize, &'s [u8])>,
}

impl<'s> Seen<'s> {
    fn contains(&self, i: usize, v: &[u8]) -> bool {
        self.few[..self.n]
            .iter()
            .chain(&self.more)
            .any(|&(j, w)| j == i && w == v)
    }

    fn push(&mut self, i: usize, v: &'s [u8]) {
        if self.n < self.few.len() {
            self.few[self.n] = (i, v);
            self.n += 1;
        } else {
            self.more.push((i, v));
        }
    }
}

/// Calls `each` with the (key, encoded value) of every span attribute (field 9) laid out
/// as SDKs write them, in order. False as soon as anything is not (a group, a field the
/// wire reader refuses, an attribute in another layout): the caller then walks the span
/// again with [`crate::wire::Attributes`], which reads the same attributes first.
#[inline]
fn span_attributes<'s>(b: &'s [u8], each: &mut impl FnMut(&'s [u8], &'s [u8])) -> bool {
    let mut pos = 0usize;
    while pos < b.len() {
        let Some(tag) = varint(b, &mut pos) else {
            return false;
        };
        if tag >> 3 == 0 || tag > u64::from(u32::MAX) {
            return false;
        }
        match tag & 7 {
            0 => {
                if varint(b, &mut pos).is_none() {
                    return false;
                }
            }
            1 => pos += 8,
            2 => {
                let Some(len) = varint(b, &mut pos) else {
                    return false;
                };
                let Some(v) = usize::try_from(len)
                    .ok()
                    .and_then(|len| b.get(pos..pos.checked_add(len)?))
                else {
                    return false;
                };
                pos += v.len();
                if tag == (9 << 3 | 2) {
                    // key (field 1) then value (field 2), each under 128 bytes.
                    let Some((&[0x0a, kl], rest)) = v.split_first_chunk::<2>() else {
                        return false;
                    };
                    let kl = kl as usize;
                    if kl >= 0x80 || rest.len() < kl + 2 {
                        return false;
                    }
                    let (key, rest) = rest.split_at(kl);
                    let (&[0x12, vl], value) = rest.split_first_chunk::<2>().expect("checked")
                    else {
                        return false;
                    };
                    if vl >= 0x80 || value.len() != vl as usize {
                        return false;
                    }
                    each(key, value);
                }
            }
            5 => pos += 4,
            _ => return false,
        }
    }
    pos == b.len()
}

/// Keys of resource blocks, by block id.
pub(crate) type ResourceKeys = foldhash::HashMap<u64, Vec<(u16, Key)>>;

fn add(keys: &mut Vec<(u16, Key)>, k: (u16, Key)) {
    if !keys.contains(&k) {
        keys.push(k);
    }
}

/// The archive's xxh3 seed: read from `<dir>/seed`, or drawn and written there (0600) the
/// first time.
pub(crate) fn load_seed(dir: &Path, create: bool) -> std::io::Result<Option<u64>> {
    let path = dir.join("seed");
    match std::fs::File::open(&path) {
        Ok(mut f) => {
            let mut b = [0u8; 8];
            f.read_exact(&mut b)?;
            Ok(Some(u64::from_le_bytes(b)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let seed = fastrand::u64(..)
                ^ xxhash_rust::xxh3::xxh3_64(
                    &format!("{:?}", std::time::SystemTime::now()).into_bytes(),
                );
            let tmp = dir.join("seed.tmp");
            let mut f = files::create(&tmp)?;
            f.write_all(&seed.to_le_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            Ok(Some(seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
