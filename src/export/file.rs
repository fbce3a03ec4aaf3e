//! `file` exporter: one OTLP/JSON ExportTraceServiceRequest per line, appended.

use std::path::Path;

use tokio::io::{AsyncWriteExt, BufWriter};

use super::config::FileCfg;
use super::{ExportBatch, ExportError};
use crate::wire::json::request_to_json;

pub(super) struct FileSink {
    name: String,
    flush_every_line: bool,
    /// One writer at a time (the exporter runs one worker anyway), so lines never interleave.
    out: tokio::sync::Mutex<BufWriter<tokio::fs::File>>,
}

impl FileSink {
    /// Creates the parent directories and opens `path` for appending.
    pub(super) fn open(name: &str, cfg: &FileCfg) -> Result<FileSink, ExportError> {
        let open_err = |source| ExportError::OpenFile {
            name: name.to_owned(),
            path: cfg.path.clone(),
            source,
        };
        if cfg.path.trim().is_empty() {
            return Err(ExportError::Config {
                name: name.to_owned(),
                reason: "path is empty".into(),
            });
        }
        let path = Path::new(&cfg.path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(open_err)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(open_err)?;
        Ok(FileSink {
            name: name.to_owned(),
            flush_every_line: cfg.flush_every_line,
            out: tokio::sync::Mutex::new(BufWriter::with_capacity(
                256 * 1024,
                tokio::fs::File::from_std(file),
            )),
        })
    }

    pub(super) async fn export(&self, batch: &ExportBatch) -> Result<(), ExportError> {
        let mut line = request_to_json(&batch.request)?;
        line.push('\n');
        let mut out = self.out.lock().await;
        out.write_all(line.as_bytes()).await?;
        if self.flush_every_line {
            out.flush().await?;
        }
        Ok(())
    }

    /// Writes out what is buffered (when the queue runs empty and at shutdown).
    pub(super) async fn flush(&self) {
        if let Err(e) = self.out.lock().await.flush().await {
            tracing::error!(exporter = %self.name, error = %e, "cannot flush the export file");
        }
    }
}
