//! Hosts named on the command line, and what a session and a run record
//! about the hosts that took part.

use serde::{Deserialize, Serialize};

/// A host as the user named it: `host`, `user@host`, `host:port`,
/// `user@host:port` or an alias of the ssh config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// As given.
    pub name: String,
    /// `[user@]host` for ssh.
    pub(crate) target: String,
    /// `-p PORT`, if given.
    pub(crate) port: Option<u16>,
}

impl Host {
    /// Parses a host argument; IPv6 literals are not taken (use an alias).
    pub fn parse(s: &str) -> Result<Host, String> {
        let s = s.trim();
        if s.is_empty() || s.contains(char::is_whitespace) || s.starts_with('-') {
            return Err(format!(
                "{s:?} is not a host: give user@host, host:port or an ssh config alias"
            ));
        }
        let (target, port) = match s.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !h.contains(':') => {
                let port = p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| {
                    format!("{s:?}: the port after ':' must be 1-65535 (IPv6 addresses: use an ssh config alias)")
                })?;
                (h.to_string(), Some(port))
            }
            Some(_) => {
                return Err(format!(
                    "{s:?}: IPv6 addresses are not taken here; give the host an alias in your ssh config"
                ))
            }
            None => (s.to_string(), None),
        };
        Ok(Host {
            name: s.to_string(),
            target,
            port,
        })
    }
}

/// The hosts of a session, as recorded.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RemoteJson {
    /// Load generator hosts (empty: the harness's machine).
    pub loadgen_hosts: Vec<String>,
    /// The server's host (`None`: the harness's machine).
    pub server_host: Option<String>,
}

/// One generator's part of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PartJson {
    /// Host.
    pub host: String,
    /// Its connections.
    pub connections: usize,
    /// Its share of the offered rate, req/s.
    pub rate_rps: Option<f64>,
    /// Measured requests it sent.
    pub sent: u64,
    /// Of those, answered 2xx.
    pub ok: u64,
    /// Errors.
    pub errors: u64,
    /// Its achieved rate, req/s.
    pub achieved_rps: f64,
    /// Per worker (`X-Worker`): (worker, requests).
    pub workers: Vec<(u32, u64)>,
    /// loadgen's warnings, as lines.
    pub warnings: Vec<String>,
}

impl PartJson {
    /// Whether it fell behind its share of an open-loop rate (below 95%).
    pub fn behind(&self) -> bool {
        self.rate_rps.is_some_and(|r| self.achieved_rps < 0.95 * r)
    }
}
