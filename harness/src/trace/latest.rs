//! The newest trace of each target under a results directory, and what the
//! bench report says of them ([`crate::model::hood::Hood`]). A trace is a
//! directory holding `skeleton.json` (and `herd.json` when the tracepoint
//! pass ran): `RESULTS/<UTC>/trace/` as `harness trace` writes it, or one
//! folder per target as `harness under-the-hood` keeps them.

use std::path::{Path, PathBuf};

use super::herd::Herd;
use super::skeleton::Skeleton;
use super::twin_check;
use crate::model::hood::{Hood, HoodField, HoodPair, HoodTrace};
use crate::model::names;

/// One trace read back.
pub struct Found {
    /// Its directory.
    pub dir: PathBuf,
    /// skeleton.json.
    pub skeleton: Skeleton,
    /// herd.json, if the tracepoint pass ran.
    pub herd: Option<Herd>,
}

fn read<T: serde::de::DeserializeOwned>(p: &Path) -> Option<T> {
    serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
}

/// Every readable trace at most three folders below `root`.
pub fn all(root: &Path) -> Vec<Found> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let skel = dir.join("skeleton.json");
        if let Some(skeleton) = read::<Skeleton>(&skel) {
            let herd = read::<Herd>(&dir.join("herd.json"));
            out.push(Found {
                dir,
                skeleton,
                herd,
            });
            continue;
        }
        if depth == 3 {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            // Not through links: `latest` names a session already here.
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((e.path(), depth + 1));
            }
        }
    }
    out
}

/// The newest trace of each target (by when it was taken, then by path).
pub fn newest(root: &Path) -> Vec<Found> {
    let mut v = all(root);
    v.sort_by(|a, b| (b.skeleton.taken_unix_ms, &b.dir).cmp(&(a.skeleton.taken_unix_ms, &a.dir)));
    let mut seen: Vec<String> = Vec::new();
    v.retain(|f| {
        let fresh = !seen.contains(&f.skeleton.target);
        seen.push(f.skeleton.target.clone());
        fresh
    });
    // The catalogue's order, then the others by name.
    let rank = |t: &str| {
        names::STRATEGIES
            .iter()
            .chain(names::REFERENCES)
            .position(|n| *n == t)
            .unwrap_or(usize::MAX)
    };
    v.sort_by(|a, b| {
        (rank(&a.skeleton.target), &a.skeleton.target)
            .cmp(&(rank(&b.skeleton.target), &b.skeleton.target))
    });
    v
}

/// What the report says of the newest traces under `root` (`None`: none).
pub fn digest(root: &Path) -> Option<Hood> {
    let found = newest(root);
    if found.is_empty() {
        return None;
    }
    let rel = |d: &Path| {
        d.strip_prefix(root)
            .unwrap_or(d)
            .to_string_lossy()
            .to_string()
    };
    let traces = found
        .iter()
        .map(|f| {
            let s = &f.skeleton;
            HoodTrace {
                target: s.target.clone(),
                dir: rel(&f.dir),
                taken_unix_ms: s.taken_unix_ms,
                workers: s.workers,
                who_accepts: s.sequential.who_accepts.clone(),
                accept_eagain_per_conn: s.sequential.accept_eagain_per_conn,
                scm_rights_messages_per_conn: s.sequential.scm_rights_messages_per_conn,
                woken_per_conn: f.herd.as_ref().map(|h| h.woken_per_conn),
                slept_again_per_conn: f.herd.as_ref().map(|h| h.slept_again_per_conn),
            }
        })
        .collect();
    Some(Hood {
        root: root.display().to_string(),
        traces,
        pairs: pairs(&found),
    })
}

/// Each twin pair whose two sides were traced, checked field by field.
pub fn pairs(found: &[Found]) -> Vec<HoodPair> {
    let of = |t: &str| found.iter().find(|f| f.skeleton.target == t);
    names::TWINS
        .iter()
        .filter_map(|(reference, twin)| {
            let c = twin_check::check(&of(reference)?.skeleton, &of(twin)?.skeleton);
            let mut fields: Vec<HoodField> = c
                .agree
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let v = c.agreed_values.get(i).cloned().unwrap_or_default();
                    HoodField {
                        field: f.clone(),
                        reference: v.clone(),
                        twin: v,
                        verdict: "same".into(),
                        why: None,
                    }
                })
                .collect();
            for (d, verdict) in c
                .allowed
                .iter()
                .map(|d| (d, "allowed"))
                .chain(c.unexplained.iter().map(|d| (d, "different")))
            {
                fields.push(HoodField {
                    field: d.field.clone(),
                    reference: d.reference.clone(),
                    twin: d.twin.clone(),
                    verdict: verdict.into(),
                    why: d.why.clone(),
                });
            }
            Some(HoodPair {
                reference: reference.to_string(),
                twin: twin.to_string(),
                fields,
            })
        })
        .collect()
}
