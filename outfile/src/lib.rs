//! Writing an output file that somebody named, without destroying what is
//! not ours.
//!
//! Every output of the lab (loadgen's `--json`, lab-server's `--stats-out`,
//! the harness's results and baselines) goes through this crate, so one set
//! of rules holds everywhere:
//!
//! - a regular file, or a path that does not exist yet, is written whole or
//!   not at all: a temporary file beside it, synced, then renamed over it (a
//!   reader never sees half a file; an existing file keeps its permissions);
//! - a symbolic link is followed, never replaced: the file it points to is
//!   updated as above and the link stays;
//! - a character device or a terminal (`/dev/null`, `/dev/stdout`, a pty) is
//!   written to directly; renaming over it would replace the device node
//!   (as root, `/dev/null` would become a regular file for the whole machine);
//! - a FIFO is opened without blocking and written to directly; with nobody
//!   reading it the write fails at once with one line instead of hanging;
//! - `-` means standard output where the caller allows it;
//! - a directory, a block device or a socket is refused, and so is a path
//!   whose directory cannot be written: [`Output::check`] says so before any
//!   work starts.
//!
//! The kind of the target is looked at again when writing, since it may
//! have changed during a long run.

use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

/// Symbolic links followed before giving up (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// Why an output cannot be written: one line, naming the path and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<Error> for String {
    fn from(e: Error) -> String {
        e.0
    }
}

/// What a path turned out to be, after following symbolic links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Nothing there yet: created by rename.
    Missing,
    /// A regular file: replaced by rename.
    Regular,
    /// A character device or terminal: written in place.
    CharDevice,
    /// A named pipe: written in place, only while somebody reads it.
    Fifo,
    /// Refused.
    Directory,
    /// Refused: writing would overwrite a disk.
    BlockDevice,
    /// Refused: a Unix socket cannot be opened as a file.
    Socket,
}

/// A checked output destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    dest: Dest,
    /// The option that named it, for messages (`--json`), or empty.
    flag: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Dest {
    Stdout,
    Path(PathBuf),
}

/// Whether `-` may name standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dash {
    /// `-` is standard output.
    Stdout,
    /// `-` is an ordinary file name (the caller refuses it itself when it
    /// means something else there).
    FileName,
}

impl Output {
    /// Checks `path`, named by option `flag` (e.g. `--json`; empty when no
    /// option named it), before any work starts: refuses a directory, a
    /// block device, a socket, a missing directory and a directory we cannot
    /// write in, each with one line that says what to do.
    pub fn check(flag: &str, path: &Path, dash: Dash) -> Result<Output, Error> {
        let flag = flag.to_string();
        if dash == Dash::Stdout && path == Path::new("-") {
            return Ok(Output {
                dest: Dest::Stdout,
                flag,
            });
        }
        let out = Output {
            dest: Dest::Path(path.to_path_buf()),
            flag,
        };
        if path.as_os_str().is_empty() {
            return Err(out.error("an empty path: give a file name"));
        }
        let (target, kind) = resolve(path).map_err(|e| out.error(e))?;
        match kind {
            Kind::Missing | Kind::Regular => {
                if target.file_name().is_none() {
                    return Err(out.error("not a file name: give a path like results/out.json"));
                }
                let dir = parent(&target);
                if !dir.is_dir() {
                    return Err(out.error(format!(
                        "the directory {} does not exist: create it or pick another path",
                        dir.display()
                    )));
                }
                // A probe of the very kind the write will make.
                let probe = temp_name(&target);
                match OpenOptions::new().write(true).create_new(true).open(&probe) {
                    Ok(_) => {
                        let _ = std::fs::remove_file(&probe);
                        Ok(out)
                    }
                    Err(e) => Err(out.error(format!(
                        "cannot create files in {} ({e}): pick a writable directory",
                        dir.display()
                    ))),
                }
            }
            Kind::CharDevice => open_device(&target)
                .map(|_| out.clone())
                .map_err(|e| out.error(format!("cannot open the device for writing ({e})"))),
            Kind::Fifo => {
                // Nobody needs to read it yet; only at the write.
                nix::unistd::access(&target, nix::unistd::AccessFlags::W_OK)
                    .map(|_| out.clone())
                    .map_err(|e| out.error(format!("cannot write the FIFO ({e})")))
            }
            refused => Err(out.error(refusal(refused))),
        }
    }

    /// Whether this is standard output (the caller then prints its human
    /// summary to standard error).
    pub fn is_stdout(&self) -> bool {
        self.dest == Dest::Stdout
    }

    /// The path as given (`-` for standard output).
    pub fn path(&self) -> &Path {
        match &self.dest {
            Dest::Stdout => Path::new("-"),
            Dest::Path(p) => p,
        }
    }

    /// Writes `bytes` by the rules of the crate.
    pub fn write(&self, bytes: &[u8]) -> Result<(), Error> {
        match &self.dest {
            Dest::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes)
                    .and_then(|_| out.flush())
                    .map_err(|e| self.error(format!("cannot write standard output ({e})")))
            }
            Dest::Path(p) => write_path(p, bytes).map_err(|e| self.error(e)),
        }
    }

    /// Writes `value` as pretty JSON and a newline (see [`json_bytes`]).
    pub fn write_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let bytes =
            json_bytes(value).map_err(|e| self.error(format!("cannot serialize it ({e})")))?;
        self.write(&bytes)
    }

    fn error(&self, what: impl fmt::Display) -> Error {
        let shown = self.path().display();
        if self.flag.is_empty() {
            Error(format!("{shown}: {what}"))
        } else {
            Error(format!("{} {shown}: {what}", self.flag))
        }
    }
}

/// Writes `bytes` to `path` by the rules of the crate, for outputs that no
/// option names (files the lab creates inside a directory it was given).
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_path(path, bytes).map_err(|e| Error(format!("cannot write {}: {e}", path.display())))
}

/// [`write`] of `value` as pretty JSON and a newline.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), Error> {
    let bytes = json_bytes(value)
        .map_err(|e| Error(format!("cannot serialize {} ({e})", path.display())))?;
    write(path, &bytes)
}

/// `value` as pretty JSON ending in a newline: every JSON file of the lab
/// (results, run records, stats files) has this form, written in one piece.
pub fn json_bytes<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Whether `path` is a temporary file of this crate (`.NAME.tmp-PID-N`),
/// left behind only by a writer that was killed before its rename. Never
/// ends in the target's extension, so readers looking for `*.json` skip it.
pub fn is_temp_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n.contains(".tmp-"))
}

/// Follows symbolic links from `path` to the path that will really be
/// written, and says what is there.
pub fn resolve(path: &Path) -> Result<(PathBuf, Kind), String> {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((p, Kind::Missing)),
            Err(e) => return Err(format!("cannot look at {} ({e})", p.display())),
        };
        if meta.file_type().is_symlink() {
            let link = std::fs::read_link(&p).map_err(|e| format!("cannot read the link ({e})"))?;
            p = if link.is_absolute() {
                link
            } else {
                parent(&p).join(link)
            };
            continue;
        }
        return Ok((p, kind_of(&meta)));
    }
    Err(format!(
        "more than {MAX_LINKS} symbolic links in a row: is there a loop?"
    ))
}

fn kind_of(meta: &Metadata) -> Kind {
    let t = meta.file_type();
    if t.is_file() {
        Kind::Regular
    } else if t.is_dir() {
        Kind::Directory
    } else if t.is_char_device() {
        Kind::CharDevice
    } else if t.is_fifo() {
        Kind::Fifo
    } else if t.is_block_device() {
        Kind::BlockDevice
    } else {
        Kind::Socket
    }
}

fn refusal(kind: Kind) -> &'static str {
    match kind {
        Kind::Directory => "is a directory: give a file name",
        Kind::BlockDevice => "is a block device, which this would overwrite: give a file name",
        Kind::Socket => "is a socket, not a file: give a file name",
        _ => unreachable!("only refused kinds have a refusal"),
    }
}

fn write_path(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let (target, kind) = resolve(path)?;
    match kind {
        Kind::Missing => replace(&target, bytes, None),
        Kind::Regular => {
            let mode = std::fs::metadata(&target).ok().map(|m| m.permissions());
            replace(&target, bytes, mode)
        }
        Kind::CharDevice => open_device(&target)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(|e| e.to_string()),
        Kind::Fifo => write_fifo(&target, bytes),
        refused => Err(refusal(refused).to_string()),
    }
}

/// Temporary file beside `target`, synced, renamed over it, the directory
/// synced (best effort: not every file system can).
fn replace(target: &Path, bytes: &[u8], mode: Option<std::fs::Permissions>) -> Result<(), String> {
    let tmp = temp_name(target);
    let res = (|| -> io::Result<()> {
        // create_new: never follow or reuse something already at that name.
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        if let Some(mode) = &mode {
            f.set_permissions(std::fs::Permissions::from_mode(mode.mode()))?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, target)?;
        let _ = File::open(parent(target)).and_then(|d| d.sync_all());
        Ok(())
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{e}; check that the directory is writable and not full")
    })
}

fn open_device(path: &Path) -> io::Result<File> {
    // No O_TRUNC, no O_CREAT; O_NOCTTY so a terminal never becomes our
    // controlling terminal.
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
}

fn write_fifo(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ENXIO) {
                "nobody is reading this FIFO: start its reader first".to_string()
            } else {
                format!("cannot open the FIFO ({e})")
            }
        })?;
    // A reader is there: from now on wait for it like any pipe writer.
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::fd::AsRawFd;
    let flags = fcntl(f.as_raw_fd(), FcntlArg::F_GETFL).map_err(|e| e.to_string())?;
    let blocking = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(f.as_raw_fd(), FcntlArg::F_SETFL(blocking)).map_err(|e| e.to_string())?;
    (&f).write_all(bytes).map_err(|e| e.to_string())
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// `.NAME.tmp-PID-N`: hidden, unique per process and call (two threads or
/// processes writing into one folder never share one), and never ending in
/// `.json`.
fn temp_name(target: &Path) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    parent(target).join(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_hidden_unique_and_not_json() {
        let a = temp_name(Path::new("d/x.json"));
        let b = temp_name(Path::new("d/x.json"));
        assert_ne!(a, b);
        assert!(is_temp_file(&a));
        assert!(!a.to_string_lossy().ends_with(".json"));
        assert!(!is_temp_file(Path::new("d/x.json")));
        assert!(is_temp_file(Path::new(".loadgen.json.tmp-77")));
    }

    #[test]
    fn dash_is_stdout_only_when_allowed() {
        let o = Output::check("--json", Path::new("-"), Dash::Stdout).unwrap();
        assert!(o.is_stdout());
        assert_eq!(o.path(), Path::new("-"));
    }

    #[test]
    fn an_empty_path_is_refused() {
        let e = Output::check("--json", Path::new(""), Dash::Stdout).unwrap_err();
        assert!(e.to_string().contains("empty path"), "{e}");
    }
}
