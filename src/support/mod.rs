//! Support layer: what makes casefile more than a Collector clone. `index` maps business
//! keys (user.id, session.id, ...) to trace summaries; `rescue` keeps dropped traces
//! compressed for a while so a late complaint can still bring them back; `store` keeps
//! complaint records on disk.

pub mod complaints;
pub mod index;
pub mod marks;
pub mod rescue;
pub mod store;
pub mod time;

use std::sync::Arc;

/// What the buffer calls into as it ingests and decides; each part is optional.
#[derive(Default, Clone)]
pub struct Hooks {
    pub index: Option<Arc<index::Index>>,
    pub rescue: Option<Arc<rescue::RescueBuffer>>,
    pub marks: Arc<marks::Marks>,
    /// `support.archive`: every decided trace on disk, behind the index and the ring.
    pub archive: Option<crate::archive::Archive>,
}

impl Hooks {
    /// The parts `support:` turns on: the index unless `index.attributes` is empty, the
    /// rescue buffer unless `rescue_window` or `rescue_max_bytes` is 0.
    pub fn from_config(cfg: &crate::config::SupportCfg) -> Hooks {
        let c = &cfg.complaints;
        Hooks {
            index: (!cfg.index.attributes.is_empty())
                .then(|| Arc::new(index::Index::new(&cfg.index))),
            rescue: (!c.rescue_window.is_zero() && c.rescue_max_bytes > 0).then(|| {
                Arc::new(rescue::RescueBuffer::new(
                    c.rescue_window,
                    c.rescue_max_bytes,
                ))
            }),
            marks: Arc::default(),
            archive: None,
        }
    }

    /// Opens `support.archive` when it is configured. An archive that cannot open (a
    /// directory it may not create, a disk that fails) is logged and left off: it is a
    /// feature, the pipeline runs without it.
    pub fn with_archive(mut self, cfg: Option<&crate::archive::ArchiveCfg>) -> Hooks {
        let Some(cfg) = cfg else { return self };
        match crate::archive::Archive::open(cfg.clone()) {
            Ok(a) => {
                // One key scheme: the index hashes with the archive's seed (or both with
                // `hash_key`), so a key on disk is the index's digest of the same value.
                if let Some(ix) = &self.index {
                    ix.set_key_hash(a.key_hash());
                }
                // The ring holds what the archive cannot write (a failing disk).
                if let Some(ring) = &self.rescue {
                    a.spill_to(Arc::clone(ring));
                }
                let st = a.stats();
                tracing::info!(dir = %cfg.dir.display(), segments = st.segments, bytes = st.bytes, "archive opened");
                self.archive = Some(a);
            }
            Err(e) => {
                tracing::error!(dir = %cfg.dir.display(), error = %e, "the archive cannot open; running without it (lookups answer from memory only)");
            }
        }
        self
    }
}

/// Opens `support.complaints.store`, or an in-memory store (records lost at exit) when none
/// is configured.
pub fn open_store(
    cfg: &crate::config::ComplaintsCfg,
) -> Result<Arc<store::ComplaintStore>, store::StoreError> {
    match &cfg.store {
        Some(path) => store::ComplaintStore::open(std::path::Path::new(path)).map(Arc::new),
        None => {
            tracing::warn!("support.complaints.store is not set: complaint records are kept in memory and lost at exit");
            store::ComplaintStore::in_memory().map(Arc::new)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Hooks;

    /// With the archive on, the index hashes with the archive's seed: a key on disk is the
    /// index's digest of the same value, across restarts too.
    #[test]
    fn the_index_hashes_with_the_archives_seed() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\nprocessors:\n  tail_sampling:\n    policies:\n      - {{ name: all, type: always_sample }}\nexporters:\n  file: {{ path: /tmp/out.jsonl }}\nsupport:\n  archive: {{ dir: {} }}\n",
            dir.path().join("a").display()
        );
        let cfg = crate::config::load_with_env(&text, "t.yaml", &std::collections::HashMap::new())
            .unwrap();
        let key = |h: &Hooks| {
            let ix = h.index.as_ref().unwrap().query_key("user.id", "u-1");
            let ar = h.archive.as_ref().unwrap().key("user.id", "u-1");
            assert_eq!(ix, Some(ar), "one key scheme");
            h.archive.as_ref().unwrap().close();
            ar
        };
        let open = || Hooks::from_config(&cfg.support).with_archive(cfg.support.archive.as_ref());
        let first = key(&open());
        assert_eq!(
            key(&open()),
            first,
            "the seed is the archive's, kept on disk"
        );
    }
}
