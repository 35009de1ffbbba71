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

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ is in the repository")
        .to_path_buf()
}

/// One test of this test binary at a time: the tests share the machine's
/// cores, and some reap every zombie child of the process, which would steal
/// another test's child's exit status.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh, empty directory under the system temp dir, unique to this test
/// process and `name`.
/// A JSON file, parsed (panics with the path on failure).
pub fn read_json(p: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every run file of a session directory, parsed, in run order.
pub fn run_files(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut v: Vec<serde_json::Value> = std::fs::read_dir(dir.join("runs"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .map(|e| read_json(&e.path()))
        .collect();
    v.sort_by_key(|r| r["index"].as_u64());
    v
}

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
    nix::sys::prctl::set_child_subreaper(true).expect("prctl(PR_SET_CHILD_SUBREAPER)");
}

/// What `/proc` shows about processes, for the tests that check that nothing
/// outlives the harness.
pub mod ps {
    use std::path::Path;

    /// A process as `/proc/PID/stat`, `cmdline` and `cwd` show it.
    #[derive(Clone, Debug)]
    pub struct Proc {
        /// Its pid.
        pub pid: i32,
        /// `comm` (the name, at most 15 bytes).
        pub comm: String,
        /// State letter (`Z`: zombie).
        pub state: char,
        /// Parent pid.
        pub ppid: i32,
        /// Process group.
        pub pgrp: i32,
        /// The command line, arguments joined by spaces.
        pub cmdline: String,
        /// The working directory, if readable.
        pub cwd: Option<std::path::PathBuf>,
    }

    impl Proc {
        /// Not a zombie.
        pub fn alive(&self) -> bool {
            self.state != 'Z' && self.state != 'X'
        }

        /// Whether its command line or working directory names `dir`.
        pub fn refers_to(&self, dir: &Path) -> bool {
            self.cwd.as_deref().is_some_and(|c| c.starts_with(dir))
                || self.cmdline.contains(&*dir.to_string_lossy())
        }
    }

    /// `pid` now, if it exists.
    pub fn info(pid: i32) -> Option<Proc> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, rest) = stat.rsplit_once(')')?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(Proc {
            pid,
            comm: head.split_once('(')?.1.to_string(),
            state: f.first()?.chars().next()?,
            ppid: f.get(1)?.parse().ok()?,
            pgrp: f.get(2)?.parse().ok()?,
            cmdline: std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default(),
            cwd: std::fs::read_link(format!("/proc/{pid}/cwd")).ok(),
        })
    }

    /// Every process but this one.
    pub fn all() -> Vec<Proc> {
        let me = std::process::id() as i32;
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&p| p != me)
            .filter_map(info)
            .collect()
    }

    /// The `harness guard` a reference server's master runs under (its
    /// parent, see the harness's `measure/guard.rs`), if it does.
    pub fn guard_of(master: i32) -> Option<Proc> {
        let parent = info(info(master)?.ppid)?;
        let args: Vec<String> = std::fs::read(format!("/proc/{}/cmdline", parent.pid))
            .ok()?
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        (args.get(1).map(String::as_str) == Some("guard")).then_some(parent)
    }

    /// Our children that are not zombies.
    pub fn live_children() -> Vec<Proc> {
        let me = std::process::id() as i32;
        all()
            .into_iter()
            .filter(|p| p.ppid == me && p.alive())
            .collect()
    }

    /// Reaps our exited children (orphans re-parented to us included).
    pub fn reap_zombies() {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        while let Ok(st) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if st == WaitStatus::StillAlive {
                break;
            }
        }
    }

    /// SIGKILLs `pids` (a failing test does not leave them to the next) and
    /// reaps what was ours.
    pub fn kill_all(pids: impl IntoIterator<Item = i32>) {
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        reap_zombies();
    }
}
