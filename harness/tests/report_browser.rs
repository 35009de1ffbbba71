//! `report.html` as a person sees it: the committed reference session
//! (`results/reference`) re-rendered by `harness report`, opened in headless
//! Chromium, and checked through the Chrome DevTools Protocol: every plot is
//! drawn, every in-page link has its anchor, nothing is logged as an error,
//! and the page loads nothing but itself.
//!
//! Needs Debian's `chromium` (`apt-get install -y chromium`); without it the
//! test fails rather than skips. The rendered report and its screenshot stay
//! in `target/tmp/report-browser/` (`report.html`, `report.png` the whole
//! page, `report-top.png` the first screen, `chromium.log` the browser's
//! stderr) for review.
//!
//! Chromium speaks CDP over a pair of pipes (`--remote-debugging-pipe`): it
//! reads NUL-terminated JSON messages on fd 3 and writes its own on fd 4. A
//! `sh` wrapper moves the child's stdin and stdout pipes there, so no unsafe
//! code is needed to lay out the descriptors.

mod util;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The whole browser session, launch to screenshot, must fit in this.
const BUDGET: Duration = Duration::from_secs(60);

/// The first screen, for the screenshot of it.
const VIEWPORT: (u32, u32) = (1280, 900);

/// Chromium's flags: headless, as root, and quiet: no GPU, no background
/// traffic of its own, a fresh profile.
fn chromium_flags(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-crash-reporter",
        "--disable-breakpad",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--remote-debugging-pipe",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        format!("--window-size={},{}", VIEWPORT.0, VIEWPORT.1),
        format!("--user-data-dir={}", profile.display()),
        "about:blank".to_string(),
    ])
    .collect()
}

/// `chromium` on `PATH`; the test fails (never skips) without it.
fn chromium_path() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("chromium is not installed: run scripts/test (or apt-get install -y chromium)")
        })
}

/// A running Chromium and the CDP connection to it. Dropping it kills the
/// browser's whole process group (its pid is the group id: the zygote,
/// renderer and utility processes go too), reaps it, and only then removes
/// the profile directory.
struct Browser {
    child: Child,
    to_browser: ChildStdin,
    from_browser: mpsc::Receiver<Value>,
    /// Every event received so far, in order.
    events: Vec<Value>,
    next_id: u64,
    deadline: Instant,
    log: PathBuf,
    /// Declared last: removed after `drop` has reaped the browser.
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch(log: &Path) -> Browser {
        let chromium = chromium_path();
        // Chromium's crash handlers leave its process group and daemonize:
        // as the subreaper we get them back, to kill and reap (see `drop`).
        util::become_subreaper();
        let profile = tempfile::Builder::new()
            .prefix("report-browser-profile-")
            .tempdir()
            .expect("a temp dir for the browser profile");
        let stderr = fs::File::create(log).expect("create chromium.log");
        let mut cmd = Command::new("sh");
        // The child's stdin and stdout are our pipes; CDP wants them on 3
        // and 4. `exec` keeps the pid: sh, Debian's launcher script (which
        // execs too) and the browser are one process, ours to kill.
        cmd.arg("-c")
            .arg(r#"exec "$@" 3<&0 4>&1 </dev/null >&2"#)
            .arg("sh")
            .arg(&chromium)
            .args(chromium_flags(profile.path()))
            .env("XDG_CONFIG_HOME", profile.path().join("config"))
            .env("XDG_CACHE_HOME", profile.path().join("cache"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromium.display()));
        let to_browser = child.stdin.take().expect("chromium's fd 3");
        let from = child.stdout.take().expect("chromium's fd 4");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || read_messages(from, tx));
        Browser {
            child,
            to_browser,
            from_browser: rx,
            events: Vec::new(),
            next_id: 1,
            deadline: Instant::now() + BUDGET,
            log: log.to_path_buf(),
            _profile: profile,
        }
    }

    /// The next message from the browser, within the budget.
    fn recv(&mut self, waiting_for: &str) -> Value {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match self.from_browser.recv_timeout(left) {
            Ok(v) => v,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "no {waiting_for} from chromium within {} s{}",
                BUDGET.as_secs(),
                self.log_tail()
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                "chromium closed its CDP pipe while we waited for {waiting_for} (exit: {:?}){}",
                self.child.try_wait().ok().flatten(),
                self.log_tail()
            ),
        }
    }

    /// Sends a command (to the page's session if `session` is given) and
    /// returns its result; events that arrive meanwhile are kept.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        if let Err(e) = self
            .to_browser
            .write_all(&bytes)
            .and_then(|()| self.to_browser.flush())
        {
            panic!("sending {method} to chromium: {e}{}", self.log_tail());
        }
        loop {
            let m = self.recv(&format!("answer to {method}"));
            if m.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(err) = m.get("error") {
                    panic!("{method} failed: {err}");
                }
                return m["result"].clone();
            }
            if m.get("method").is_some() {
                self.events.push(m);
            }
        }
    }

    /// Waits for the event `method` (one that already came counts).
    fn wait_event(&mut self, method: &str) -> Value {
        if let Some(e) = self.events.iter().find(|e| e["method"] == method) {
            return e.clone();
        }
        loop {
            let m = self.recv(method);
            if m.get("method").is_some() {
                self.events.push(m.clone());
                if m["method"] == method {
                    return m;
                }
            }
        }
    }

    /// Takes in the events that have arrived by now, without waiting.
    fn drain_events(&mut self) {
        while let Ok(m) = self.from_browser.try_recv() {
            if m.get("method").is_some() {
                self.events.push(m);
            }
        }
    }

    /// The end of chromium's stderr, for a failure message.
    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        // Without the noise of a machine with no D-Bus.
        let lines: Vec<&str> = text.lines().filter(|l| !l.contains(":dbus/")).collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        format!(
            "\nchromium's stderr ({}), last lines but D-Bus's:\n{tail}",
            self.log.display()
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, killpg, Signal};
        use nix::unistd::Pid;
        let pid = self.child.id() as i32;
        // By pid, never by name: the browser's process group is its own
        // (process_group(0)), so the zygotes, renderers and utility
        // processes go with it.
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Then what left the group: the crash handlers start their own
        // session; being the subreaper, we inherit them. Each names the
        // profile directory on its command line. Bounded, and reaped, so
        // the profile directory is removed after the last of them.
        let profile = self._profile.path().to_path_buf();
        let me = std::process::id() as i32;
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            util::ps::reap_zombies();
            let left: Vec<util::ps::Proc> = util::ps::all()
                .into_iter()
                .filter(|p| p.pgrp == pid || p.refers_to(&profile) || (p.ppid == me && !p.alive()))
                .collect();
            if left.is_empty() || Instant::now() > until {
                break;
            }
            for p in left.iter().filter(|p| p.alive()) {
                let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Reads chromium's NUL-terminated JSON messages until the pipe closes.
fn read_messages(from: impl Read, tx: mpsc::Sender<Value>) {
    let mut r = BufReader::new(from);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(0, &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if buf.last() == Some(&0) {
            buf.pop();
        }
        match serde_json::from_slice::<Value>(&buf) {
            Ok(v) => {
                if tx.send(v).is_err() {
                    return;
                }
            }
            Err(e) => eprintln!(
                "unreadable CDP message ({e}): {}",
                String::from_utf8_lossy(&buf[..buf.len().min(200)])
            ),
        }
    }
}

/// Copies a directory tree.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// `path` (absolute) as a file:// URL.
fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for b in path.to_str().expect("a UTF-8 path").bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// A PNG's width and height, after checking its signature, that it opens
/// with a well-formed IHDR and closes with IEND, and every chunk's CRC.
fn png_size(png: &[u8]) -> Result<(u32, u32), String> {
    const SIG: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    if png.len() < 8 || png[..8] != SIG {
        return Err("no PNG signature".into());
    }
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let (mut at, mut size, mut last) = (8, None, "");
    while at < png.len() {
        let head = png.get(at..at + 8).ok_or("truncated chunk header")?;
        let len = be32(head) as usize;
        let kind = std::str::from_utf8(&head[4..8]).map_err(|_| "bad chunk type")?;
        let data = png
            .get(at + 8..at + 8 + len)
            .ok_or(format!("truncated {kind}"))?;
        let crc = png
            .get(at + 8 + len..at + 12 + len)
            .ok_or(format!("{kind} without CRC"))?;
        if crc32(&png[at + 4..at + 8 + len]) != be32(crc) {
            return Err(format!("{kind} chunk at {at} has a bad CRC"));
        }
        if at == 8 {
            if kind != "IHDR" || len != 13 {
                return Err(format!("first chunk is {kind}, not IHDR"));
            }
            size = Some((be32(&data[0..4]), be32(&data[4..8])));
        }
        last = kind;
        at += 12 + len;
    }
    if last != "IEND" {
        return Err(format!("last chunk is {last:?}, not IEND"));
    }
    size.ok_or_else(|| "no chunks".into())
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn write_png(b: &mut Browser, session: &str, params: Value, path: &Path) -> (u32, u32) {
    use base64::Engine;
    let shot = b.call(Some(session), "Page.captureScreenshot", params);
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("screenshot data"))
        .expect("screenshot data is base64");
    fs::write(path, &png).unwrap();
    // Check what landed on disk, as a reviewer will open it.
    let on_disk = fs::read(path).unwrap();
    assert!(!on_disk.is_empty(), "{} is empty", path.display());
    let (w, h) =
        png_size(&on_disk).unwrap_or_else(|e| panic!("{} is not a valid PNG: {e}", path.display()));
    assert!(w > 0 && h > 0, "{} is {w}x{h}", path.display());
    (w, h)
}

/// What the page shows, gathered in the page: images, plots, in-page links
/// and the resources it loaded.
const PAGE_CHECKS: &str = r##"(() => {
  const images = [...document.images].map(i => ({
    src: i.currentSrc || i.src, complete: i.complete, naturalWidth: i.naturalWidth }));
  const svgs = [...document.querySelectorAll('svg')]
    .filter(s => s.ownerSVGElement === null)
    .map((s, i) => {
      const r = s.getBoundingClientRect();
      return { label: s.getAttribute('aria-label') || ('svg #' + i),
               width: r.width, height: r.height,
               shapes: s.querySelectorAll('path,polyline,polygon,line,rect,circle,text').length };
    });
  const links = [...document.querySelectorAll('a[href^="#"]')].map(a => {
    const href = a.getAttribute('href');
    let name = href.slice(1);
    try { name = decodeURIComponent(name); } catch (e) {}
    const found = name === '' || document.getElementById(name) !== null
      || document.getElementsByName(name).length > 0;
    return { href, text: a.textContent.trim(), found };
  });
  return { title: document.title, images, svgs, links,
           figures: document.querySelectorAll('figure').length,
           resources: performance.getEntriesByType('resource').map(e => e.name) };
})()"##;

#[test]
fn the_html_report_renders_in_a_browser_with_every_plot_drawn_and_nothing_loaded() {
    let _serial = util::serial();
    let started = Instant::now();
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/reference");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-browser");
    let _ = fs::remove_dir_all(&out);
    copy_dir(&reference, &out);
    let mut report = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("report")
        .arg(&out)
        .stdout(Stdio::null())
        .spawn()
        .expect("run harness report");
    let until = Instant::now() + BUDGET;
    let st = loop {
        if let Some(st) = report.try_wait().expect("wait for harness report") {
            break st;
        }
        if Instant::now() > until {
            let _ = report.kill();
            let _ = report.wait();
            panic!("harness report {} took over {BUDGET:?}", out.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        st.success(),
        "harness report {} failed: {st}",
        out.display()
    );
    let html = out.join("report.html").canonicalize().unwrap();
    let plots = fs::read_dir(out.join("plots"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "svg"))
        })
        .count();
    assert!(plots > 0, "the reference session renders no plot");
    let url = file_url(&html);

    let mut b = Browser::launch(&out.join("chromium.log"));
    let target = b.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
    let target_id = target["targetId"].as_str().expect("targetId").to_string();
    let attached = b.call(
        None,
        "Target.attachToTarget",
        json!({ "targetId": target_id, "flatten": true }),
    );
    let session = attached["sessionId"]
        .as_str()
        .expect("sessionId")
        .to_string();
    let s = Some(session.as_str());
    for domain in ["Network", "Runtime", "Log", "Page"] {
        b.call(s, &format!("{domain}.enable"), json!({}));
    }
    b.call(
        s,
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": VIEWPORT.0, "height": VIEWPORT.1, "deviceScaleFactor": 1, "mobile": false }),
    );
    let nav = b.call(s, "Page.navigate", json!({ "url": url }));
    assert!(
        nav.get("errorText").is_none(),
        "navigating to {url}: {}",
        nav["errorText"]
    );
    b.wait_event("Page.loadEventFired");
    // Let anything the page would still do after load (a late request, an
    // error from a timer) arrive; and have it painted.
    let settled = b.call(
        s,
        "Runtime.evaluate",
        json!({
            "expression": "new Promise(r => requestAnimationFrame(() => setTimeout(() => r(document.readyState), 300)))",
            "awaitPromise": true,
            "returnByValue": true,
        }),
    );
    assert_eq!(settled["result"]["value"], "complete", "{settled}");
    let checked = b.call(
        s,
        "Runtime.evaluate",
        json!({ "expression": PAGE_CHECKS, "returnByValue": true }),
    );
    assert!(
        checked.get("exceptionDetails").is_none(),
        "the checks' script threw: {}",
        checked["exceptionDetails"]
    );
    let page = checked["result"]["value"].clone();

    // The screenshots: the first screen, then the whole page.
    let top_png = out.join("report-top.png");
    let top = write_png(&mut b, &session, json!({ "format": "png" }), &top_png);
    let metrics = b.call(s, "Page.getLayoutMetrics", json!({}));
    let content = &metrics["cssContentSize"];
    let (cw, ch) = (
        content["width"].as_f64().expect("content width").ceil(),
        content["height"].as_f64().expect("content height").ceil(),
    );
    let full_png = out.join("report.png");
    let full = write_png(
        &mut b,
        &session,
        json!({
            "format": "png",
            "captureBeyondViewport": true,
            "clip": { "x": 0, "y": 0, "width": cw, "height": ch, "scale": 1 },
        }),
        &full_png,
    );
    b.drain_events();
    let events = std::mem::take(&mut b.events);
    drop(b);

    // What went wrong, all of it in one failure message.
    let mut problems = Vec::new();
    for e in &events {
        let p = &e["params"];
        match e["method"].as_str().unwrap_or("") {
            "Network.requestWillBeSent" => {
                let u = p["request"]["url"].as_str().unwrap_or("");
                let own = u.split('#').next() == Some(url.as_str());
                if !own && !u.starts_with("data:") {
                    problems.push(format!("network request to {u}"));
                }
            }
            "Network.webSocketCreated" => {
                problems.push(format!("websocket to {}", p["url"]));
            }
            "Network.loadingFailed" => {
                problems.push(format!("a load failed: {}", p["errorText"]));
            }
            "Runtime.exceptionThrown" => {
                let d = &p["exceptionDetails"];
                problems.push(format!(
                    "uncaught exception: {} {}",
                    d["text"], d["exception"]["description"]
                ));
            }
            "Runtime.consoleAPICalled"
                if matches!(p["type"].as_str(), Some("error" | "assert")) =>
            {
                let args: Vec<String> = p["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| a.get("value").unwrap_or(&a["description"]).to_string())
                    .collect();
                problems.push(format!(
                    "console.{}: {}",
                    p["type"].as_str().unwrap_or("?"),
                    args.join(" ")
                ));
            }
            "Log.entryAdded" if p["entry"]["level"] == "error" => {
                problems.push(format!(
                    "logged error ({}): {} {}",
                    p["entry"]["source"], p["entry"]["text"], p["entry"]["url"]
                ));
            }
            _ => {}
        }
    }
    for r in page["resources"].as_array().expect("resources") {
        let u = r.as_str().unwrap_or("");
        if !u.starts_with("data:") && u.split('#').next() != Some(url.as_str()) {
            problems.push(format!("the page loaded {u}"));
        }
    }
    for img in page["images"].as_array().expect("images") {
        if img["complete"] != true || img["naturalWidth"].as_f64().unwrap_or(0.0) <= 0.0 {
            problems.push(format!("broken image {}", img["src"]));
        }
    }
    let svgs = page["svgs"].as_array().expect("svgs");
    for svg in svgs {
        let (w, h) = (
            svg["width"].as_f64().unwrap_or(0.0),
            svg["height"].as_f64().unwrap_or(0.0),
        );
        if w <= 0.0 || h <= 0.0 {
            problems.push(format!("plot {} is drawn {w}x{h}", svg["label"]));
        }
        if svg["shapes"].as_u64().unwrap_or(0) == 0 {
            problems.push(format!("plot {} draws nothing", svg["label"]));
        }
    }
    if svgs.len() != plots {
        problems.push(format!(
            "{} plots on the page, {plots} in plots/",
            svgs.len()
        ));
    }
    if page["figures"].as_u64() != Some(plots as u64) {
        problems.push(format!(
            "{} figures on the page, {plots} in plots/",
            page["figures"]
        ));
    }
    let links = page["links"].as_array().expect("links");
    for l in links {
        if l["found"] != true {
            problems.push(format!(
                "link {} goes to {}, which is not on the page",
                l["text"], l["href"]
            ));
        }
    }
    if links.is_empty() {
        problems.push("no in-page link to check".into());
    }
    if !page["title"]
        .as_str()
        .is_some_and(|t| t.starts_with("prefork-lab"))
    {
        problems.push(format!("the page's title is {}", page["title"]));
    }
    assert!(
        top == VIEWPORT,
        "the first screen's screenshot is {top:?}, not {VIEWPORT:?}"
    );
    assert!(
        (f64::from(full.0) - cw).abs() <= 1.0 && (f64::from(full.1) - ch).abs() <= 1.0,
        "the whole page's screenshot is {full:?}, the page {cw}x{ch}"
    );
    eprintln!(
        "report-browser: {} plots, {} in-page links, {} images checked; screenshots {} ({}x{}) and {} ({}x{}); {:.1} s",
        svgs.len(),
        links.len(),
        page["images"].as_array().map_or(0, Vec::len),
        full_png.display(),
        full.0,
        full.1,
        top_png.display(),
        top.0,
        top.1,
        started.elapsed().as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "{} problem(s) with {}:\n  {}",
        problems.len(),
        html.display(),
        problems.join("\n  ")
    );
}

#[test]
fn png_check_tells_a_png_from_a_truncated_one() {
    // The smallest PNG: 1x1, grey.
    let png: [u8; 67] = [
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x3a,
        0x7e, 0x9b, 0x55, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60,
        0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0x48, 0xaf, 0xa4, 0x71, 0x00, 0x00, 0x00, 0x00, 0x49,
        0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];
    assert_eq!(png_size(&png), Ok((1, 1)));
    assert!(png_size(&png[..60]).is_err());
    assert!(png_size(&png[1..]).is_err());
    let mut bad = png;
    bad[20] = 9; // width changed, CRC not
    assert!(png_size(&bad).is_err());
}
