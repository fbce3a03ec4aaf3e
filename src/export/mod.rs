//! Exporters (stub).
pub mod config;
