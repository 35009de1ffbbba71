//! The test set-up never stops a process it did not start: an nginx that
//! somebody runs outside the lab (started here by the test itself, on a port
//! of its own) survives `scripts/test --setup-only` and `scripts/netns.sh
//! down`, the parts of the README's test command and of `.ci/run` that run
//! outside `cargo test`.
//!
//! Needs nginx installed (scripts/test installs it) and root (the rig).

mod util;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use util::{ps, repo, serial, temp_dir};

fn nginx_bin() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("nginx is not installed: run scripts/test (or apt-get install -y nginx-light)")
}

/// An nginx of "somebody else's": master and workers, SIGKILLed by pid when
/// the test ends. The master is stopped first (SIGSTOP), so it cannot
/// replace the workers we kill, which have no parent-death signal.
struct Nginx {
    master: Child,
    port: u16,
}

impl Nginx {
    fn start(dir: &Path) -> Nginx {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nmaster_process on;\nworker_processes 2;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log;\nevents {{ worker_connections 64; }}\n\
                 http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
                 server {{ listen 127.0.0.1:{port}; return 200 \"someone else's nginx\\n\"; }} }}\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let master = Command::new(nginx_bin())
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let n = Nginx { master, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while n.workers().len() < 2 || n.get().is_none() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start (see {}/error.log)",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }

    fn workers(&self) -> Vec<i32> {
        let me = self.master.id() as i32;
        ps::all()
            .into_iter()
            .filter(|p| p.ppid == me && p.alive())
            .map(|p| p.pid)
            .collect()
    }

    /// The body of `GET /`, if it answers.
    fn get(&self) -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.contains("someone else's nginx").then_some(out)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let master = nix::unistd::Pid::from_raw(self.master.id() as i32);
        let _ = nix::sys::signal::kill(master, nix::sys::signal::Signal::SIGSTOP);
        let pids = self.workers();
        ps::kill_all(pids);
        let _ = self.master.kill();
        let _ = self.master.wait();
    }
}

fn run_script(args: &[&str]) {
    let out = Command::new("bash")
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_running_nginx_that_is_not_ours_survives_the_test_set_up() {
    let _s = serial();
    let dir = temp_dir("someone-elses-nginx");
    let nginx = Nginx::start(&dir);
    let master = nginx.master.id() as i32;
    let workers = nginx.workers();

    run_script(&["scripts/test", "--setup-only"]);
    run_script(&["scripts/netns.sh", "down"]);

    assert!(
        ps::info(master).is_some_and(|p| p.alive()),
        "the nginx master {master} was stopped"
    );
    let mut now = nginx.workers();
    now.sort();
    let mut before = workers.clone();
    before.sort();
    assert_eq!(now, before, "nginx's workers changed");
    assert!(nginx.get().is_some(), "nginx no longer answers");
    drop(nginx);
    std::fs::remove_dir_all(&dir).unwrap();
}
