//! A session's other hosts: load generators and the server over ssh.

use std::path::PathBuf;

use crate::measure::procs::Binaries;
use crate::measure::remote::{Remote, Ssh};
use crate::model::remote::Host;

/// `--loadgen-host`, `--server-host`, `--ssh-config`.
#[derive(Clone, Debug, Default)]
pub struct RemoteOpts {
    /// Where loadgen runs (empty: here).
    pub loadgen_hosts: Vec<Host>,
    /// Where lab-server runs.
    pub server_host: Option<Host>,
    /// `ssh -F`.
    pub ssh_config: Option<PathBuf>,
}

/// A session's connected hosts.
pub(super) struct RemoteSetup {
    pub(super) remote: Remote,
    /// The address a server here listens on so that the generators reach it.
    pub(super) listen_ip: String,
    /// The server host's address, as the generators reach it.
    pub(super) server_ip: Option<String>,
}

impl RemoteSetup {
    /// Connects to every host and copies the binaries each needs; the first
    /// failure is one line that names the host.
    pub(super) fn connect(o: &RemoteOpts, bins: &Binaries) -> Result<RemoteSetup, String> {
        let ssh = Ssh::new(o.ssh_config.clone())?;
        let mut hosts = o.loadgen_hosts.clone();
        hosts.extend(o.server_host.clone());
        Self::connect_with(o, bins, ssh.clone()).inspect_err(|_| ssh.close(&hosts))
    }

    fn connect_with(o: &RemoteOpts, bins: &Binaries, ssh: Ssh) -> Result<RemoteSetup, String> {
        let mut listen_ip = None;
        for h in &o.loadgen_hosts {
            let (me, _) = ssh.connect(h)?;
            listen_ip.get_or_insert(me);
            ssh.deploy(h, &bins.loadgen)?;
        }
        let mut server_ip = None;
        if let Some(h) = &o.server_host {
            let (me, there) = ssh.connect(h)?;
            listen_ip.get_or_insert(me);
            server_ip = Some(there);
            ssh.deploy(h, &bins.lab_server)?;
        }
        Ok(RemoteSetup {
            remote: Remote {
                ssh,
                loadgen_hosts: o.loadgen_hosts.clone(),
                server_host: o.server_host.clone(),
            },
            listen_ip: listen_ip.unwrap_or_else(|| "127.0.0.1".into()),
            server_ip,
        })
    }

    pub(super) fn hosts(&self) -> Vec<Host> {
        let mut v = self.remote.loadgen_hosts.clone();
        v.extend(self.remote.server_host.clone());
        v
    }
}
