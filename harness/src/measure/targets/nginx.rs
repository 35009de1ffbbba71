//! nginx as a reference target, in its three ways of sharing one port among
//! worker processes:
//!
//! - `nginx:reuseport`: `listen ... reuseport`, one listening socket per
//!   worker (the master opens them all before forking), the kernel hashes
//!   each connection onto one of them (the lab's `reuseport`);
//! - `nginx:epoll-exclusive`: one listener shared by every worker, which adds
//!   it to its epoll with `EPOLLEXCLUSIVE` (nginx's default since 1.11.3 with
//!   `accept_mutex off`; since 1.21.6 a worker re-adds the listener every 16
//!   accepts so that the kernel's preference for the same waiter does not
//!   starve the others), the lab's `shared:epoll-exclusive`;
//! - `nginx:accept-mutex`: `accept_mutex on`, only the worker holding a lock
//!   in shared memory polls the listener, the others retry after
//!   `accept_mutex_delay` (500 ms), the lab's `shared:accept-mutex`.
//!
//! The configuration is generated into the run's directory; nginx runs in
//! the foreground (`daemon off`) under `harness guard` (the harness's child),
//! in a process group of its own so that stopping it reaches every worker:
//! nginx workers have no parent-death signal and keep serving when their
//! master is killed, so if the harness dies the guard kills them (see
//! `measure/guard.rs`). SIGHUP to its master is nginx's reload: new workers start and
//! the old ones finish their connections and exit (the rolling-restart
//! scenario; nginx replaces them all at once, not one by one).
//!
//! nginx answers `/` with `ok` and `X-Worker: $pid` like lab-server, but it
//! cannot burn CPU, wait or size the body per request: [`supports`] refuses
//! the workloads that ask for that rather than letting nginx answer them with
//! a cheap `ok` and show numbers that mean something else.

use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::external::{find_on_path, supports_plain_get, NotReady, ServerTree};
use super::{free_port, Running, StartCtx};
use crate::measure::procs::guarded_external;
use crate::model::record::ServerStats;
use crate::model::workload::Workload;

/// How nginx's workers share the listening port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `listen ... reuseport`: one listener per worker.
    ReusePort,
    /// One shared listener, `EPOLLEXCLUSIVE` (`accept_mutex off`, the default).
    EpollExclusive,
    /// One shared listener, `accept_mutex on`.
    AcceptMutex,
}

impl Mode {
    /// Every mode, in report order.
    pub const ALL: [Mode; 3] = [Mode::ReusePort, Mode::EpollExclusive, Mode::AcceptMutex];

    /// Parses a target name (`nginx:reuseport`, `nginx:epoll-exclusive`,
    /// `nginx:accept-mutex`).
    pub fn parse(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The target name.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::ReusePort => "nginx:reuseport",
            Mode::EpollExclusive => "nginx:epoll-exclusive",
            Mode::AcceptMutex => "nginx:accept-mutex",
        }
    }
}

/// What [`available`] says when nginx is missing.
pub const MISSING: &str = "nginx is not installed: the nginx:* references are skipped; install it with `just setup-references` (apt-get install -y nginx-light)";

/// The nginx executable on `PATH`.
///
/// Only `PATH` is searched, not `/usr/sbin` behind its back: what runs is
/// what the user's shell would run, and a test can hide nginx by narrowing
/// `PATH`. (Debian puts nginx in `/usr/sbin`, which is on root's `PATH`.)
pub fn binary() -> Result<PathBuf, String> {
    find_on_path("nginx").ok_or_else(|| {
        let hint = if Path::new("/usr/sbin/nginx").is_file() {
            " [/usr/sbin/nginx exists but /usr/sbin is not on PATH: add it to PATH]"
        } else {
            ""
        };
        format!("{MISSING}{hint}")
    })
}

/// Whether nginx is installed (on `PATH`); `Err` says how to install it.
pub fn available() -> Result<(), String> {
    binary().map(|_| ())
}

/// Whether nginx can serve `w` faithfully: it answers `/` only, with `ok`;
/// see [`supports_plain_get`].
pub fn supports(w: &Workload) -> Result<(), String> {
    supports_plain_get("nginx", w)
}

/// The configuration for `mode`, `workers` processes on `127.0.0.1:port`,
/// with every file nginx writes (pid, error log, temporary directories) in
/// `dir`. `access_log`: where to log `$pid $connection $connection_requests`
/// per request (for checking the harness's per-worker counts), or off.
///
/// No `user` directive: nginx started as root runs its workers as `nobody`,
/// which is fine because the master opens every log file and creates the
/// temporary directories (handing them to the worker user) before it forks;
/// a worker only writes to descriptors it inherited.
pub fn config(
    mode: Mode,
    port: u16,
    workers: usize,
    dir: &Path,
    access_log: Option<&Path>,
) -> String {
    let p = |name: &str| quote(&dir.join(name));
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# {}: generated by the prefork-lab harness, one run's configuration.",
        mode.name()
    );
    c.push_str("daemon off;\nmaster_process on;\n");
    let _ = writeln!(c, "worker_processes {workers};");
    let _ = writeln!(c, "pid {};", p("nginx.pid"));
    let _ = writeln!(c, "error_log {} notice;", p("error.log"));
    c.push_str("\nevents {\n    use epoll;\n    worker_connections 4096;\n");
    match mode {
        // With accept_mutex off and more than one worker, nginx adds the
        // listener with EPOLLEXCLUSIVE (src/event/ngx_event.c,
        // ngx_event_process_init); with reuseport each worker polls its own.
        Mode::ReusePort | Mode::EpollExclusive => c.push_str("    accept_mutex off;\n"),
        // nginx's own default delay, written out so the report's reader sees it.
        Mode::AcceptMutex => c.push_str("    accept_mutex on;\n    accept_mutex_delay 500ms;\n"),
    }
    c.push_str("}\n\nhttp {\n");
    c.push_str("    log_format workers '$pid $connection $connection_requests';\n");
    match access_log {
        // Buffered: a write per request would slow the very workers we
        // count. A graceful stop (SIGQUIT) flushes the buffer.
        Some(log) => {
            let _ = writeln!(c, "    access_log {} workers buffer=256k;", quote(log));
        }
        None => c.push_str("    access_log off;\n"),
    }
    c.push_str("    keepalive_requests 1000000;\n    keepalive_timeout 65s;\n");
    // nginx creates its compiled-in temporary directories (/var/lib/nginx/*)
    // at start even when nothing uses them; keep them in the run's directory.
    for (directive, sub) in TEMP_PATHS {
        let _ = writeln!(c, "    {directive} {};", p(sub));
    }
    let reuseport = if mode == Mode::ReusePort {
        " reuseport"
    } else {
        ""
    };
    let _ = writeln!(
        c,
        "\n    server {{\n        listen 127.0.0.1:{port}{reuseport} backlog=511;"
    );
    c.push_str("        location / {\n            add_header X-Worker $pid always;\n            return 200 \"ok\";\n        }\n    }\n}\n");
    c
}

/// The temporary-path directives and their directory in the run's
/// directory. A build without the module (`--without-http_uwsgi_module`)
/// does not know the directive; [`start`] drops those lines.
const TEMP_PATHS: [(&str, &str); 5] = [
    ("client_body_temp_path", "client_body_temp"),
    ("proxy_temp_path", "proxy_temp"),
    ("fastcgi_temp_path", "fastcgi_temp"),
    ("uwsgi_temp_path", "uwsgi_temp"),
    ("scgi_temp_path", "scgi_temp"),
];

/// A path as an nginx configuration string (quoted, so spaces are fine).
fn quote(path: &Path) -> String {
    let s = path.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Starts nginx in `mode` with `ctx.workers` workers and waits until it
/// serves and all its workers exist.
pub fn start(mode: Mode, ctx: &StartCtx<'_>) -> Result<Box<dyn Running>, String> {
    Ok(Box::new(start_nginx(mode, ctx, None)?))
}

/// Like [`start`], with nginx logging `$pid $connection $connection_requests`
/// for every request to `log` (flushed when it stops).
pub fn start_with_access_log(
    mode: Mode,
    ctx: &StartCtx<'_>,
    log: &Path,
) -> Result<Box<dyn Running>, String> {
    Ok(Box::new(start_nginx(mode, ctx, Some(log))?))
}

/// How many times a port taken between [`free_port`] and nginx's bind is
/// retried with another one.
const PORT_TRIES: usize = 3;

fn start_nginx(
    mode: Mode,
    ctx: &StartCtx<'_>,
    access_log: Option<&Path>,
) -> Result<RunningNginx, String> {
    let nginx = binary()?;
    let dir = ctx.work_dir.join("nginx");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let build = build_info(&nginx);
    let deadline = Instant::now() + ctx.ready_timeout;
    let mut tries = 0;
    loop {
        tries += 1;
        let port = free_port()?;
        let conf: String = config(mode, port, ctx.workers, &dir, access_log)
            .lines()
            .filter(|l| {
                !build
                    .without
                    .iter()
                    .any(|m| l.trim_start().starts_with(&format!("{m}_temp_path ")))
            })
            .flat_map(|l| [l, "\n"])
            .collect();
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)
            .map_err(|e| format!("cannot write {}: {e}", conf_path.display()))?;
        match launch(&nginx, &build, mode, ctx, &dir, &conf_path, port, deadline) {
            Err(Launch::PortTaken(_)) if tries < PORT_TRIES => continue,
            Err(Launch::PortTaken(e) | Launch::Failed(e)) => return Err(e),
            Ok(running) => return Ok(running),
        }
    }
}

enum Launch {
    /// Another process bound the port first (a race with [`free_port`]).
    PortTaken(String),
    Failed(String),
}

#[allow(clippy::too_many_arguments)] // one call site, each argument a different thing
fn launch(
    nginx: &Path,
    build: &Build,
    mode: Mode,
    ctx: &StartCtx<'_>,
    dir: &Path,
    conf: &Path,
    port: u16,
    deadline: Instant,
) -> Result<RunningNginx, Launch> {
    let failed = |e: String| Launch::Failed(e);
    let error_log = dir.join("error.log");
    // Truncated per try, so the lines quoted in an error are this try's.
    let _ = std::fs::remove_file(&error_log);
    let stderr_path = dir.join("stderr.log");
    let stderr = File::create(&stderr_path)
        .map_err(|e| failed(format!("cannot create {}: {e}", stderr_path.display())))?;
    let mut cmd = guarded_external(nginx, ctx.cpus).map_err(failed)?;
    // `-e`: the error log from the first message on (the compiled-in one may
    // be unwritable: an older nginx says so on stderr and carries on);
    // `-p`: the prefix relative paths resolve against.
    if build.has_e_option {
        cmd.arg("-e").arg(&error_log);
    }
    cmd.arg("-c").arg(conf).arg("-p").arg(dir);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    // Its own process group: the stop signals reach the workers even when
    // the master is gone, and a Ctrl-C on the terminal reaches the harness
    // only, which then stops nginx in order.
    cmd.process_group(0);
    let child = cmd
        .spawn()
        .map_err(|e| failed(format!("cannot start {}: {e}", nginx.display())))?;
    let mut tree = ServerTree::guarded("nginx", child);
    let addr = format!("127.0.0.1:{port}");
    let logs = || log_tail(&[&error_log, &stderr_path]);
    match tree.wait_ready(&addr, ctx.workers, deadline) {
        Ok(()) => {}
        Err(NotReady::Exited) => {
            let tail = logs();
            let msg = format!("{} exited before it was ready: {tail}", mode.name());
            return Err(if tail.contains("Address already in use") {
                Launch::PortTaken(msg)
            } else {
                failed(msg)
            });
        }
        Err(NotReady::NoAnswer) => {
            drop(tree);
            return Err(failed(format!(
                "{} did not answer on {addr} within the ready timeout: {}",
                mode.name(),
                logs()
            )));
        }
        Err(NotReady::Workers(workers)) => {
            drop(tree);
            return Err(failed(format!(
                "{} started {} worker processes ({workers:?}), expected {}: {}",
                mode.name(),
                workers.len(),
                ctx.workers,
                logs()
            )));
        }
    }
    Ok(RunningNginx {
        tree,
        addr,
        dir: dir.to_path_buf(),
    })
}

/// What `nginx -V` tells about the build.
struct Build {
    /// `*_temp_path` modules it was built without (`--without-http_uwsgi_module`).
    without: Vec<&'static str>,
    /// Whether it takes `-e FILE` (1.19.5 and later).
    has_e_option: bool,
}

fn build_info(nginx: &Path) -> Build {
    let out = std::process::Command::new(nginx).arg("-V").output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    parse_build(&text)
}

fn parse_build(text: &str) -> Build {
    let version: Vec<u32> = text
        .split_once("nginx/")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .map(|v| v.split('.').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    Build {
        without: ["fastcgi", "uwsgi", "scgi", "proxy"]
            .into_iter()
            .filter(|m| text.contains(&format!("--without-http_{m}_module")))
            .collect(),
        // An unreadable version: assume a current nginx.
        has_e_option: version.is_empty() || version >= vec![1, 19, 5],
    }
}

/// The last lines of nginx's error log and of its stderr, for an error
/// message. nginx writes a start-up error to both ("nginx: [emerg] MSG" on
/// stderr, "DATE [emerg] PID#TID: MSG" in the log): it is quoted once.
fn log_tail(files: &[&Path]) -> String {
    let mut lines: Vec<String> = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        for l in &all[all.len().saturating_sub(6)..] {
            let msg = l
                .strip_prefix("nginx: ")
                .and_then(|r| r.split_once("] "))
                .map(|(_, m)| m);
            if !msg.is_some_and(|m| lines.iter().any(|seen| seen.ends_with(m))) {
                lines.push(l.to_string());
            }
        }
    }
    if lines.is_empty() {
        "(its logs are empty)".into()
    } else {
        lines.join(" | ")
    }
}

/// A started nginx.
struct RunningNginx {
    tree: ServerTree,
    addr: String,
    dir: PathBuf,
}

impl Running for RunningNginx {
    fn addr(&self) -> String {
        self.addr.clone()
    }

    fn master_pid(&self) -> i32 {
        self.tree.master_pid
    }

    fn worker_pids(&self) -> Vec<i32> {
        self.tree.workers.clone()
    }

    /// SIGQUIT: nginx's graceful shutdown (workers finish their requests,
    /// close idle keep-alive connections and flush the access log buffer),
    /// then SIGTERM/SIGKILL after `timeout`.
    fn stop(mut self: Box<Self>, timeout: Duration) -> Result<Option<ServerStats>, String> {
        self.tree
            .shut_down(Signal::SIGQUIT, timeout)
            .map_err(|e| format!("{e}: {}", log_tail(&[&self.dir.join("error.log")])))?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::targets::external::find_in;
    use crate::model::workload::WORKLOADS;

    fn conf(mode: Mode) -> String {
        config(mode, 18080, 3, Path::new("/tmp/run dir"), None)
    }

    fn lines(c: &str) -> Vec<&str> {
        c.lines().map(str::trim).collect()
    }

    #[test]
    fn names_round_trip() {
        for m in Mode::ALL {
            assert_eq!(Mode::parse(m.name()), Some(m));
        }
        assert_eq!(Mode::parse("nginx"), None);
        assert_eq!(Mode::parse("reuseport"), None);
    }

    #[test]
    fn reuseport_listens_with_reuseport_and_no_accept_mutex() {
        let c = conf(Mode::ReusePort);
        let l = lines(&c);
        assert!(
            l.contains(&"listen 127.0.0.1:18080 reuseport backlog=511;"),
            "{c}"
        );
        assert!(l.contains(&"accept_mutex off;"), "{c}");
        assert!(!c.contains("accept_mutex on"), "{c}");
    }

    #[test]
    fn epoll_exclusive_is_one_listener_without_accept_mutex() {
        let c = conf(Mode::EpollExclusive);
        let l = lines(&c);
        assert!(l.contains(&"listen 127.0.0.1:18080 backlog=511;"), "{c}");
        assert!(l.contains(&"accept_mutex off;"), "{c}");
        assert!(!c.contains("reuseport"), "{c}");
    }

    #[test]
    fn accept_mutex_is_one_listener_with_the_mutex_and_its_default_delay() {
        let c = conf(Mode::AcceptMutex);
        let l = lines(&c);
        assert!(l.contains(&"listen 127.0.0.1:18080 backlog=511;"), "{c}");
        assert!(l.contains(&"accept_mutex on;"), "{c}");
        assert!(l.contains(&"accept_mutex_delay 500ms;"), "{c}");
        assert!(!c.contains("accept_mutex off"), "{c}");
    }

    #[test]
    fn every_mode_runs_the_workers_in_the_foreground_and_names_the_worker() {
        for m in Mode::ALL {
            let c = conf(m);
            let l = lines(&c);
            for want in [
                "daemon off;",
                "master_process on;",
                "worker_processes 3;",
                "add_header X-Worker $pid always;",
                "return 200 \"ok\";",
                "keepalive_requests 1000000;",
                "access_log off;",
                "pid \"/tmp/run dir/nginx.pid\";",
                "error_log \"/tmp/run dir/error.log\" notice;",
                "client_body_temp_path \"/tmp/run dir/client_body_temp\";",
            ] {
                assert!(l.contains(&want), "{} lacks {want:?}:\n{c}", m.name());
            }
            assert_eq!(c.matches('{').count(), c.matches('}').count(), "{c}");
        }
    }

    #[test]
    fn the_access_log_records_pid_connection_and_request_number() {
        let c = config(
            Mode::ReusePort,
            1,
            2,
            Path::new("/d"),
            Some(Path::new("/d/access.log")),
        );
        let l = lines(&c);
        assert!(
            l.contains(&"log_format workers '$pid $connection $connection_requests';"),
            "{c}"
        );
        assert!(
            l.contains(&"access_log \"/d/access.log\" workers buffer=256k;"),
            "{c}"
        );
        assert!(!c.contains("access_log off"), "{c}");
        let fmt = c.find("log_format").unwrap();
        assert!(
            fmt < c.find("access_log").unwrap(),
            "the format is defined before its use"
        );
    }

    #[test]
    fn paths_are_quoted() {
        assert_eq!(quote(Path::new("/a \"b\"")), "\"/a \\\"b\\\"\"");
    }

    #[test]
    fn nginx_serves_the_plain_workloads_only() {
        let verdict = |name: &str| supports(Workload::by_name(name).unwrap());
        assert_eq!(verdict("keepalive"), Ok(()));
        assert_eq!(verdict("close"), Ok(()));
        for name in ["open-50", "open-90"] {
            let e = verdict(name).unwrap_err();
            assert!(
                e.contains("cannot burn CPU per request (/?cpu_us=50)"),
                "{name}: {e}"
            );
        }
        let e = verdict("heavy-tail").unwrap_err();
        assert!(
            e.contains("cannot burn CPU") && e.contains("cpu_us=20"),
            "{e}"
        );
        // keepalive, recycled, close and the four fault scenarios (GET /).
        assert_eq!(WORKLOADS.iter().filter(|w| supports(w).is_ok()).count(), 7);
    }

    #[test]
    fn each_kind_of_work_is_refused_with_its_own_reason() {
        let w = |args: &'static [&'static str]| Workload {
            name: "t",
            description: "",
            args,
            capacity_share: None,
            capacity: crate::model::workload::Capacity::KeepAlive,
            fairness: crate::model::workload::FairnessKind::Steady,
            fault: None,
        };
        assert!(supports(&w(&["--path", "/?sleep_us=100"]))
            .unwrap_err()
            .contains("cannot wait"));
        assert!(supports(&w(&["--path=/?bytes=4096"]))
            .unwrap_err()
            .contains("size the body"));
        assert!(supports(&w(&["--mix", "1:/,1:/?bytes=10"]))
            .unwrap_err()
            .contains("(/?bytes=10)"));
        assert!(supports(&w(&["--path", "/index.html"]))
            .unwrap_err()
            .contains("404"));
        assert!(supports(&w(&["--path", "/?foo=1"]))
            .unwrap_err()
            .contains("400"));
        assert!(
            supports(&w(&["--path", "/?cpu_us=0&sleep_us=0"])).is_ok(),
            "no work is no work"
        );
        assert!(
            supports(&w(&["--path", "/?cpu_us="])).is_err(),
            "an empty value is a 400 at lab-server"
        );
        assert!(
            supports(&w(&["--mode", "close", "--connections", "32"])).is_ok(),
            "loadgen's default path is /"
        );
    }

    #[test]
    fn the_build_says_which_directives_and_options_exist() {
        let b = parse_build("nginx version: nginx/1.18.0\nconfigure arguments: --prefix=/usr --without-http_uwsgi_module --without-http_scgi_module");
        assert_eq!(b.without, vec!["uwsgi", "scgi"]);
        assert!(!b.has_e_option);
        let b = parse_build("nginx version: nginx/1.22.1\nconfigure arguments: --with-debug");
        assert!(b.without.is_empty());
        assert!(b.has_e_option);
        assert!(parse_build("nginx version: nginx/1.19.5").has_e_option);
        assert!(!parse_build("nginx version: nginx/1.19.4").has_e_option);
    }

    #[test]
    fn only_executables_on_the_path_count() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("nginx-path-test-{}", std::process::id()));
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("nginx"), "not executable").unwrap();
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(find_in("nginx", &path), None);
        std::fs::write(b.join("nginx"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(b.join("nginx"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_in("nginx", &path), Some(b.join("nginx")));
        assert!(
            MISSING.contains("nginx is not installed") && MISSING.contains("just setup-references")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
