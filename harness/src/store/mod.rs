//! A results directory: writing files atomically, the session directories,
//! reading a session back, and the summary's JSON schema.

pub mod results;
pub mod schema;
pub mod session;
