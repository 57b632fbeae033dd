//! The subcommands of `fswal`. Each returns the process exit code, or a [`CliError`]
//! (exit code 2).
//!
//! [`CliError`]: crate::error::CliError

pub mod bench;
pub mod convert;
pub mod crashsim;
pub mod demo;
pub mod dump;
pub mod follow;
pub mod preserved;
pub mod record;
pub mod salvage;
pub mod ship;
pub mod verify;

use clap::ValueEnum;

/// How replay treats a problem, as a command-line value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Stop at the first problem (point-in-time recovery).
    Strict,
    /// Skip bad blocks, resynchronise, report every gap (never rebuild state from it).
    Diagnostic,
}

impl From<ModeArg> for fswal_core::Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Strict => Self::Strict,
            ModeArg::Diagnostic => Self::Diagnostic,
        }
    }
}
