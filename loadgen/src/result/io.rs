//! Result files: written by the rules of the `outfile` crate, read back with
//! their schema checked.

use std::path::Path;

use outfile::Dash;
pub use outfile::Output;

use super::{LoadResult, SCHEMA, SCHEMA_V1};

/// Checks before a run that `--json PATH` can be written (`-` is standard
/// output), without creating it; see the `outfile` crate for the rules.
pub fn check_output(path: &Path) -> Result<Output, String> {
    Ok(Output::check("--json", path, Dash::Stdout)?)
}

/// Writes `r` as pretty JSON to `out`: a file whole or not at all, a device,
/// FIFO or standard output in place (one write, not one per token).
pub fn write_json(r: &LoadResult, out: &Output) -> Result<(), String> {
    Ok(out.write_json(r)?)
}

/// Reads a result file, checking its schema.
pub fn read_json(path: &Path) -> Result<LoadResult, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    match v.get("schema").and_then(|s| s.as_str()) {
        Some(SCHEMA | SCHEMA_V1) => {}
        Some(other) => {
            return Err(format!(
                "{}: schema {other:?}, expected {SCHEMA:?} (or {SCHEMA_V1:?})",
                path.display()
            ))
        }
        None => {
            return Err(format!(
                "{} is not a loadgen result (no \"schema\")",
                path.display()
            ))
        }
    }
    serde_json::from_value(v)
        .map_err(|e| format!("{} is not a valid loadgen result: {e}", path.display()))
}
