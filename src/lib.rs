//! casefile: a tail-sampling trace processor.
#![forbid(unsafe_code)]

pub mod config;
pub mod export;
pub mod model;
pub mod policy;
pub mod wire;
