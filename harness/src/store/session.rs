//! Reading a session directory back: `session.json` and the run files.

use crate::model::record::{RunRecord, RUN_SCHEMAS_READ};
use crate::model::session::{Session, SESSION_SCHEMA};

/// Reads a session directory's `session.json`.
pub fn read_session(dir: &std::path::Path) -> Result<Session, String> {
    let path = dir.join("session.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{} is not a results directory of the harness ({}: {e})",
            dir.display(),
            path.display()
        )
    })?;
    let s: Session = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if s.schema != SESSION_SCHEMA {
        return Err(format!(
            "{}: schema {:?}, expected {SESSION_SCHEMA:?}",
            path.display(),
            s.schema
        ));
    }
    Ok(s)
}

/// Reads every run file of a session directory, in run order.
pub fn read_runs(dir: &std::path::Path) -> Result<Vec<RunRecord>, String> {
    let runs = dir.join("runs");
    let mut files: Vec<_> = std::fs::read_dir(&runs)
        .map_err(|e| format!("cannot read {}: {e}", runs.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            let r: RunRecord =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
            if !RUN_SCHEMAS_READ.contains(&r.schema.as_str()) {
                return Err(format!(
                    "{}: schema {:?}, expected one of {:?}",
                    p.display(),
                    r.schema,
                    RUN_SCHEMAS_READ
                ));
            }
            Ok(r)
        })
        .collect()
}
