//! The record format of a rescue block: the block's dictionary of resource and scope
//! messages (each once, by content) and the span records `resource index, scope index,
//! length, span bytes` that refer to it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use bytes::Bytes;

use crate::model::Shared;
use crate::wire::read_varint;

/// `Hasher` for `Shared::id`, a process-wide counter (not chosen by clients).
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// The resource and scope messages of a staging block, once each by content.
pub(super) struct Dict {
    /// `Shared::id` → index: spans of one batch share their blocks, so this usually hits.
    pub(super) by_id: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    pub(super) by_content: HashMap<(Bytes, Bytes), u32>,
    pub(super) items: Vec<Arc<Shared>>,
    pub(super) bytes: usize,
    /// Last `(Shared::id, index)` looked up, for resources (0) and scopes (1): spans of a
    /// trace come grouped by resource, so this usually hits.
    pub(super) last: [(u64, u32); 2],
}

impl Default for Dict {
    fn default() -> Dict {
        Dict {
            by_id: HashMap::default(),
            by_content: HashMap::new(),
            items: Vec::new(),
            bytes: 0,
            // Ids are handed out from 1 up: no span has this one.
            last: [(u64::MAX, 0); 2],
        }
    }
}

impl Dict {
    #[inline]
    pub(super) fn index(&mut self, shared: &Arc<Shared>, slot: usize) -> u32 {
        if self.last[slot].0 == shared.id {
            return self.last[slot].1;
        }
        let i = self.lookup(shared);
        self.last[slot] = (shared.id, i);
        i
    }

    pub(super) fn lookup(&mut self, shared: &Arc<Shared>) -> u32 {
        if let Some(i) = self.by_id.get(&shared.id) {
            return *i;
        }
        let key = (shared.message.clone(), shared.schema_url.clone());
        let i = match self.by_content.get(&key) {
            Some(i) => *i,
            None => {
                let i = self.items.len() as u32;
                self.items.push(Arc::clone(shared));
                self.bytes += shared.size();
                self.by_content.insert(key, i);
                i
            }
        };
        self.by_id.insert(shared.id, i);
        i
    }
}

/// A span read back: its resource, its scope, its bytes.
pub(super) type Record = (Arc<Shared>, Arc<Shared>, Box<[u8]>);

/// Appends the span records of one trace chunk, resolving their dictionary indexes.
pub(super) fn read_records(mut buf: &[u8], dict: &[Arc<Shared>], out: &mut Vec<Record>) {
    while !buf.is_empty() {
        let mut pos = 0;
        let (Ok(r), Ok(c), Ok(len)) = (
            read_varint(buf, &mut pos),
            read_varint(buf, &mut pos),
            read_varint(buf, &mut pos),
        ) else {
            tracing::error!("rescue: corrupt record");
            return;
        };
        let end = pos + len as usize;
        let (Some(r), Some(c), Some(bytes)) = (
            dict.get(r as usize),
            dict.get(c as usize),
            buf.get(pos..end),
        ) else {
            tracing::error!("rescue: corrupt record");
            return;
        };
        out.push((Arc::clone(r), Arc::clone(c), Box::from(bytes)));
        buf = &buf[end..];
    }
}
