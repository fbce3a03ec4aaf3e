//! `support:` (the index, complaints, API) and `support.archive`, read and checked.

use super::*;

impl Reader {
    pub(super) fn support(&mut self, s: raw::Support) -> Option<SupportCfg> {
        let archive = self.archive(s.archive, &s.index);
        let endpoint = s.api.endpoint.filter(|e| !e.trim().is_empty());
        if let Some(ep) = &endpoint {
            self.check_listen("support.api.endpoint", ep);
        }
        let tls = self.server_tls("support.api.tls", s.api.tls);
        if s.index.hash_values && s.index.hash_key.as_deref().is_none_or(str::is_empty) {
            self.problem(
                "support.index.hash_key",
                "hash_values needs a key, e.g. hash_key: ${env:CASEFILE_INDEX_KEY}",
            );
        }
        if s.index.attributes.len() > MAX_INDEXED_ATTRIBUTES {
            self.problem(
                "support.index.attributes",
                format!("at most {MAX_INDEXED_ATTRIBUTES} attributes"),
            );
        }
        if s.index
            .attributes
            .iter()
            .any(|a| a.is_empty() || a.contains('\0'))
        {
            // A key digests `name ‖ 0 ‖ value`: a name holding NUL could meet another's.
            self.problem(
                "support.index.attributes",
                "an attribute name is empty or holds a NUL character",
            );
        }
        if s.index.max_bytes.0 < 1 << 20 {
            self.problem(
                "support.index.max_bytes",
                "must be at least 1MiB (attributes: [] turns the index off)",
            );
        }
        if let Some(url) = &s.trace_url {
            if !url.contains("{trace_id}") {
                self.problem(
                    "support.trace_url",
                    "must contain {trace_id}, e.g. http://jaeger:16686/trace/{trace_id}",
                );
            }
        }
        let auth_token_file = s.api.auth_token_file.filter(|f| !f.is_empty());
        let mut auth_token = s.api.auth_token.filter(|t| !t.is_empty());
        if let Some(file) = &auth_token_file {
            if auth_token.is_some() {
                self.problem(
                    "support.api.auth_token_file",
                    "set auth_token or auth_token_file, not both",
                );
            }
            match std::fs::read_to_string(file) {
                Ok(t) if !t.trim().is_empty() => auth_token = Some(t.trim().to_owned()),
                Ok(_) => self.problem(
                    "support.api.auth_token_file",
                    format!("{file} is empty: the API would accept no token"),
                ),
                Err(e) => self.problem(
                    "support.api.auth_token_file",
                    format!("cannot read {file}: {e}"),
                ),
            }
        }
        Some(SupportCfg {
            api: ApiCfg {
                endpoint,
                auth_token,
                auth_token_file: auth_token_file.map(std::path::PathBuf::from),
                max_requests_per_second: s.api.max_requests_per_second,
                tls,
            },
            trace_url: s.trace_url,
            index: IndexCfg {
                attributes: s.index.attributes,
                retention: s.index.retention.0,
                max_traces: s.index.max_traces as usize,
                max_bytes: s.index.max_bytes.0 as usize,
                hash_values: s.index.hash_values,
                hash_key: s.index.hash_key,
            },
            complaints: ComplaintsCfg {
                watch_for: s.complaints.watch_for.0,
                rescue_window: s.complaints.rescue_window.0,
                rescue_max_bytes: s.complaints.rescue_max_bytes.0 as usize,
                store: s.complaints.store,
                max_rescue_traces: s.complaints.max_rescue_traces as usize,
            },
            archive,
        })
    }

    /// `support.archive`, with the index's attributes and hash key (the archive keys the
    /// same attributes, hashed the same way when `hash_values` is on).
    fn archive(&mut self, a: raw::Archive, index: &raw::Index) -> Option<ArchiveCfg> {
        const P: &str = "support.archive";
        let traces = match a.traces.as_str() {
            "all" => Traces::All,
            "dropped" => Traces::Dropped,
            other => {
                self.problem(
                    format!("{P}.traces"),
                    format!("{other:?} is not a choice: use all (every decided trace keeps its spans) or dropped (only dropped traces do)"),
                );
                Traces::All
            }
        };
        if a.retention.0.is_zero() {
            self.problem(
                format!("{P}.retention"),
                "must be more than 0 (remove dir to turn the archive off)",
            );
        }
        if a.max_bytes.0 < 16 << 20 {
            self.problem(format!("{P}.max_bytes"), "must be at least 16MiB");
        }
        let dir = a.dir.filter(|d| !d.trim().is_empty())?;
        Some(ArchiveCfg {
            dir: dir.into(),
            retention: a.retention.0,
            max_bytes: a.max_bytes.0,
            traces,
            attributes: index.attributes.clone(),
            hash_key: index
                .hash_values
                .then(|| index.hash_key.clone().unwrap_or_default().into_bytes()),
        })
    }
}
