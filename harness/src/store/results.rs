//! The results directory: `results/<UTC timestamp>/` with `session.json`,
//! `runs/*.json` (each written atomically when its run ends), `summary.json`,
//! the report, and `results/latest` pointing at the newest session.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Writes `value` as pretty JSON to `path` atomically (temp file + rename).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), String> {
    outfile::write_json(path, value).map_err(String::from)
}

/// Writes `bytes` to `path` whole or not at all: a temporary file beside it,
/// synced, renamed over it (a crash leaves the old file or the new one, never
/// a torn one), by the rules of the `outfile` crate (a symlink is followed,
/// a device or FIFO written in place, never replaced).
///
/// The temporary file is `.NAME.tmp-PID-N`: hidden, and never ending in
/// `.json`, so a process killed mid-write (SIGKILL) leaves at most such a
/// file, which readers of a session ([`crate::store::session::read_runs`], `harness
/// report`) skip and which no later session uses (see [`is_temp_file`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    outfile::write(path, bytes).map_err(String::from)
}

/// Whether `path` is a temporary file of [`write_atomic`] (or of the same
/// scheme in loadgen and lab-server: `.NAME.tmp-...`), left behind only by a
/// writer that was killed before its rename.
pub fn is_temp_file(path: &Path) -> bool {
    outfile::is_temp_file(path)
}

/// UTC timestamp like `20261126T143012Z` (no separators that trouble shells).
pub fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let t = crate::model::time::UtcTime::from_unix_secs(secs);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// Creates `<root>/<stamp>/runs/`, refusing an unwritable root with advice.
pub fn create_session_dir(root: &Path) -> Result<PathBuf, String> {
    check_latest(root)?;
    std::fs::create_dir_all(root).map_err(|e| {
        format!("cannot create the results directory {}: {e}; pass --results DIR with a writable directory", root.display())
    })?;
    let mut dir = root.join(utc_stamp());
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = root.join(format!("{}-{n}", utc_stamp()));
    }
    std::fs::create_dir_all(dir.join("runs")).map_err(|e| {
        format!("cannot write in the results directory {}: {e}; pass --results DIR with a writable directory", root.display())
    })?;
    // Absolute from here on: reference servers get these paths in their
    // configuration and resolve relative ones against their own prefix.
    std::fs::canonicalize(&dir).map_err(|e| format!("cannot resolve {}: {e}", dir.display()))
}

/// Points `<root>/latest` at `dir` (a relative symlink, replaced atomically).
/// Anything at `latest` that is not a symlink is somebody else's and stays:
/// the session is then refused before it starts ([`check_latest`]).
pub fn update_latest(root: &Path, dir: &Path) -> Result<(), String> {
    check_latest(root)?;
    let name = dir.file_name().ok_or("session directory has no name")?;
    let tmp = root.join(format!(".latest.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(name, &tmp)
        .map_err(|e| format!("cannot link {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, root.join("latest"))
        .map_err(|e| format!("cannot update {}/latest: {e}", root.display()))
}

/// Refuses a `<root>/latest` that is not a symbolic link (ours are), so it
/// is never replaced.
pub fn check_latest(root: &Path) -> Result<(), String> {
    let latest = root.join("latest");
    match std::fs::symlink_metadata(&latest) {
        Ok(m) if !m.file_type().is_symlink() => Err(format!(
            "{} exists and is not the symlink the harness keeps there: move it away or pass --results DIR",
            latest.display()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_leaves_the_file_only_and_its_temp_name_is_hidden_and_not_json() {
        let dir = std::env::temp_dir().join(format!("results-atomic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("0001-x.json");
        write_json(&path, &serde_json::json!({"a": 1})).unwrap();
        write_json(&path, &serde_json::json!({"a": 2})).unwrap();
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("0001-x.json")]);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["a"], 2);
        // What a writer killed before its rename leaves.
        let tmp = dir.join(format!(".0001-x.json.tmp-{}-0", std::process::id()));
        assert!(is_temp_file(&tmp));
        assert!(tmp.extension().is_some_and(|x| x != "json"));
        assert!(!is_temp_file(&path));
        assert!(is_temp_file(Path::new(".loadgen.json.tmp-77")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stamp_looks_like_utc_iso_basic() {
        let s = utc_stamp();
        assert_eq!(s.len(), 16, "{s}");
        assert!(s.starts_with("20") && s.ends_with('Z') && s.as_bytes()[8] == b'T');
    }
}
