//! Support layer: what makes casefile more than a Collector clone. `index` maps business
//! keys (user.id, session.id, ...) to trace summaries; `rescue` keeps dropped traces
//! compressed for a while so a late complaint can still bring them back; `store` keeps
//! complaint records on disk.

pub mod index;
pub mod rescue;
pub mod store;
