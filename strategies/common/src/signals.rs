//! Signals as file descriptors (`signalfd`), so that the master and the
//! workers see them as ordinary events in their epoll loops instead of in
//! asynchronous handlers.
//!
//! The master blocks the signals before it forks, so every worker starts with
//! them blocked too (the mask is inherited) and none can be lost between fork
//! and the worker's own signalfd.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Blocks `signals` for this thread (and all threads and children it creates).
pub fn block(signals: &[Signal]) -> io::Result<()> {
    let mut set = SigSet::empty();
    for s in signals {
        set.add(*s);
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    Ok(())
}

/// A non-blocking signalfd for the given (already blocked) signals.
pub struct SignalStream {
    fd: SignalFd,
}

impl SignalStream {
    /// Opens a signalfd for `signals`.
    pub fn open(signals: &[Signal]) -> io::Result<SignalStream> {
        let mut set = SigSet::empty();
        for s in signals {
            set.add(*s);
        }
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(SignalStream { fd })
    }

    /// Reads every pending signal.
    pub fn drain(&mut self) -> io::Result<Vec<Signal>> {
        let mut out = Vec::new();
        while let Some(info) = self.fd.read_signal()? {
            if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                out.push(sig);
            }
        }
        Ok(out)
    }
}

impl AsRawFd for SignalStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The worker's view: SIGTERM or SIGINT means "stop".
pub struct TermSignals(SignalStream);

impl TermSignals {
    /// Opens a signalfd for SIGTERM and SIGINT.
    pub fn open() -> io::Result<TermSignals> {
        block(&[Signal::SIGTERM, Signal::SIGINT])?;
        Ok(TermSignals(SignalStream::open(&[
            Signal::SIGTERM,
            Signal::SIGINT,
        ])?))
    }

    /// Reads pending signals; `true` if any arrived.
    pub fn drain(&self) -> io::Result<bool> {
        // SignalFd::read_signal takes &self in nix 0.29.
        let mut any = false;
        while self.0.fd.read_signal()?.is_some() {
            any = true;
        }
        Ok(any)
    }
}

impl AsRawFd for TermSignals {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
