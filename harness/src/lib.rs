//! fswal-harness: the `fswal` command-line tool's commands and the pieces they share.
//!
//! | module | what |
//! |---|---|
//! | [`cmd`] | one module per subcommand: `record`, `verify`, `dump`, `demo` |
//! | [`source`] | opening a path (a WAL directory or one segment file) for reading |
//! | [`error`] | the one-line error every command reports |
//! | [`clock`] | the wall clock segments are stamped with |

pub mod clock;
pub mod cmd;
pub mod error;
pub mod source;
