//! fswal-harness: the `fswal` command-line tool's commands and the pieces they share.
//!
//! | module | what |
//! |---|---|
//! | [`cmd`] | one module per subcommand: `record`, `verify`, `dump`, `demo` |
//! | [`store`] | the stores commands open: a WAL directory through the file, mmap or O_DIRECT backend, or a raw device |
//! | [`error`] | the one-line error every command reports |
//! | [`clock`] | the wall clock segments are stamped with |

pub mod clock;
pub mod cmd;
pub mod error;
pub mod store;
