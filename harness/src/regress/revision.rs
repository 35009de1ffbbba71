//! `--baseline-rev`: lab-server built at a git revision, in a temporary
//! worktree removed afterwards.

/// Builds lab-server at git revision `rev` in a temporary worktree.
pub fn build(rev: &str) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    let dir = std::env::temp_dir().join(format!("prefork-lab-rev-{}", std::process::id()));
    let git = |args: &[&str]| -> Result<(), String> {
        let out = std::process::Command::new("git")
            .args(args)
            .output()
            .map_err(|e| format!("git: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    git(&[
        "worktree",
        "add",
        "--detach",
        &dir.display().to_string(),
        rev,
    ])
    .map_err(|e| format!("cannot check out {rev:?}: {e}"))?;
    eprintln!("harness: building lab-server at {rev} in {}", dir.display());
    let status = std::process::Command::new("cargo")
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "lab-server",
            "--manifest-path",
        ])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(dir.join("target"))
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        remove(&dir);
        return Err(format!("building lab-server at {rev:?} failed"));
    }
    let bin = dir.join("target/release/lab-server");
    Ok((dir, bin))
}

/// Removes the worktree [`build`] made, and its directory.
pub fn remove(dir: &std::path::Path) {
    let _ = std::process::Command::new("git")
        .args(["worktree", "remove", "--force"])
        .arg(dir)
        .output();
    let _ = std::fs::remove_dir_all(dir);
}
