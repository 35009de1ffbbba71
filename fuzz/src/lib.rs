//! Fuzz models for prefork-lab's parsers: the worker's request side
//! (`lab-common`'s `http` + `work`, driven as `conn.rs` does) and loadgen's
//! incremental response reader (driven as `engine.rs` does).
//!
//! The same files are compiled into the normal test suites by `#[path]`
//! (`strategies/common/tests/parse_regressions.rs`,
//! `loadgen/tests/parse_regressions.rs`), so the kept crash inputs in
//! `regressions/` are checked by `cargo test` on stable.

pub mod chunks;
pub mod request_model;
pub mod response_model;
