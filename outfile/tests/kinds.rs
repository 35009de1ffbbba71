//! What each kind of target becomes after a write, as the kernel shows it.
//!
//! Run as root (as CI does): the tests make device nodes with mknod.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::stat::{mknod, Mode, SFlag};
use outfile::{Dash, Kind, Output};

/// What `path` itself is (a symlink is not followed).
fn ftype(path: &Path) -> std::fs::FileType {
    std::fs::symlink_metadata(path).unwrap().file_type()
}

fn root() {
    assert!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0,
        "these tests make device nodes and must run as root (as CI does)"
    );
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("outfile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_copy_of_dev_null_stays_a_character_device() {
    root();
    let d = temp_dir("null");
    let null = d.join("null");
    mknod(
        &null,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let out = Output::check("--json", &null, Dash::Stdout).unwrap();
    out.write(b"{\"a\": 1}\n").unwrap();
    outfile::write(&null, b"again\n").unwrap();
    let meta = std::fs::symlink_metadata(&null).unwrap();
    assert!(meta.file_type().is_char_device(), "{meta:?}");
    assert_eq!(names(&d), ["null"], "no temporary file left");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_regular_file_is_replaced_whole_and_keeps_its_mode() {
    let d = temp_dir("regular");
    let f = d.join("out.json");
    std::fs::write(&f, "old old old old\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    Output::check("--json", &f, Dash::Stdout)
        .unwrap()
        .write(b"new\n")
        .unwrap();
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "new\n");
    let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    assert_eq!(names(&d), ["out.json"]);
    // A missing file is created.
    outfile::write(&d.join("new.json"), b"x").unwrap();
    assert_eq!(std::fs::read(d.join("new.json")).unwrap(), b"x");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_symlink_is_followed_and_stays_a_link() {
    let d = temp_dir("link");
    std::fs::create_dir(d.join("real")).unwrap();
    let file = d.join("real/out.json");
    std::fs::write(&file, "old\n").unwrap();
    let link = d.join("link.json");
    std::os::unix::fs::symlink("real/out.json", &link).unwrap();
    // A chain of links, the last one relative to its own directory.
    let link2 = d.join("link2.json");
    std::os::unix::fs::symlink(&link, &link2).unwrap();
    let out = Output::check("--json", &link2, Dash::Stdout).unwrap();
    out.write(b"new\n").unwrap();
    assert!(ftype(&link).is_symlink());
    assert!(ftype(&link2).is_symlink());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "new\n");
    // A dangling link: the file it names is created, the link stays.
    let dangling = d.join("dangling.json");
    std::os::unix::fs::symlink("real/later.json", &dangling).unwrap();
    outfile::write(&dangling, b"later\n").unwrap();
    assert!(ftype(&dangling).is_symlink());
    assert_eq!(
        std::fs::read_to_string(d.join("real/later.json")).unwrap(),
        "later\n"
    );
    // A loop is refused with one line.
    std::os::unix::fs::symlink("loop-b", d.join("loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", d.join("loop-b")).unwrap();
    let e = Output::check("--json", &d.join("loop-a"), Dash::Stdout).unwrap_err();
    assert!(e.to_string().contains("loop"), "{e}");
    assert!(!e.to_string().contains('\n'));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_fifo_with_a_reader_receives_the_bytes() {
    let d = temp_dir("fifo");
    let fifo = d.join("pipe");
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
    let out = Output::check("--json", &fifo, Dash::Stdout).unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            std::fs::File::open(&fifo)
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            s
        })
    };
    // The reader's open blocks until a writer comes, and the write needs a
    // reader: retry until the reader's open is in.
    let deadline = Instant::now() + Duration::from_secs(10);
    let payload = vec![b'x'; 200_000]; // more than a pipe holds
    loop {
        match out.write(&payload) {
            Ok(()) => break,
            Err(e) if e.to_string().contains("nobody is reading") => {
                assert!(Instant::now() < deadline, "the reader never opened");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(reader.join().unwrap().len(), payload.len());
    assert!(ftype(&fifo).is_fifo());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_fifo_nobody_reads_fails_at_once_with_one_line() {
    let d = temp_dir("fifo-alone");
    let fifo = d.join("pipe");
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
    let out = Output::check("--json", &fifo, Dash::Stdout).unwrap();
    let t = Instant::now();
    let e = out.write(b"x").unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_secs(5), "it must not wait");
    assert!(e.starts_with("--json "), "{e}");
    assert!(e.contains("nobody is reading this FIFO"), "{e}");
    assert!(!e.contains('\n'));
    assert!(ftype(&fifo).is_fifo());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn directories_block_devices_sockets_and_missing_directories_are_refused_before_any_work() {
    root();
    let d = temp_dir("refused");
    let check = |p: &Path| {
        Output::check("--out", p, Dash::Stdout)
            .unwrap_err()
            .to_string()
    };
    let e = check(&d);
    assert!(e.contains("is a directory"), "{e}");
    // A loop device that does not exist: even a wrong write could not harm.
    let blk = d.join("blk");
    mknod(
        &blk,
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(7, 250),
    )
    .unwrap();
    let e = check(&blk);
    assert!(e.contains("block device"), "{e}");
    assert!(outfile::write(&blk, b"x").is_err());
    assert!(ftype(&blk).is_block_device());
    let sock = d.join("sock");
    let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let e = check(&sock);
    assert!(e.contains("socket"), "{e}");
    let e = check(&d.join("no/such/dir/out.json"));
    assert!(e.contains("does not exist"), "{e}");
    for e in [check(&d), check(&blk), check(&sock)] {
        assert!(e.starts_with("--out "), "{e}");
        assert!(!e.contains('\n'));
    }
    assert_eq!(outfile::resolve(&blk).unwrap().1, Kind::BlockDevice);
    assert_eq!(names(&d), ["blk", "sock"], "no probe left");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_directory_we_cannot_write_in_is_refused() {
    // Root writes anywhere a mode allows nothing, so use a read-only mount
    // point instead: /proc refuses new files for everyone.
    let e = Output::check(
        "--json",
        Path::new("/proc/prefork-lab-out.json"),
        Dash::Stdout,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("cannot create files in /proc"), "{e}");
}
