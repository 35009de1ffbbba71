//! Errors a run counts (as opposed to errors that end it).

use std::io;

use serde::{Deserialize, Serialize};

/// Failed requests by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// The connection was refused (nothing listening, or the queue overflowed
    /// with `tcp_abort_on_overflow`).
    pub refused: u64,
    /// The connection was reset (RST) or broke (EPIPE) during the request.
    pub reset: u64,
    /// The server closed the connection before a whole response.
    pub closed: u64,
    /// No whole response within `--timeout`.
    pub timeout: u64,
    /// The bytes were not an HTTP response.
    pub malformed: u64,
    /// A whole response whose status was not 2xx.
    pub non_2xx: u64,
    /// Any other connect error (e.g. `EADDRNOTAVAIL`: out of local ports).
    pub connect_other: u64,
    /// Due within the measured time but neither answered nor failed when the
    /// run ended (still queued or in flight).
    pub unfinished: u64,
}

impl ErrorCounts {
    /// All errors.
    pub fn total(&self) -> u64 {
        self.refused
            + self.reset
            + self.closed
            + self.timeout
            + self.malformed
            + self.non_2xx
            + self.connect_other
            + self.unfinished
    }

    /// Adds another set of counts.
    pub fn add(&mut self, o: &ErrorCounts) {
        self.refused += o.refused;
        self.reset += o.reset;
        self.closed += o.closed;
        self.timeout += o.timeout;
        self.malformed += o.malformed;
        self.non_2xx += o.non_2xx;
        self.connect_other += o.connect_other;
        self.unfinished += o.unfinished;
    }

    /// Counts one error of `kind`.
    pub fn count(&mut self, kind: ErrorKind) {
        *match kind {
            ErrorKind::Refused => &mut self.refused,
            ErrorKind::Reset => &mut self.reset,
            ErrorKind::Closed => &mut self.closed,
            ErrorKind::Timeout => &mut self.timeout,
            ErrorKind::Malformed => &mut self.malformed,
            ErrorKind::Non2xx => &mut self.non_2xx,
            ErrorKind::ConnectOther => &mut self.connect_other,
            ErrorKind::Unfinished => &mut self.unfinished,
        } += 1;
    }

    /// Non-zero kinds under their JSON names (the field names of `errors`),
    /// for the timeline's `errors` objects.
    pub fn nonzero_fields(&self) -> std::collections::BTreeMap<String, u64> {
        [
            ("refused", self.refused),
            ("reset", self.reset),
            ("closed", self.closed),
            ("timeout", self.timeout),
            ("malformed", self.malformed),
            ("non_2xx", self.non_2xx),
            ("connect_other", self.connect_other),
            ("unfinished", self.unfinished),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k.to_string(), n))
        .collect()
    }

    /// Non-zero kinds as `name count` pairs, for the summary.
    pub fn nonzero(&self) -> Vec<(&'static str, u64)> {
        [
            ("refused", self.refused),
            ("reset", self.reset),
            ("closed", self.closed),
            ("timeout", self.timeout),
            ("malformed", self.malformed),
            ("non-2xx", self.non_2xx),
            ("connect", self.connect_other),
            ("unfinished", self.unfinished),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }
}

/// One kind of counted error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// See [`ErrorCounts::refused`].
    Refused,
    /// See [`ErrorCounts::reset`].
    Reset,
    /// See [`ErrorCounts::closed`].
    Closed,
    /// See [`ErrorCounts::timeout`].
    Timeout,
    /// See [`ErrorCounts::malformed`].
    Malformed,
    /// See [`ErrorCounts::non_2xx`].
    Non2xx,
    /// See [`ErrorCounts::connect_other`].
    ConnectOther,
    /// See [`ErrorCounts::unfinished`].
    Unfinished,
}

impl ErrorKind {
    /// Classifies an I/O error on an established connection.
    pub fn of_io(e: &io::Error) -> ErrorKind {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => ErrorKind::Refused,
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => ErrorKind::Reset,
            _ => ErrorKind::Reset,
        }
    }

    /// Classifies a failed connect.
    pub fn of_connect(e: &io::Error) -> ErrorKind {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => ErrorKind::Refused,
            io::ErrorKind::ConnectionReset => ErrorKind::Reset,
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::ConnectOther,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonzero_fields_use_the_json_names() {
        let mut e = ErrorCounts::default();
        e.count(ErrorKind::Non2xx);
        e.count(ErrorKind::Unfinished);
        e.count(ErrorKind::Unfinished);
        let m = e.nonzero_fields();
        assert_eq!(m.len(), 2);
        assert_eq!((m["non_2xx"], m["unfinished"]), (1, 2));
        let json = serde_json::to_value(e).unwrap();
        for k in m.keys() {
            assert!(json.get(k).is_some(), "{k} is not a field of `errors`");
        }
    }
}
