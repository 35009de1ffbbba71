//! Output paths a user names never destroy what is not ours: loadgen's
//! `--json`, lab-server's `--stats-out` and the harness's own writer, against
//! a character device made with mknod (a copy of `/dev/null`), a terminal (a
//! pseudo-terminal's slave, so the bytes can be read back from its master
//! side; the kernel opens a pty slave only through its devpts mount, so a
//! mknod copy of one cannot stand in), a FIFO with a reader, a symlink to a
//! regular file, and `-`.
//!
//! Run as root (as CI does): the tests make device nodes.

mod util;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use util::{ensure_siblings, serial, temp_dir};

/// What `path` itself is (a symlink is not followed).
fn ftype(path: &Path) -> std::fs::FileType {
    std::fs::symlink_metadata(path).unwrap().file_type()
}

fn root() {
    assert!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0,
        "these tests make device nodes and must run as root (as CI does)"
    );
}

fn bin(name: &str) -> PathBuf {
    ensure_siblings().parent().unwrap().join(name)
}

/// A pseudo-terminal: what a writer writes to its slave device (`node`,
/// `/dev/pts/N`) comes out of the master side.
struct Pty {
    master: nix::pty::PtyMaster,
    node: PathBuf,
}

impl Pty {
    fn new() -> Pty {
        use nix::fcntl::OFlag;
        let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).unwrap();
        nix::pty::grantpt(&master).unwrap();
        nix::pty::unlockpt(&master).unwrap();
        let node = PathBuf::from(nix::pty::ptsname_r(&master).unwrap());
        Pty { master, node }
    }

    /// Everything written so far and closed (a terminal turns `\n` into
    /// `\r\n`; undone here). Reads until the slave has no writer left.
    fn read_all(&mut self) -> String {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match self.master.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                // EIO: no process holds the slave open any more.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
                Err(e) => panic!("reading the pty: {e}"),
            }
        }
        String::from_utf8(bytes).unwrap().replace("\r\n", "\n")
    }
}

fn still_a_char_device(node: &Path) {
    let m = std::fs::symlink_metadata(node).unwrap();
    assert!(
        m.file_type().is_char_device(),
        "{} is no longer a character device: {m:?}",
        node.display()
    );
}

/// `dir/name`, a character device 1:3 (what `/dev/null` is) made with mknod.
fn null_copy(dir: &Path, name: &str) -> PathBuf {
    let node = dir.join(name);
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    node
}

/// Our lab-server: SIGKILLed and reaped if a test fails before [`stop`].
struct Server(Option<Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            // The master's workers die with it (PR_SET_PDEATHSIG).
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// lab-server on 127.0.0.1:0 with `--stats-out stats`; returns it and its port.
fn start_server(stats: &Path) -> (Server, u16) {
    let mut child = Command::new(bin("lab-server"))
        .args(["--strategy", "reuseport", "--workers", "1"])
        .args(["--listen", "127.0.0.1:0", "--stats-out"])
        .arg(stats)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let server = Server(Some(child));
    let ready: serde_json::Value = serde_json::from_str(&line).expect("the ready line");
    let addr: std::net::SocketAddr = ready["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("addr in the ready line");
    (server, addr.port())
}

/// SIGTERM to our own server, then its exit status (bounded).
fn stop(mut server: Server) -> std::process::ExitStatus {
    let mut child = server.0.take().expect("a running server");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lab-server did not stop within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn loadgen(port: u16, json: &Path) -> std::process::Output {
    Command::new(bin("loadgen"))
        .args(["--target", &format!("127.0.0.1:{port}")])
        .args(["--connections", "2", "--duration", "200ms", "--json"])
        .arg(json)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn assert_json(text: &str, key: &str, what: &str) {
    let v: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{what} is not JSON ({e}): {text}"));
    assert!(v.get(key).is_some(), "{what} has no {key:?}: {text}");
}

#[test]
fn a_copy_of_dev_null_made_with_mknod_stays_a_character_device() {
    root();
    let _s = serial();
    let dir = temp_dir("outputs-mknod");
    let (stats, json, ours) = (
        null_copy(&dir, "stats-null"),
        null_copy(&dir, "json-null"),
        null_copy(&dir, "harness-null"),
    );
    let (server, port) = start_server(&stats);
    let out = loadgen(port, &json);
    assert!(out.status.success(), "loadgen: {out:?}");
    assert!(stop(server).success());
    harness::store::results::write_json(&ours, &serde_json::json!({"written": true})).unwrap();
    for p in [&stats, &json, &ours] {
        still_a_char_device(p);
    }
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["harness-null", "json-null", "stats-null"],
        "no temporary file left"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_terminal_receives_every_output_in_place() {
    let _s = serial();
    let (mut stats, mut json, mut ours) = (Pty::new(), Pty::new(), Pty::new());
    let (server, port) = start_server(&stats.node);
    let out = loadgen(port, &json.node);
    assert!(out.status.success(), "loadgen: {out:?}");
    assert!(stop(server).success());
    harness::store::results::write_json(&ours.node, &serde_json::json!({"written": true})).unwrap();
    assert_json(&json.read_all(), "schema", "loadgen's --json");
    assert_json(&stats.read_all(), "workers", "lab-server's --stats-out");
    assert_json(&ours.read_all(), "written", "the harness's write_json");
    for p in [&stats, &json, &ours] {
        still_a_char_device(&p.node);
    }
}

/// Reads `fifo` to its end on a thread.
fn fifo_reader(fifo: &Path) -> std::thread::JoinHandle<String> {
    let fifo = fifo.to_path_buf();
    std::thread::spawn(move || {
        let mut s = String::new();
        std::fs::File::open(&fifo)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    })
}

#[test]
fn a_fifo_with_a_reader_gets_the_json_and_stays_a_fifo() {
    let _s = serial();
    let dir = temp_dir("outputs-fifo");
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
    let (json, stats) = (dir.join("json.fifo"), dir.join("stats.fifo"));
    nix::unistd::mkfifo(&json, mode).unwrap();
    nix::unistd::mkfifo(&stats, mode).unwrap();
    let (json_reader, stats_reader) = (fifo_reader(&json), fifo_reader(&stats));

    let (server, port) = start_server(&stats);
    let out = loadgen(port, &json);
    assert!(out.status.success(), "loadgen: {out:?}");
    assert!(stop(server).success());
    assert_json(&json_reader.join().unwrap(), "schema", "loadgen's --json");
    assert_json(
        &stats_reader.join().unwrap(),
        "workers",
        "lab-server's --stats-out",
    );
    for p in [&json, &stats] {
        assert!(ftype(p).is_fifo());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_fifo_nobody_reads_fails_loadgen_at_once_with_one_line() {
    let _s = serial();
    let dir = temp_dir("outputs-fifo-alone");
    let fifo = dir.join("json.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let (server, port) = start_server(&dir.join("stats.json"));
    let t = Instant::now();
    let out = loadgen(port, &fifo);
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "loadgen must not wait for a reader"
    );
    assert!(stop(server).success());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].contains("nobody is reading this FIFO"), "{err}");
    assert!(ftype(&fifo).is_fifo());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_symlink_is_followed_the_file_updated_and_the_link_kept() {
    let _s = serial();
    let dir = temp_dir("outputs-symlink");
    std::fs::create_dir(dir.join("real")).unwrap();
    for f in ["json", "stats"] {
        std::fs::write(dir.join(format!("real/{f}.json")), "old").unwrap();
        std::os::unix::fs::symlink(format!("real/{f}.json"), dir.join(f)).unwrap();
    }
    let (server, port) = start_server(&dir.join("stats"));
    let out = loadgen(port, &dir.join("json"));
    assert!(out.status.success(), "loadgen: {out:?}");
    assert!(stop(server).success());
    for (f, key) in [("json", "schema"), ("stats", "workers")] {
        let link = std::fs::symlink_metadata(dir.join(f)).unwrap();
        assert!(link.file_type().is_symlink(), "{f} was replaced: {link:?}");
        let text = std::fs::read_to_string(dir.join(format!("real/{f}.json"))).unwrap();
        assert_json(&text, key, f);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn loadgen_json_dash_is_stdout_and_the_summary_goes_to_stderr() {
    let _s = serial();
    let dir = temp_dir("outputs-dash");
    let (server, port) = start_server(&dir.join("stats.json"));
    let out = loadgen(port, Path::new("-"));
    assert!(stop(server).success());
    assert!(out.status.success(), "{out:?}");
    assert_json(&String::from_utf8_lossy(&out.stdout), "schema", "stdout");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("req/s"), "the summary goes to stderr: {err}");
    assert!(!dir.join("-").exists(), "no file named -");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lab_server_refuses_stats_out_dash_with_one_line_and_forks_nothing() {
    let _s = serial();
    let out = Command::new(bin("lab-server"))
        .args(["--strategy", "reuseport", "--workers", "2"])
        .args(["--listen", "127.0.0.1:0", "--stats-out", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no ready line");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--stats-out -") && err.contains("ready line"),
        "{err}"
    );
    assert!(!Path::new("-").exists());
}

#[test]
fn directories_and_block_devices_are_refused_before_any_work() {
    root();
    let _s = serial();
    let dir = temp_dir("outputs-bad-kinds");
    let blk = dir.join("blk");
    // A loop device that does not exist: even a wrong write could not harm.
    nix::sys::stat::mknod(
        &blk,
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(7, 250),
    )
    .unwrap();
    for path in [&dir, &blk] {
        // loadgen: refused before it connects (port 9 would be refused).
        let out = loadgen(9, path);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("--json"), "{err}");
        assert!(!err.contains("refused"), "checked before the run: {err}");
        // lab-server: refused before it forks.
        let out = Command::new(bin("lab-server"))
            .args(["--strategy", "reuseport", "--workers", "1"])
            .args(["--listen", "127.0.0.1:0", "--stats-out"])
            .arg(path)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        // harness regress --save-baseline: refused before it measures.
        let t = Instant::now();
        let out = Command::new(ensure_siblings())
            .args(["regress", "--save-baseline"])
            .arg(path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--save-baseline"), "{err}");
    }
    assert!(ftype(&blk).is_block_device());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_results_latest_that_is_not_our_symlink_is_left_alone() {
    let _s = serial();
    let dir = temp_dir("outputs-latest");
    std::fs::write(dir.join("latest"), "someone's file").unwrap();
    let out = Command::new(ensure_siblings())
        .args(["run", "--strategy", "reuseport", "--workload", "keepalive"])
        .args(["--duration", "100ms", "--warmup", "0s", "--results"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("latest") && err.contains("not the symlink"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("latest")).unwrap(),
        "someone's file"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
