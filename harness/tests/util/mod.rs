//! Helpers shared by the harness's integration tests.
#![allow(dead_code)] // each test file uses a subset

use std::path::PathBuf;
use std::process::Command;

/// The harness binary, with `lab-server` and `loadgen` beside it: `cargo
/// test --workspace` builds them, `cargo test -p harness` may not, so build
/// them once if they are missing (same target directory and profile).
pub fn ensure_siblings() -> PathBuf {
    let harness = PathBuf::from(env!("CARGO_BIN_EXE_harness"));
    let dir = harness.parent().expect("bin dir").to_path_buf();
    if !dir.join("lab-server").is_file() || !dir.join("loadgen").is_file() {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "lab-server", "-p", "loadgen"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        cmd.env("CARGO_TARGET_DIR", dir.parent().expect("target dir"));
        let st = cmd.status().expect("cargo build");
        assert!(st.success(), "building lab-server and loadgen failed");
    }
    harness
}

/// A fresh, empty directory under the system temp dir, unique to this test
/// process and `name`.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("harness-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Makes this test process the reaper of orphans, so that a process left
/// behind by the harness (a server, a worker, a load generator) becomes our
/// child and is seen.
pub fn become_subreaper() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    assert_eq!(r, 0, "prctl(PR_SET_CHILD_SUBREAPER)");
}
