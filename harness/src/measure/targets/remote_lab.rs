//! A lab strategy on another host (`--server-host`): `lab-server` started
//! through ssh, its ready line read from the ssh session, and everything a
//! run measures on the server side (the stats file, per-process CPU from
//! `/proc`, the kernel's TCP counters) read through the same connection.
//! Accept-queue sampling (sock_diag every 50 ms, `measure::sockdiag`) is
//! not done remotely.

use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::Running;
use crate::measure::kernel::{counters_from, usage_from};
use crate::measure::procs::{watch_output, ReadyLine};
use crate::measure::remote::{Ssh, REMOTE_DIR};
use crate::model::kernel::{Counters, ProcUsage};
use crate::model::record::ServerStats;
use crate::model::remote::Host;

/// lab-server running on a host over ssh.
pub struct RemoteLab {
    ssh: Ssh,
    host: Host,
    child: Option<Child>,
    addr: String,
    master_pid: i32,
    worker_pids: Vec<i32>,
    stats: String,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// Starts `lab-server --strategy S --workers N --listen IP:0` on `host`
/// (`ssh` must already be connected and the binary deployed).
pub fn start(
    ssh: &Ssh,
    host: &Host,
    listen_ip: &str,
    strategy: &str,
    workers: usize,
    tag: &str,
    ready_timeout: Duration,
) -> Result<Box<dyn Running>, String> {
    let stats = format!("{REMOTE_DIR}/stats-{tag}.json");
    let args: Vec<String> = [
        "--strategy",
        strategy,
        "--workers",
        &workers.to_string(),
        "--listen",
        &format!("{listen_ip}:0"),
        "--stats-out",
        &stats,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut child = ssh.spawn(host, &format!("{REMOTE_DIR}/bin/lab-server"), &args)?;
    let output = watch_output(&mut child);
    let mut server = RemoteLab {
        ssh: ssh.clone(),
        host: host.clone(),
        child: Some(child),
        addr: String::new(),
        master_pid: 0,
        worker_pids: Vec::new(),
        stats,
        stderr: Some(output.stderr),
    };
    let line = match output.first_line.recv_timeout(ready_timeout) {
        Ok(Some(Ok(line))) => line,
        other => {
            let err = server.kill();
            let why = if other.is_err() {
                format!("was not ready within {ready_timeout:?}")
            } else {
                "exited before it was ready".to_string()
            };
            return Err(format!(
                "lab-server --strategy {strategy} on {} {why}: {}",
                host.name,
                crate::measure::remote::explain(host, &err)
            ));
        }
    };
    let ready = ReadyLine::parse(&line).map_err(|e| format!("{}: {e}", host.name))?;
    server.addr = ready.addr;
    server.master_pid = ready.master_pid;
    server.worker_pids = ready.worker_pids;
    Ok(Box::new(server))
}

impl RemoteLab {
    /// Ends the ssh session (the server dies with it: pdeathsig) and
    /// returns what it said on stderr.
    fn kill(&mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for RemoteLab {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Running for RemoteLab {
    fn addr(&self) -> String {
        self.addr.clone()
    }

    fn master_pid(&self) -> i32 {
        self.master_pid
    }

    fn worker_pids(&self) -> Vec<i32> {
        self.worker_pids.clone()
    }

    fn restart_signal(&self) -> (i32, Signal) {
        (self.master_pid, Signal::SIGHUP)
    }

    fn kernel_counters(&self) -> Counters {
        match self.ssh.run(
            &self.host,
            "cat /proc/net/netstat; echo @@; cat /proc/net/snmp",
        ) {
            Ok(text) => {
                let (netstat, snmp) = text.split_once("@@").unwrap_or((&text, ""));
                counters_from(netstat, snmp)
            }
            Err(e) => {
                eprintln!("harness: {e}");
                Counters::new()
            }
        }
    }

    fn usage(&self, pid: i32) -> Option<ProcUsage> {
        let text = self
            .ssh
            .run(
                &self.host,
                &format!("cat /proc/{pid}/status && echo @@ && cat /proc/{pid}/task/*/schedstat"),
            )
            .ok()?;
        let (status, sched) = text.split_once("@@")?;
        let ns: Vec<u64> = sched
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        Some(usage_from(status, &ns))
    }

    fn local(&self) -> bool {
        false
    }

    fn stop(mut self: Box<Self>, timeout: Duration) -> Result<Option<ServerStats>, String> {
        let _ = self
            .ssh
            .run(&self.host, &format!("kill -TERM {}", self.master_pid));
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take();
        if let Some(c) = child.as_mut() {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        let _ = self
                            .ssh
                            .run(&self.host, &format!("kill -KILL {}", self.master_pid));
                        let _ = c.kill();
                        let _ = c.wait();
                        return Err(format!(
                            "lab-server on {} (pid {}) did not stop within {timeout:?}; killed",
                            self.host.name, self.master_pid
                        ));
                    }
                }
            }
        }
        let text = self.ssh.run(
            &self.host,
            &format!("cat {0} 2>/dev/null; rm -f {0}", self.stats),
        )?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{}: the stats file: {e}", self.host.name))
    }
}
