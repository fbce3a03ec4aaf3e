//! Keys on disk: a 16-byte digest of `name ‖ 0x00 ‖ value` for each indexed attribute value
//! of a trace (span or resource attributes), either HMAC-SHA256 under `hash_key` (truncated)
//! or xxh3-128 seeded with the archive's own random seed (`<dir>/seed`, created once, so
//! keys keep their meaning across restarts). A raw value never reaches an index structure.

use std::io::{Read, Write};
use std::path::Path;

use hmac::{KeyInit, Mac};

use super::files;
use crate::model::Span;
use crate::support::index::Key;
use crate::wire::AnyValueRef;

/// How a value becomes a key.
#[derive(Clone)]
pub(crate) enum Hasher {
    Seeded(u64),
    Hmac(Vec<u8>),
}

impl Hasher {
    /// The key of `name` = `value`.
    pub(crate) fn key(&self, name: &[u8], value: &[u8]) -> Key {
        match self {
            Hasher::Seeded(seed) => {
                let mut buf = Vec::with_capacity(name.len() + 1 + value.len());
                buf.extend_from_slice(name);
                buf.push(0);
                buf.extend_from_slice(value);
                Key(xxhash_rust::xxh3::xxh3_128_with_seed(&buf, *seed).to_le_bytes())
            }
            Hasher::Hmac(secret) => {
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
                    .expect("HMAC takes any key length");
                mac.update(name);
                mac.update(&[0]);
                mac.update(value);
                let digest = mac.finalize().into_bytes();
                Key(digest[..16].try_into().expect("SHA-256 is 32 bytes"))
            }
        }
    }

    /// The keys of one trace's spans: `(position in attributes, key)`, each once.
    pub(crate) fn keys_of(&self, attributes: &[String], spans: &[Span]) -> Vec<(u16, Key)> {
        let mut out: Vec<(u16, Key)> = Vec::new();
        let mut resources: Vec<u64> = Vec::new();
        let add = |k: &[u8], v: &[u8], out: &mut Vec<(u16, Key)>| {
            let Some(i) = attributes.iter().position(|a| a.as_bytes() == k) else {
                return;
            };
            let key = match AnyValueRef::parse(v) {
                AnyValueRef::Str(s) if !s.is_empty() => self.key(k, s.as_bytes()),
                AnyValueRef::Str(_) => return,
                other => {
                    let s = other.to_display_string();
                    if s.is_empty() {
                        return;
                    }
                    self.key(k, s.as_bytes())
                }
            };
            if !out.contains(&(i as u16, key)) {
                out.push((i as u16, key));
            }
        };
        for span in spans {
            let rid = span.resource().id;
            if !resources.contains(&rid) {
                resources.push(rid);
                let mut attrs = span.resource().resource_attributes();
                while let Some((k, v)) = attrs.next_raw() {
                    add(k, v, &mut out);
                }
            }
            let mut attrs = span.attributes();
            while let Some((k, v)) = attrs.next_raw() {
                add(k, v, &mut out);
            }
        }
        out
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
