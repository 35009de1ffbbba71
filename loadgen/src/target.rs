//! Where load may go: loopback, unless the user says otherwise.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// Resolves `target` (`127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`) and
/// refuses a non-loopback address unless `allow_remote`.
pub fn resolve(target: &str, allow_remote: bool) -> Result<SocketAddr, String> {
    let addr = match target.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => target
            .to_socket_addrs()
            .map_err(|e| {
                format!("--target {target}: {e}; write it as HOST:PORT, e.g. 127.0.0.1:8080")
            })?
            .next()
            .ok_or_else(|| format!("--target {target}: resolves to no address"))?,
    };
    if addr.port() == 0 {
        return Err(format!("--target {target}: port 0 is not a server's port"));
    }
    if !allow_remote && !is_loopback(addr.ip()) {
        return Err(format!(
            "--target {addr} is not a loopback address: load goes only to 127.0.0.0/8 or ::1 unless you pass --allow-remote (only for machines or network namespaces you own)"
        ));
    }
    Ok(addr)
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_allowed_and_the_rest_is_refused_unless_asked() {
        assert!(resolve("127.0.0.1:80", false).is_ok());
        assert!(resolve("127.3.2.1:80", false).is_ok());
        assert!(resolve("[::1]:80", false).is_ok());
        assert!(resolve("[::ffff:127.0.0.1]:80", false).is_ok());
        assert!(resolve("localhost:80", false).is_ok());
        let e = resolve("10.0.0.1:80", false).unwrap_err();
        assert!(e.contains("--allow-remote"), "{e}");
        assert!(resolve("10.0.0.1:80", true).is_ok());
        assert!(resolve("127.0.0.1:0", false).is_err());
        assert!(resolve("nonsense", false)
            .unwrap_err()
            .contains("HOST:PORT"));
    }
}
