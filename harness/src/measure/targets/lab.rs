//! The lab's own strategies: `lab-server --strategy NAME`.

use std::time::Duration;

use super::{Running, StartCtx};
use crate::measure::procs::{start_lab_server_with, RunningServer};
use crate::model::record::ServerStats;

/// Whether `strategy` can run here: an eBPF strategy loads its program
/// with bpf(2), which needs root (CAP_BPF and CAP_NET_ADMIN); the bench
/// skips it elsewhere with this reason rather than failing its runs.
pub fn available(strategy: &str) -> Result<(), String> {
    if strategy.contains("ebpf") && !super::running_as_root() {
        return Err(format!(
            "{strategy} loads an eBPF program, which needs root (CAP_BPF, CAP_NET_ADMIN)"
        ));
    }
    Ok(())
}

/// Starts `lab-server --strategy strategy`.
pub fn start(strategy: &str, ctx: &StartCtx<'_>) -> Result<Box<dyn Running>, String> {
    let stats = ctx.work_dir.join("server-stats.json");
    let extra: Vec<String> = if ctx.inject_cpu_us > 0 {
        vec![
            "--test-only-inject-cpu-us".into(),
            ctx.inject_cpu_us.to_string(),
        ]
    } else {
        Vec::new()
    };
    Ok(Box::new(start_lab_server_with(
        ctx.bins,
        strategy,
        ctx.workers,
        ctx.cpus,
        &stats,
        ctx.ready_timeout,
        &extra,
    )?))
}

impl Running for RunningServer {
    fn addr(&self) -> String {
        self.addr.clone()
    }

    fn master_pid(&self) -> i32 {
        self.master_pid
    }

    fn worker_pids(&self) -> Vec<i32> {
        self.worker_pids.clone()
    }

    fn stop(self: Box<Self>, timeout: Duration) -> Result<Option<ServerStats>, String> {
        RunningServer::stop(*self, timeout)
    }
}
