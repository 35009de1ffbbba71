//! What a command's failure is, and so its exit code: the kind is a type,
//! chosen where the failure is understood, not a flag re-read at the end.

use std::fmt;

/// Exit code of an interrupted session (128 + SIGINT), as shells use.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Why a command failed, with its one-line message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// Bad options or arguments: exit 2.
    Usage(String),
    /// Something went wrong (a file, a server, a host): exit 1.
    Failed(String),
    /// SIGINT or SIGTERM stopped a session; what ran is written: exit 130.
    Interrupted(String),
    /// `harness regress` found a performance regression: exit 3.
    Regression(String),
}

impl Error {
    /// The process's exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Failed(_) => 1,
            Error::Interrupted(_) => EXIT_INTERRUPTED,
            Error::Regression(_) => crate::regress::EXIT_REGRESSION,
        }
    }

    /// The message, for people.
    pub fn message(&self) -> &str {
        match self {
            Error::Usage(m) | Error::Failed(m) | Error::Interrupted(m) | Error::Regression(m) => m,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_exit_code() {
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        assert_eq!(Error::Failed("x".into()).exit_code(), 1);
        assert_eq!(Error::Interrupted("x".into()).exit_code(), 130);
        assert_eq!(Error::Regression("x".into()).exit_code(), 3);
        assert_eq!(
            Error::Failed("no such file".into()).to_string(),
            "no such file"
        );
    }
}
