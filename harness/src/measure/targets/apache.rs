//! Apache httpd with the prefork MPM as a reference target, `apache:prefork`:
//! the classic pre-fork server the lab's `shared:prefork` copies. The parent
//! opens one listener and forks N children; each child is one thread that
//! blocks in `accept4` on the inherited listener (with a single listener
//! prefork takes no accept mutex), serves that connection to its end (with
//! keep-alive: until the client closes or `KeepAliveTimeout` passes) and
//! accepts again. strace of Apache 2.4.71's children: `accept4`, `read`,
//! `writev`, for `Connection: close` a lingering close (`shutdown(SHUT_WR)`,
//! `poll` up to 2 s, `read`, `close`), a non-blocking `read` of the pipe of
//! death, `accept4` again. With keep-alive and more client connections than
//! children only N connections are served at a time; the others wait in the
//! accept queue (loadgen counts them as starved connections): that is prefork.
//!
//! Counts: every response carries `X-Worker: <child pid>` like lab-server's,
//! so loadgen attributes requests and connections to children as it does
//! for the lab. The tests turn on an access log (`%P %k`: the child's pid and
//! the request's number on its connection, 0 for the first) to check those
//! counts against Apache's own.
//!
//! Where the configuration differs from Debian's stock Apache: it is a
//! complete `httpd.conf` generated per run (no `/etc/apache2`, no
//! `apache2ctl`, no envvars); the only modules loaded are `mpm_prefork`,
//! `lua` (the handler) and `authz_core` (without an authorization module
//! every request is a 500, "couldn't check user"), beside the compiled-in
//! `log_config` and `unixd`; `/` is answered by a `mod_lua` handler that
//! writes `ok` with the child's pid instead of a static file (a file would
//! add file-system calls per request and could not name the child);
//! exactly N children (`StartServers`, `ServerLimit`, `MaxRequestWorkers` N,
//! never recycled); `KeepAlive` off for the workloads that close every
//! connection, unlimited requests per connection otherwise.
//!
//! Started as root, Apache runs its children as `nobody`: every file a child
//! opens (the Lua script) lives in a private, world-readable directory under
//! the system's temporary directory ([`ChildFiles`]), removed when the server
//! stops, because the run's directory may be under `/root`. The parent, still
//! root, opens the logs and writes the pid file in the run's directory. SIGUSR1
//! to the parent is Apache's graceful restart (new children, the old ones
//! finish their connection); SIGWINCH its graceful stop.

use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::external::{find_on_path, supports_plain_get, NotReady, ServerTree};
use super::{free_port, Running, StartCtx};
use crate::measure::procs::guarded_external;
use crate::model::record::ServerStats;
use crate::model::workload::Workload;

/// The target's name.
pub const NAME: &str = "apache:prefork";

/// What [`available`] says when Apache is missing.
pub const MISSING: &str = "Apache httpd is not installed: the apache:prefork reference is skipped; install it with `just setup-references` (apt-get install -y apache2)";

/// The modules the configuration loads, by file name.
const MODULES: [(&str, &str); 3] = [
    ("mpm_prefork_module", "mod_mpm_prefork.so"),
    ("lua_module", "mod_lua.so"),
    ("authz_core_module", "mod_authz_core.so"),
];

/// The handler each child runs for `/`: its pid, read once per Lua VM
/// (`LuaScope server`: one VM per child, kept), in `X-Worker`; body `ok`.
const HANDLER: &str = r#"-- prefork-lab: answers / like lab-server, naming the child in X-Worker.
local pid
function handle(r)
  if not pid then
    local f = io.open("/proc/self/stat")
    pid = f:read("*n")
    f:close()
  end
  r.content_type = "text/plain"
  r.headers_out["X-Worker"] = tostring(pid)
  r:puts("ok")
  return apache2.OK
end
"#;

/// The Apache executable (`apache2`, Debian's name) on `PATH`.
///
/// Only `PATH` is searched, as for nginx: what runs is what the user's shell
/// would run, and a test can hide Apache by narrowing `PATH`.
pub fn binary() -> Result<PathBuf, String> {
    find_on_path("apache2").ok_or_else(|| {
        let hint = if Path::new("/usr/sbin/apache2").is_file() {
            " [/usr/sbin/apache2 exists but /usr/sbin is not on PATH: add it to PATH]"
        } else {
            ""
        };
        format!("{MISSING}{hint}")
    })
}

/// Where the modules of the Apache at `binary` are: Debian's layout,
/// `PREFIX/sbin/apache2` and `PREFIX/lib/apache2/modules`.
fn modules_dir(binary: &Path) -> Result<PathBuf, String> {
    let dir = binary
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("/usr"))
        .join("lib/apache2/modules");
    let missing: Vec<&str> = MODULES
        .iter()
        .map(|(_, file)| *file)
        .filter(|file| !dir.join(file).is_file())
        .collect();
    if missing.is_empty() {
        Ok(dir)
    } else {
        Err(format!(
            "{} has no {} in {}: the apache:prefork reference is skipped; install Debian's apache2 package (apt-get install -y apache2)",
            binary.display(),
            missing.join(", "),
            dir.display()
        ))
    }
}

/// Whether Apache and the modules it needs are installed; `Err` says how to
/// install them.
pub fn available() -> Result<(), String> {
    modules_dir(&binary()?).map(|_| ())
}

/// Whether Apache can serve `w` faithfully: its handler answers `/` only,
/// with `ok`, as nginx's `return` does; see [`supports_plain_get`].
pub fn supports(w: &Workload) -> Result<(), String> {
    supports_plain_get("Apache", w)
}

/// What [`config`] needs besides the port.
pub struct Settings<'a> {
    /// Child processes.
    pub workers: usize,
    /// `KeepAlive On` (else every response closes its connection).
    pub keep_alive: bool,
    /// The run's directory: `ServerRoot`, the pid file, the error log.
    pub dir: &'a Path,
    /// The directory of the files a child reads (the Lua script).
    pub child_dir: &'a Path,
    /// The modules' directory.
    pub modules: &'a Path,
    /// `User`/`Group` for the children (only when started as root).
    pub user: Option<(&'a str, &'a str)>,
    /// Where to log `%P %k` for every request, or no access log.
    pub access_log: Option<&'a Path>,
}

/// The complete `httpd.conf` for one run on `127.0.0.1:port`.
pub fn config(port: u16, s: &Settings<'_>) -> String {
    let p = |name: &str| quote(&s.dir.join(name));
    let n = s.workers;
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# {NAME}: generated by the prefork-lab harness, one run's configuration."
    );
    let _ = writeln!(c, "ServerRoot {}", quote(s.dir));
    let _ = writeln!(c, "DefaultRuntimeDir {}", quote(s.dir));
    for (module, file) in MODULES {
        let _ = writeln!(c, "LoadModule {module} {}", quote(&s.modules.join(file)));
    }
    let _ = writeln!(c, "PidFile {}", p("httpd.pid"));
    let _ = writeln!(c, "ErrorLog {}", p("error.log"));
    c.push_str("LogLevel notice\n");
    let _ = writeln!(c, "Listen 127.0.0.1:{port}");
    // Linux's default somaxconn since 5.4 is 4096; 511 is both Apache's and
    // nginx's default, written out so that every reference has the same.
    c.push_str("ListenBacklog 511\nServerName 127.0.0.1\n");
    if let Some((user, group)) = s.user {
        let _ = writeln!(c, "User {user}\nGroup {group}");
    }
    // Exactly n children, all started at once and never recycled: Apache
    // raises MaxSpareServers to MinSpareServers + 1, hence at least 2; with
    // MaxRequestWorkers n it never forks more than n.
    let _ = writeln!(
        c,
        "StartServers {n}\nMinSpareServers 1\nMaxSpareServers {}\nServerLimit {n}\nMaxRequestWorkers {n}\nMaxConnectionsPerChild 0",
        n.max(2)
    );
    let _ = writeln!(c, "KeepAlive {}", if s.keep_alive { "On" } else { "Off" });
    // Unlimited requests per connection (nginx: keepalive_requests 1000000);
    // lab-server's idle keep-alive timeout.
    c.push_str("MaxKeepAliveRequests 0\nKeepAliveTimeout 5\n");
    let _ = writeln!(c, "DocumentRoot {}", quote(s.child_dir));
    c.push_str("<Directory />\n    Require all granted\n</Directory>\n");
    c.push_str("LogFormat \"%P %k\" workers\n");
    if let Some(log) = s.access_log {
        let _ = writeln!(c, "CustomLog {} workers", quote(log));
    }
    // One Lua VM per child, kept across requests, its code loaded once.
    c.push_str("LuaScope server\nLuaCodeCache forever\n");
    let _ = writeln!(
        c,
        "LuaMapHandler ^/$ {} handle",
        quote(&s.child_dir.join("worker.lua"))
    );
    c
}

/// A path as an Apache configuration argument (quoted, so spaces are fine).
fn quote(path: &Path) -> String {
    let s = path.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The unprivileged group: Debian's `nogroup`, else `nobody`.
fn nobody_group() -> &'static str {
    let has_nogroup = std::fs::read_to_string("/etc/group")
        .is_ok_and(|g| g.lines().any(|l| l.starts_with("nogroup:")));
    if has_nogroup {
        "nogroup"
    } else {
        "nobody"
    }
}

/// The private directory of the files Apache's children read, readable by
/// `nobody` along its whole path (the run's directory may be under a
/// mode-700 `/root`); removed when dropped.
pub struct ChildFiles {
    dir: PathBuf,
}

impl ChildFiles {
    /// Creates it under the system's temporary directory with the handler in it.
    fn create() -> Result<ChildFiles, String> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "prefork-lab-apache-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // Owned from here on: a failure below removes it.
        let files = ChildFiles { dir };
        let set = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("cannot chmod {}: {e}", path.display()))
        };
        set(&files.dir, 0o755)?;
        let script = files.dir.join("worker.lua");
        std::fs::write(&script, HANDLER)
            .map_err(|e| format!("cannot write {}: {e}", script.display()))?;
        set(&script, 0o644)?;
        if let Some(closed) = files.dir.ancestors().skip(1).find(|a| {
            a.metadata()
                .is_ok_and(|m| m.permissions().mode() & 0o001 == 0)
        }) {
            return Err(format!(
                "{} is not searchable by others, so Apache's children (user nobody) cannot read {}: set TMPDIR to a directory everyone can reach (e.g. /tmp)",
                closed.display(),
                script.display()
            ));
        }
        Ok(files)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ChildFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts Apache with `ctx.workers` children and waits until it serves and
/// all its children exist.
pub fn start(ctx: &StartCtx<'_>) -> Result<Box<dyn Running>, String> {
    Ok(Box::new(start_apache(ctx, None)?))
}

/// Like [`start`], with Apache logging `%P %k` (child pid, request number on
/// its connection) for every request to `log`.
pub fn start_with_access_log(ctx: &StartCtx<'_>, log: &Path) -> Result<Box<dyn Running>, String> {
    Ok(Box::new(start_apache(ctx, Some(log))?))
}

/// How many times a port taken between [`free_port`] and Apache's bind is
/// retried with another one.
const PORT_TRIES: usize = 3;

fn start_apache(ctx: &StartCtx<'_>, access_log: Option<&Path>) -> Result<RunningApache, String> {
    let apache = binary()?;
    let modules = modules_dir(&apache)?;
    let dir = ctx.work_dir.join("apache");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let files = ChildFiles::create()?;
    let user = super::running_as_root().then(|| ("nobody", nobody_group()));
    let deadline = Instant::now() + ctx.ready_timeout;
    let mut tries = 0;
    loop {
        tries += 1;
        let port = free_port()?;
        let conf = config(
            port,
            &Settings {
                workers: ctx.workers,
                keep_alive: ctx.keep_alive,
                dir: &dir,
                child_dir: files.path(),
                modules: &modules,
                user,
                access_log,
            },
        );
        let conf_path = dir.join("httpd.conf");
        std::fs::write(&conf_path, conf)
            .map_err(|e| format!("cannot write {}: {e}", conf_path.display()))?;
        match launch(&apache, ctx, &dir, &conf_path, port, deadline) {
            Err(Launch::PortTaken(_)) if tries < PORT_TRIES => continue,
            Err(Launch::PortTaken(e) | Launch::Failed(e)) => return Err(e),
            Ok((tree, addr)) => {
                return Ok(RunningApache {
                    tree,
                    addr,
                    dir,
                    files,
                })
            }
        }
    }
}

enum Launch {
    /// Another process bound the port first (a race with [`free_port`]).
    PortTaken(String),
    Failed(String),
}

fn launch(
    apache: &Path,
    ctx: &StartCtx<'_>,
    dir: &Path,
    conf: &Path,
    port: u16,
    deadline: Instant,
) -> Result<(ServerTree, String), Launch> {
    let failed = |e: String| Launch::Failed(e);
    let error_log = dir.join("error.log");
    // Removed per try, so the lines quoted in an error are this try's.
    let _ = std::fs::remove_file(&error_log);
    let stderr_path = dir.join("stderr.log");
    let stderr = File::create(&stderr_path)
        .map_err(|e| failed(format!("cannot create {}: {e}", stderr_path.display())))?;
    let mut cmd = guarded_external(apache, ctx.cpus).map_err(failed)?;
    // `-DFOREGROUND`: the parent does not detach, so it stays the guard's child.
    cmd.arg("-f").arg(conf).arg("-DFOREGROUND");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    // Its own process group: the stop signals reach the children even when
    // the parent is gone, and a Ctrl-C on the terminal reaches the harness
    // only, which then stops Apache in order.
    cmd.process_group(0);
    let child = cmd
        .spawn()
        .map_err(|e| failed(format!("cannot start {}: {e}", apache.display())))?;
    let mut tree = ServerTree::guarded("apache2", child);
    let addr = format!("127.0.0.1:{port}");
    let logs = || log_tail(&[&error_log, &stderr_path]);
    match tree.wait_ready(&addr, ctx.workers, deadline) {
        Ok(()) => {}
        Err(NotReady::Exited) => {
            let tail = logs();
            let msg = format!("{NAME} exited before it was ready: {tail}");
            return Err(
                if tail.contains("Address already in use") || tail.contains("AH00072") {
                    Launch::PortTaken(msg)
                } else {
                    failed(msg)
                },
            );
        }
        Err(NotReady::NoAnswer) => {
            drop(tree);
            return Err(failed(format!(
                "{NAME} did not answer on {addr} within the ready timeout: {}",
                logs()
            )));
        }
        Err(NotReady::Workers(children)) => {
            drop(tree);
            return Err(failed(format!(
                "{NAME} started {} children ({children:?}), expected {}: {}",
                children.len(),
                ctx.workers,
                logs()
            )));
        }
    }
    Ok((tree, addr))
}

/// The last lines of Apache's error log and of its stderr, for an error
/// message (a start-up error before the log is open goes to stderr only).
fn log_tail(files: &[&Path]) -> String {
    let mut lines: Vec<String> = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines.extend(
            all[all.len().saturating_sub(6)..]
                .iter()
                .map(|l| l.to_string()),
        );
    }
    if lines.is_empty() {
        "(its logs are empty)".into()
    } else {
        lines.join(" | ")
    }
}

/// A started Apache. Field order matters: the process tree is dropped (and
/// stopped) before the children's files are removed.
struct RunningApache {
    tree: ServerTree,
    addr: String,
    dir: PathBuf,
    files: ChildFiles,
}

impl Running for RunningApache {
    fn addr(&self) -> String {
        self.addr.clone()
    }

    fn master_pid(&self) -> i32 {
        self.tree.master_pid
    }

    fn worker_pids(&self) -> Vec<i32> {
        self.tree.workers.clone()
    }

    /// SIGUSR1 to the parent: Apache's graceful restart (it re-reads its
    /// configuration and forks new children; each old one finishes its
    /// connection and exits).
    fn restart_signal(&self) -> (i32, Signal) {
        (self.tree.master_pid, Signal::SIGUSR1)
    }

    /// SIGWINCH: Apache's graceful stop (the children finish their
    /// connections, the parent exits after them), then SIGTERM/SIGKILL
    /// after `timeout`; the children's files go with it.
    fn stop(self: Box<Self>, timeout: Duration) -> Result<Option<ServerStats>, String> {
        let RunningApache {
            mut tree,
            dir,
            files,
            ..
        } = *self;
        let stopped = tree
            .shut_down(Signal::SIGWINCH, timeout)
            .map_err(|e| format!("{e}: {}", log_tail(&[&dir.join("error.log")])));
        // Only now that no child can read them.
        drop(files);
        stopped.map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::workload::WORKLOADS;

    fn settings<'a>(workers: usize, keep_alive: bool) -> Settings<'a> {
        Settings {
            workers,
            keep_alive,
            dir: Path::new("/tmp/run dir"),
            child_dir: Path::new("/tmp/child"),
            modules: Path::new("/usr/lib/apache2/modules"),
            user: Some(("nobody", "nogroup")),
            access_log: None,
        }
    }

    fn lines(c: &str) -> Vec<&str> {
        c.lines().map(str::trim).collect()
    }

    #[test]
    fn exactly_n_children_never_recycled() {
        for n in [1, 2, 4] {
            let c = config(18080, &settings(n, true));
            let l = lines(&c);
            for want in [
                format!("StartServers {n}"),
                "MinSpareServers 1".into(),
                format!("MaxSpareServers {}", n.max(2)),
                format!("ServerLimit {n}"),
                format!("MaxRequestWorkers {n}"),
                "MaxConnectionsPerChild 0".into(),
            ] {
                assert!(l.contains(&want.as_str()), "{n}: lacks {want:?}:\n{c}");
            }
        }
    }

    #[test]
    fn one_listener_its_backlog_and_the_modules() {
        let c = config(18080, &settings(2, true));
        let l = lines(&c);
        for want in [
            "Listen 127.0.0.1:18080",
            "ListenBacklog 511",
            "ServerName 127.0.0.1",
            "LoadModule mpm_prefork_module \"/usr/lib/apache2/modules/mod_mpm_prefork.so\"",
            "LoadModule lua_module \"/usr/lib/apache2/modules/mod_lua.so\"",
            "LoadModule authz_core_module \"/usr/lib/apache2/modules/mod_authz_core.so\"",
            "Require all granted",
            "LuaScope server",
            "LuaMapHandler ^/$ \"/tmp/child/worker.lua\" handle",
            "ServerRoot \"/tmp/run dir\"",
            "PidFile \"/tmp/run dir/httpd.pid\"",
            "ErrorLog \"/tmp/run dir/error.log\"",
        ] {
            assert!(l.contains(&want), "lacks {want:?}:\n{c}");
        }
        assert_eq!(c.matches("Listen ").count(), 1, "{c}");
        assert_eq!(c.matches("LoadModule").count(), 3, "{c}");
    }

    #[test]
    fn keep_alive_follows_the_workload() {
        let on = config(1, &settings(2, true));
        let off = config(1, &settings(2, false));
        assert!(lines(&on).contains(&"KeepAlive On"), "{on}");
        assert!(lines(&off).contains(&"KeepAlive Off"), "{off}");
        for c in [&on, &off] {
            let l = lines(c);
            assert!(l.contains(&"MaxKeepAliveRequests 0"), "{c}");
            assert!(l.contains(&"KeepAliveTimeout 5"), "{c}");
        }
        let keeps = |name: &str| Workload::by_name(name).unwrap().keeps_alive();
        assert!(!keeps("close"));
        assert!(keeps("keepalive"));
        assert!(keeps("recycled"));
    }

    #[test]
    fn user_and_group_only_when_started_as_root() {
        let c = config(1, &settings(2, true));
        assert!(lines(&c).contains(&"User nobody"), "{c}");
        assert!(lines(&c).contains(&"Group nogroup"), "{c}");
        let c = config(
            1,
            &Settings {
                user: None,
                ..settings(2, true)
            },
        );
        assert!(!c.contains("User ") && !c.contains("Group "), "{c}");
    }

    #[test]
    fn the_access_log_only_when_asked_for() {
        let c = config(1, &settings(2, true));
        assert!(!c.contains("CustomLog"), "{c}");
        let c = config(
            1,
            &Settings {
                access_log: Some(Path::new("/d/access log")),
                ..settings(2, true)
            },
        );
        let l = lines(&c);
        assert!(l.contains(&"LogFormat \"%P %k\" workers"), "{c}");
        assert!(l.contains(&"CustomLog \"/d/access log\" workers"), "{c}");
        assert!(
            c.find("LogFormat").unwrap() < c.find("CustomLog").unwrap(),
            "the format is defined before its use"
        );
    }

    #[test]
    fn paths_are_quoted() {
        assert_eq!(quote(Path::new("/a \"b\"")), "\"/a \\\"b\\\"\"");
    }

    #[test]
    fn apache_serves_the_plain_workloads_only() {
        let verdict = |name: &str| supports(Workload::by_name(name).unwrap());
        assert_eq!(verdict("keepalive"), Ok(()));
        assert_eq!(verdict("close"), Ok(()));
        let e = verdict("open-50").unwrap_err();
        assert!(e.contains("Apache cannot burn CPU per request"), "{e}");
        assert_eq!(
            WORKLOADS.iter().filter(|w| supports(w).is_ok()).count(),
            WORKLOADS
                .iter()
                .filter(|w| crate::measure::targets::nginx::supports(w).is_ok())
                .count(),
            "the same workloads as nginx"
        );
    }

    #[test]
    fn the_childrens_files_are_readable_by_everyone_and_removed_on_drop() {
        let files = ChildFiles::create().unwrap();
        let dir = files.path().to_path_buf();
        let mode = |p: &Path| p.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o755);
        assert_eq!(mode(&dir.join("worker.lua")), 0o644);
        assert!(std::fs::read_to_string(dir.join("worker.lua"))
            .unwrap()
            .contains("X-Worker"));
        drop(files);
        assert!(!dir.exists(), "{} is removed", dir.display());
        assert!(
            MISSING.contains("apt-get install -y apache2")
                && MISSING.contains("just setup-references")
        );
    }
}
