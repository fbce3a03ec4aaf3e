//! Index keys: what the buffer's ingest reads from each trace's spans ([`KeyScan`], outside
//! any lock) and what a lookup hashes its query into ([`Keys::key`]), so both meet in the
//! index's store as the same fixed-size [`Key`]. The archive keys its traces with the same
//! [`KeyHash`], so a key on disk is the index's digest of the same value and the archive can
//! store the keys the index computed at ingest instead of reading the spans again.
//!
//! A key is 16 bytes: a digest of `name ‖ 0x00 ‖ value` (an attribute name never holds a
//! NUL byte: the config refuses one), either xxh3-128 under a 64-bit seed or, with
//! `hash_values`, HMAC-SHA256 under the configured key, truncated to 16 bytes (the raw value
//! is never held). It is a function of the name, the value and the seed or key only: it
//! keeps its meaning across reloads of the attribute list, and across restarts when the
//! seed is the archive's (kept in `<dir>/seed`; without an archive the seed is drawn at
//! start). Nothing checks a hit against the value: two distinct values share a key with
//! odds of about n / 2^128 for a lookup among n indexed values (a million values:
//! ~3·10^-33). The seed is random and secret, but xxh3 is not a cryptographic hash: someone
//! able to set their own indexed values and wanting to make their traces answer for
//! another value would at most add rows to a support search; `hash_values` (a keyed MAC)
//! rules even that out.

use std::sync::Arc;

use hmac::{KeyInit, Mac};

use crate::model::{Span, TraceId};
use crate::wire::AnyValueRef;

/// An index key: a 16-byte digest of one attribute's value (see the module header).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key(pub [u8; 16]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", hex::encode(self.0))
    }
}

impl std::hash::Hash for Key {
    /// The digest is uniform already: eight of its bytes are hash enough.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from_le_bytes(self.0[..8].try_into().expect("8 bytes")));
    }
}

/// How a value becomes a key, in the index and the archive alike (see the module header).
#[derive(Clone)]
pub enum KeyHash {
    /// xxh3-128 under this seed.
    Seeded(u64),
    /// `hash_values`: HMAC-SHA256 under the configured key (keyed once, cloned per value).
    Hmac(Arc<hmac::Hmac<sha2::Sha256>>),
}

impl KeyHash {
    /// A seeded hash with a seed drawn now (an index without an archive).
    pub fn random() -> KeyHash {
        KeyHash::Seeded(fastrand::u64(..))
    }

    /// HMAC-SHA256 under `secret`.
    pub fn hmac(secret: &[u8]) -> KeyHash {
        KeyHash::Hmac(Arc::new(
            hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length"),
        ))
    }

    /// The key of attribute `name` = `value`.
    pub fn key(&self, name: &[u8], value: &[u8]) -> Key {
        match self {
            KeyHash::Seeded(seed) => {
                // name ‖ 0 ‖ value, on the stack when short (most are).
                let n = name.len() + 1 + value.len();
                let mut stack = [0u8; 256];
                let mut heap = Vec::new();
                let buf: &mut [u8] = if n <= stack.len() {
                    &mut stack[..n]
                } else {
                    heap.resize(n, 0);
                    &mut heap
                };
                buf[..name.len()].copy_from_slice(name);
                buf[name.len()] = 0;
                buf[name.len() + 1..].copy_from_slice(value);
                Key(xxhash_rust::xxh3::xxh3_128_with_seed(buf, *seed).to_le_bytes())
            }
            KeyHash::Hmac(keyed) => {
                let mut mac = (**keyed).clone();
                mac.update(name);
                mac.update(&[0]);
                mac.update(value);
                let digest = mac.finalize().into_bytes();
                Key(digest[..16].try_into().expect("SHA-256 is 32 bytes"))
            }
        }
    }

    /// The key of one encoded `AnyValue` of attribute `name` (a string as its bytes,
    /// anything else as its display form), or None for an empty value (never indexed).
    pub fn key_of_raw(&self, name: &[u8], raw: &[u8]) -> Option<Key> {
        // A short string value as every SDK writes it: field 1, one length byte, the bytes.
        if let Some((&[0x0a, len], s)) = raw.split_first_chunk::<2>() {
            if len < 0x80 && s.len() == len as usize {
                return match std::str::from_utf8(s) {
                    Ok(s) if !s.is_empty() => Some(self.key(name, s.as_bytes())),
                    _ => None,
                };
            }
        }
        match AnyValueRef::parse(raw) {
            AnyValueRef::Str(s) => (!s.is_empty()).then(|| self.key(name, s.as_bytes())),
            other => {
                let s = other.to_display_string();
                (!s.is_empty()).then(|| self.key(name, s.as_bytes()))
            }
        }
    }
}

/// How values become keys: the indexed attribute names and the hash. One snapshot per
/// attribute list; a reload swaps in a new one.
pub(super) struct Keys {
    /// Indexed attribute names, in config order, each once.
    names: Vec<String>,
    hash: KeyHash,
}

impl Keys {
    pub(super) fn new(attributes: &[String], hash: KeyHash) -> Keys {
        let mut names: Vec<String> = Vec::with_capacity(attributes.len());
        for a in attributes {
            if !names.contains(a) {
                names.push(a.clone());
            }
        }
        Keys { names, hash }
    }

    pub(super) fn names(&self) -> &[String] {
        &self.names
    }

    pub(super) fn hash(&self) -> &KeyHash {
        &self.hash
    }

    /// The position of an indexed attribute name, compared as raw bytes.
    #[inline]
    fn position(&self, name: &[u8]) -> Option<usize> {
        self.names.iter().position(|n| {
            let n = n.as_bytes();
            n.len() == name.len() && n.first() == name.first() && n == name
        })
    }

    /// The key for a lookup of `attribute` = `value`, or None when it is not indexed.
    pub(super) fn query(&self, attribute: &str, value: &str) -> Option<Key> {
        self.position(attribute.as_bytes())?;
        Some(self.hash.key(attribute.as_bytes(), value.as_bytes()))
    }

    /// The key of one encoded `AnyValue` of the attribute at position `attr`.
    fn key_of_raw(&self, attr: usize, raw: &[u8]) -> Option<Key> {
        self.hash.key_of_raw(self.names[attr].as_bytes(), raw)
    }
}

/// Keys found in a batch: (trace, key), a trace's keys side by side.
#[derive(Debug, Default)]
pub struct Found {
    pub(super) pairs: Vec<(TraceId, Key)>,
}

impl Found {
    /// Adds a key (as [`super::Index::query_key`] gives it).
    pub fn push(&mut self, id: TraceId, key: Key) {
        self.pairs.push((id, key));
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Reads the indexed values of a batch, one trace (its spans side by side) at a time.
/// Resource attributes are keyed once per resource block; the values of other attributes
/// are not parsed; a value repeated on the spans of a trace (the same encoded bytes) is
/// parsed and hashed once.
pub struct KeyScan<'i, 'a> {
    /// The attribute list in force when the scan began (a reload does not change it).
    keys: Arc<Keys>,
    _index: std::marker::PhantomData<&'i ()>,
    /// Keys of the resource blocks met so far, by block id.
    resources: Vec<(u64, Vec<Key>)>,
    /// Encoded values of the current trace already keyed: (attribute, bytes).
    seen: Vec<(usize, &'a [u8])>,
    /// Keys of the current trace.
    found: Vec<Key>,
}

impl<'i, 'a> KeyScan<'i, 'a> {
    pub(super) fn new(keys: Arc<Keys>) -> KeyScan<'i, 'a> {
        KeyScan {
            keys,
            _index: std::marker::PhantomData,
            resources: Vec::new(),
            seen: Vec::new(),
            found: Vec::new(),
        }
    }

    /// Adds the keys of one trace's spans to `out`; true when it has any.
    pub fn trace(
        &mut self,
        id: TraceId,
        spans: impl IntoIterator<Item = &'a Span>,
        out: &mut Found,
    ) -> bool {
        let keys = &*self.keys;
        self.seen.clear();
        self.found.clear();
        let mut last_resource = u64::MAX;
        for span in spans {
            let rid = span.resource().id;
            if rid != last_resource {
                last_resource = rid;
                let r = match self.resources.iter().rposition(|(id, _)| *id == rid) {
                    Some(i) => i,
                    None => {
                        let mut ks = Vec::new();
                        let mut attrs = span.resource().resource_attributes();
                        while let Some((k, v)) = attrs.next_raw() {
                            if let Some(key) = keys.position(k).and_then(|i| keys.key_of_raw(i, v))
                            {
                                add_unique(&mut ks, key);
                            }
                        }
                        self.resources.push((rid, ks));
                        self.resources.len() - 1
                    }
                };
                for &key in &self.resources[r].1 {
                    add_unique(&mut self.found, key);
                }
            }
            let mut attrs = span_attributes(span);
            while let Some((k, v)) = attrs.next_raw() {
                let Some(i) = keys.position(k) else { continue };
                if self.seen.iter().any(|&(j, seen)| j == i && seen == v) {
                    continue;
                }
                self.seen.push((i, v));
                if let Some(key) = keys.key_of_raw(i, v) {
                    add_unique(&mut self.found, key);
                }
            }
        }
        out.pairs.extend(self.found.iter().map(|&k| (id, k)));
        !self.found.is_empty()
    }
}

/// The span's attributes, the walk starting past the trace id the decoder puts first.
fn span_attributes(span: &Span) -> crate::wire::Attributes<'_> {
    match span.bytes.get(18..) {
        Some(rest) if span.bytes[..2] == crate::model::TRACE_ID_PREFIX => {
            crate::wire::Attributes::new(rest, 9)
        }
        _ => span.attributes(),
    }
}

fn add_unique(keys: &mut Vec<Key>, key: Key) {
    if !keys.contains(&key) {
        keys.push(key);
    }
}
