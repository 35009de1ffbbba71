//! The lab's processes on other hosts, through `ssh`: the remote-execution
//! tool every operator already has, and no agent or daemon of our own.
//!
//! One OpenSSH ControlMaster connection per host (in a private directory of
//! this harness process; it outlives an idle session by at most 30 s, and is
//! closed when the session ends) carries every command of a session, so a run does
//! not pay a handshake; `BatchMode` makes ssh fail instead of asking for a
//! password. The binaries are copied into `~/.prefork-lab/bin/` on the host
//! when missing or different (by SHA-256). A remote process is started as
//! `exec setpriv --pdeathsig KILL -- PROGRAM`: when the ssh session ends (the
//! harness died, the connection dropped) it dies with it, and lab-server's
//! workers die with their master.
//!
//! Load from several generators is split evenly (connections, rate, rate
//! steps), started together, and merged with `loadgen merge` (histograms
//! added, counts summed, never averaged percentiles), so the run looks like
//! one generator's; each generator's own share is kept in the run record.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::model::remote::{Host, PartJson};

/// Where binaries and scratch files go on a host (relative to its home).
pub const REMOTE_DIR: &str = ".prefork-lab";

/// ssh with connection reuse, for one harness process.
#[derive(Clone, Debug)]
pub struct Ssh {
    config: Option<PathBuf>,
    control_dir: PathBuf,
}

/// Single-quotes `s` for a POSIX shell.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What ssh's stderr says, as one line that names the host and says what to do.
pub fn explain(host: &Host, stderr: &str) -> String {
    let line = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
        .unwrap_or("ssh exited with an error and said nothing");
    let h = &host.name;
    if stderr.contains("Permission denied") {
        format!("{h}: the host refused our key ({line}); add your public key to its authorized_keys, or give --ssh-config a config with the right IdentityFile")
    } else if stderr.contains("Could not resolve hostname") {
        format!("{h}: unknown host ({line}); check the name, or define it in your ssh config (--ssh-config)")
    } else if stderr.contains("Host key verification failed") {
        format!(
            "{h}: host key verification failed; ssh to it once by hand to check and record its key"
        )
    } else if [
        "Connection refused",
        "No route to host",
        "timed out",
        "Network is unreachable",
        "Connection closed",
        "Connection reset",
    ]
    .iter()
    .any(|p| stderr.contains(p))
    {
        format!(
            "{h} is unreachable over ssh ({line}); is sshd running there and the address right?"
        )
    } else {
        format!("{h}: {line}")
    }
}

impl Ssh {
    /// A fresh control directory (short: a socket path has ~100 bytes).
    pub fn new(config: Option<PathBuf>) -> Result<Ssh, String> {
        if let Some(c) = &config {
            if !c.is_file() {
                return Err(format!("--ssh-config {}: no such file", c.display()));
            }
        }
        let control_dir = std::env::temp_dir().join(format!("pl-ssh-{}", std::process::id()));
        std::fs::create_dir_all(&control_dir)
            .map_err(|e| format!("cannot create {}: {e}", control_dir.display()))?;
        Ok(Ssh {
            config,
            control_dir,
        })
    }

    /// ssh's options for `host`, everything before the destination.
    fn options(&self, host: &Host) -> Vec<String> {
        let mut o = Vec::new();
        if let Some(c) = &self.config {
            o.extend(["-F".to_string(), c.display().to_string()]);
        }
        for opt in [
            "BatchMode=yes".to_string(),
            "ControlMaster=auto".to_string(),
            format!("ControlPath={}/%C", self.control_dir.display()),
            "ControlPersist=30".to_string(),
            "ConnectTimeout=5".to_string(),
            "ServerAliveInterval=2".to_string(),
            "ServerAliveCountMax=5".to_string(),
            "LogLevel=ERROR".to_string(),
        ] {
            o.extend(["-o".to_string(), opt]);
        }
        if let Some(p) = host.port {
            o.extend(["-p".to_string(), p.to_string()]);
        }
        o
    }

    /// `ssh ... HOST -- REMOTE` (the remote command is given to the host's
    /// shell as one string).
    pub fn command(&self, host: &Host, remote: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(self.options(host))
            .arg(&host.target)
            .arg("--")
            .arg(remote)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `remote` on `host`; its stdout, or one line that says why not.
    pub fn run(&self, host: &Host, remote: &str) -> Result<String, String> {
        let out = self
            .command(host, remote)
            .output()
            .map_err(|e| format!("cannot run ssh: {e}; install openssh-client"))?;
        if out.status.code() == Some(255) {
            return Err(explain(host, &String::from_utf8_lossy(&out.stderr)));
        }
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!(
                "{}: `{remote}` failed: {}",
                host.name,
                err.trim().lines().last().unwrap_or("no message")
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Connects (opening the shared connection) and returns the addresses
    /// of the path: (this machine as the host sees it, the host).
    pub fn connect(&self, host: &Host) -> Result<(String, String), String> {
        let out = self.run(host, "echo $SSH_CONNECTION")?;
        let f: Vec<&str> = out.split_whitespace().collect();
        match f.as_slice() {
            [client, _, server, _] => Ok((client.to_string(), server.to_string())),
            _ => Err(format!(
                "{}: SSH_CONNECTION is {:?}; cannot tell which addresses to use",
                host.name,
                out.trim()
            )),
        }
    }

    /// Makes sure `~/.prefork-lab/bin/NAME` on `host` is the same file as
    /// `local` (copies it when missing or different); returns its path there.
    pub fn deploy(&self, host: &Host, local: &Path) -> Result<String, String> {
        let name = local
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: not a file name", local.display()))?;
        let out = Command::new("sha256sum")
            .arg(local)
            .output()
            .map_err(|e| format!("sha256sum {}: {e}", local.display()))?;
        let want = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        if want.len() != 64 {
            return Err(format!("cannot hash {}", local.display()));
        }
        let path = format!("{REMOTE_DIR}/bin/{name}");
        let have = self.run(host, &format!("sha256sum {path} 2>/dev/null || true"))?;
        if have.split_whitespace().next() == Some(want.as_str()) {
            return Ok(path);
        }
        let file = std::fs::File::open(local)
            .map_err(|e| format!("cannot read {}: {e}", local.display()))?;
        let script = format!(
            "mkdir -p {REMOTE_DIR}/bin && cat > {path}.part && chmod 755 {path}.part && mv -f {path}.part {path} && sha256sum {path}"
        );
        let out = self
            .command(host, &script)
            .stdin(file)
            .output()
            .map_err(|e| format!("cannot run ssh: {e}"))?;
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(255) {
            return Err(explain(host, &err));
        }
        let got = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || got.split_whitespace().next() != Some(want.as_str()) {
            return Err(format!(
                "{}: cannot copy {name} to ~/{REMOTE_DIR}/bin: {}",
                host.name,
                err.trim().lines().last().unwrap_or("the copy differs")
            ));
        }
        Ok(path)
    }

    /// Starts `program args` on `host` so that it dies with the session.
    pub fn spawn(&self, host: &Host, program: &str, args: &[String]) -> Result<Child, String> {
        let argv: Vec<String> = std::iter::once(program.to_string())
            .chain(args.iter().cloned())
            .map(|a| quote(&a))
            .collect();
        let argv = argv.join(" ");
        let remote = format!(
            "if command -v setpriv >/dev/null; then exec setpriv --pdeathsig KILL -- {argv}; else exec {argv}; fi"
        );
        self.command(host, &remote)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run ssh: {e}"))
    }

    /// Closes the shared connections.
    pub fn close(&self, hosts: &[Host]) {
        for h in hosts {
            let _ = Command::new("ssh")
                .args(self.options(h))
                .args(["-O", "exit"])
                .arg(&h.target)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.control_dir);
    }
}

/// How the session reaches its hosts.
#[derive(Debug)]
pub struct Remote {
    /// ssh.
    pub ssh: Ssh,
    /// Where loadgen runs (empty: here).
    pub loadgen_hosts: Vec<Host>,
    /// Where lab-server runs (`None`: here).
    pub server_host: Option<Host>,
}

/// The generator arguments of part `i` of `n`: connections and rate split
/// evenly (connections: the first ones get the remainder), a seed of its
/// own; `--threads` no more than its connections.
pub fn split_args(args: &[String], i: usize, n: usize) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.iter();
    let share = |x: f64| x / n as f64;
    while let Some(a) = it.next() {
        let mut value = |flag: &str| -> Result<String, String> {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} without a value"))
        };
        match a.as_str() {
            "--connections" | "-c" => {
                let c: usize = value(a)?
                    .parse()
                    .map_err(|e| format!("--connections: {e}"))?;
                let mine = c / n + usize::from(i < c % n);
                if c < n {
                    return Err(format!(
                        "{c} connections cannot be split over {n} generators: each needs one"
                    ));
                }
                out.extend(["--connections".to_string(), mine.to_string()]);
            }
            "--rate" => {
                let r: f64 = value(a)?.parse().map_err(|e| format!("--rate: {e}"))?;
                out.extend(["--rate".to_string(), format!("{:.3}", share(r))]);
            }
            "--rate-step" => {
                let v = value(a)?;
                let (at, r) = v
                    .split_once(':')
                    .ok_or_else(|| format!("--rate-step {v}: not AT:RATE"))?;
                let r: f64 = r.parse().map_err(|e| format!("--rate-step {v}: {e}"))?;
                out.extend(["--rate-step".to_string(), format!("{at}:{:.3}", share(r))]);
            }
            "--seed" => {
                let s: u64 = value(a)?.parse().map_err(|e| format!("--seed: {e}"))?;
                out.extend([
                    "--seed".to_string(),
                    s.wrapping_mul(1000).wrapping_add(i as u64).to_string(),
                ]);
            }
            _ => out.push(a.clone()),
        }
    }
    // --threads must not exceed the part's connections.
    let conns = out
        .iter()
        .position(|a| a == "--connections")
        .and_then(|p| out.get(p + 1))
        .and_then(|v| v.parse::<usize>().ok());
    if let (Some(c), Some(p)) = (conns, out.iter().position(|a| a == "--threads")) {
        if let Some(t) = out.get(p + 1).and_then(|v| v.parse::<usize>().ok()) {
            out[p + 1] = t.min(c).max(1).to_string();
        }
    }
    Ok(out)
}

/// Runs loadgen with `args` on every host at once, fetches the results,
/// merges them (`loadgen merge`, into `merged`) and returns the merged result
/// with each part.
pub fn run_loadgens(
    remote: &Remote,
    local_loadgen: &Path,
    args: &[String],
    work_dir: &Path,
    merged: &Path,
    hang_guard: Duration,
    stop: &AtomicBool,
) -> Result<(loadgen::result::LoadResult, Vec<PartJson>), String> {
    let hosts = &remote.loadgen_hosts;
    let n = hosts.len();
    let tag = format!(
        "{}-{}",
        std::process::id(),
        work_dir
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("run")
            .trim_start_matches('.')
    );
    let mut children: Vec<(usize, Child, String)> = Vec::new();
    let kill_all = |children: &mut Vec<(usize, Child, String)>| {
        for (_, c, _) in children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    };
    // Every part's arguments first, so that a bad split starts nothing.
    let mut parts_args = Vec::with_capacity(n);
    for i in 0..n {
        parts_args.push(split_args(args, i, n)?);
    }
    for (i, host) in hosts.iter().enumerate() {
        let json = format!("{REMOTE_DIR}/loadgen-{tag}-{i}.json");
        let mut a = parts_args[i].clone();
        if !a.iter().any(|x| x == "--allow-remote") {
            a.push("--allow-remote".to_string());
        }
        a.extend(["--quiet".to_string(), "--json".to_string(), json.clone()]);
        match remote
            .ssh
            .spawn(host, &format!("{REMOTE_DIR}/bin/loadgen"), &a)
        {
            Ok(c) => children.push((i, c, json)),
            Err(e) => {
                kill_all(&mut children);
                return Err(format!("{}: {e}", host.name));
            }
        }
    }
    let deadline = Instant::now() + hang_guard;
    let mut done = vec![false; n];
    while done.iter().any(|d| !d) {
        if stop.load(Ordering::Relaxed) {
            kill_all(&mut children);
            return Err("interrupted".into());
        }
        for (i, c, _) in children.iter_mut() {
            if done[*i] {
                continue;
            }
            match c.try_wait() {
                Ok(Some(status)) => {
                    done[*i] = true;
                    if !status.success() {
                        let mut err = String::new();
                        if let Some(mut e) = c.stderr.take() {
                            let _ = e.read_to_string(&mut err);
                        }
                        let host = &hosts[*i];
                        let why = if status.code() == Some(255) {
                            explain(host, &err)
                        } else {
                            format!(
                                "loadgen on {} failed ({status}): {}",
                                host.name,
                                err.lines()
                                    .find(|l| l.contains("error"))
                                    .or_else(|| err.trim().lines().last())
                                    .unwrap_or("it said nothing")
                                    .trim()
                            )
                        };
                        kill_all(&mut children);
                        return Err(why);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    kill_all(&mut children);
                    return Err(format!("waiting for ssh: {e}"));
                }
            }
        }
        if Instant::now() > deadline {
            kill_all(&mut children);
            return Err(format!(
                "the remote load generators ran past {hang_guard:?}; killed"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Fetch every part, then merge.
    let mut files = Vec::with_capacity(n);
    let mut parts = Vec::with_capacity(n);
    for (i, _, json) in &children {
        let host = &hosts[*i];
        let text = remote
            .ssh
            .run(host, &format!("cat {json} && rm -f {json}"))?;
        let local = work_dir.join(format!("loadgen-part-{i}.json"));
        std::fs::write(&local, &text)
            .map_err(|e| format!("cannot write {}: {e}", local.display()))?;
        let r = loadgen::result::read_json(&local)
            .map_err(|e| format!("{}: its loadgen result: {e}", host.name))?;
        let conns = parts_args[*i]
            .iter()
            .position(|a| a == "--connections")
            .and_then(|p| parts_args[*i].get(p + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        parts.push(PartJson {
            host: host.name.clone(),
            connections: conns,
            rate_rps: r.target_rate_rps,
            sent: r.sent,
            ok: r.ok,
            errors: r.errors.total(),
            achieved_rps: r.achieved_rate_rps,
            workers: r.workers.iter().map(|w| (w.worker, w.requests)).collect(),
            warnings: r.warnings.iter().map(|w| w.message()).collect(),
        });
        files.push(local);
    }
    let out = Command::new(local_loadgen)
        .arg("merge")
        .args(&files)
        .arg("--json")
        .arg(merged)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {} merge: {e}", local_loadgen.display()))?;
    if !out.status.success() {
        return Err(format!(
            "loadgen merge failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let merged = loadgen::result::read_json(merged)?;
    Ok((merged, parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn hosts_parse_with_user_and_port_and_refuse_the_rest() {
        let h = Host::parse("root@10.0.0.2:2222").unwrap();
        assert_eq!((h.target.as_str(), h.port), ("root@10.0.0.2", Some(2222)));
        let h = Host::parse("pl-lg1").unwrap();
        assert_eq!((h.target.as_str(), h.port), ("pl-lg1", None));
        assert!(Host::parse("host:0").is_err());
        assert!(Host::parse("host:x").is_err());
        assert!(Host::parse("::1").is_err());
        assert!(Host::parse("-oProxyCommand=x").is_err());
        assert!(Host::parse("").is_err());
    }

    #[test]
    fn load_is_split_evenly_and_exactly() {
        let args = s(&[
            "--connections",
            "65",
            "--threads",
            "2",
            "--rate",
            "1000",
            "--rate-step",
            "400ms:3000",
            "--seed",
            "7",
            "--mode",
            "close",
        ]);
        let parts: Vec<Vec<String>> = (0..3).map(|i| split_args(&args, i, 3).unwrap()).collect();
        let get = |p: &Vec<String>, f: &str| p[p.iter().position(|a| a == f).unwrap() + 1].clone();
        let conns: usize = parts
            .iter()
            .map(|p| get(p, "--connections").parse::<usize>().unwrap())
            .sum();
        assert_eq!(conns, 65);
        for p in &parts {
            assert_eq!(get(p, "--rate"), "333.333");
            assert_eq!(get(p, "--rate-step"), "400ms:1000.000");
            assert_eq!(get(p, "--mode"), "close");
        }
        let seeds: std::collections::BTreeSet<String> =
            parts.iter().map(|p| get(p, "--seed")).collect();
        assert_eq!(seeds.len(), 3, "each generator its own seed");
        let one = split_args(&s(&["--connections", "2", "--threads", "2"]), 0, 2).unwrap();
        assert_eq!(one, s(&["--connections", "1", "--threads", "1"]));
        assert!(split_args(&s(&["--connections", "1"]), 0, 2).is_err());
    }

    #[test]
    fn ssh_failures_name_the_host_and_say_what_to_do() {
        let h = Host::parse("lg9").unwrap();
        let e = explain(&h, "root@10.77.0.9: Permission denied (publickey).\n");
        assert!(e.starts_with("lg9: the host refused our key"), "{e}");
        let e = explain(
            &h,
            "ssh: connect to host 10.77.0.9 port 22: Connection refused\n",
        );
        assert!(e.starts_with("lg9 is unreachable over ssh"), "{e}");
        let e = explain(
            &h,
            "ssh: Could not resolve hostname lg9: Name or service not known\n",
        );
        assert!(e.contains("unknown host"), "{e}");
    }

    #[test]
    fn a_generator_is_behind_below_95_percent_of_its_open_loop_share() {
        let part = |rate: Option<f64>, achieved: f64| PartJson {
            rate_rps: rate,
            achieved_rps: achieved,
            ..PartJson::default()
        };
        assert!(part(Some(1000.0), 900.0).behind());
        assert!(!part(Some(1000.0), 960.0).behind());
        assert!(
            !part(None, 10.0).behind(),
            "closed loop has no share to fall behind"
        );
    }

    #[test]
    fn quoting_keeps_plain_words_and_quotes_the_rest() {
        assert_eq!(quote("--rate"), "--rate");
        assert_eq!(quote("/?cpu_us=50"), "'/?cpu_us=50'");
        assert_eq!(quote("a'b"), r"'a'\''b'");
        assert_eq!(
            quote("99:/?cpu_us=20,1:/?cpu_us=2000"),
            "'99:/?cpu_us=20,1:/?cpu_us=2000'"
        );
    }
}
