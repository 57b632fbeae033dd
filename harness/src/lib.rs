//! fswal-harness: the `fswal` command-line tool's commands and the pieces they share.
//!
//! | module | what |
//! |---|---|
//! | [`bench`](mod@bench) | what `fswal bench` measures: the floors, the hot path, replay |
//! | [`crashsim`] | the crash simulator: crash images under the fault model, recovered and checked |
//! | [`cmd`] | one module per subcommand: `record`, `verify`, `dump`, `salvage`, `preserved`, `convert`, `demo`, `crashsim`, `bench` |
//! | [`store`] | the stores commands open: a WAL directory through the file, mmap or O_DIRECT backend, or a raw device |
//! | [`error`] | the one-line error every command reports, and its JSON object |
//! | [`progress`] | the progress bars on stderr: when one is drawn, and the bar itself |
//! | [`clock`] | the wall clock segments are stamped with |

pub mod bench;
pub mod clock;
pub mod cmd;
pub mod crashsim;
pub mod error;
pub mod progress;
pub mod store;
