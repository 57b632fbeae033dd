//! `fswal`: record, verify, dump, salvage and demonstrate FlashStrike write-ahead logs,
//! and list what recovery kept aside from them.
//!
//! Exit codes: 0 success (for `verify`: everything present is valid), 1 damage or
//! truncation found, 2 usage or I/O errors.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fswal_harness::cmd::{
    bench, convert, crashsim, demo, dump, preserved, record, salvage, verify,
};

#[derive(Parser, Debug)]
#[command(name = "fswal", version, about = "FlashStrike write-ahead log tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Record a million events, crash mid-segment, recover, replay, and report.
    Demo(demo::DemoArgs),
    /// Append events of the reference stream to a WAL directory, then seal.
    Record(record::RecordArgs),
    /// Check a WAL directory or segment file against every rule of the format.
    Verify(verify::VerifyArgs),
    /// Print the verified events in order, one per line.
    Dump(dump::DumpArgs),
    /// Copy everything diagnostic replay salvages from a damaged WAL into a new, valid
    /// one, and report every gap.
    Salvage(salvage::SalvageArgs),
    /// List, export and release what was kept aside from a log: set-aside tails,
    /// torn-tail copies, quarantine entries.
    Preserved(preserved::PreservedArgs),
    /// Rewrite a directory's compressed segments as standard LZ4 frames with fswal's
    /// block index (fswal's old LZ4 containers; with --reindex, frames without an index).
    Convert(convert::ConvertArgs),
    /// Crash a seeded workload at every point, recover every crash image, check it.
    Crashsim(crashsim::CrashsimArgs),
    /// Measure recording, verification, replay and the hot path against this machine's
    /// floors.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Record(a) => record::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Dump(a) => dump::run(a),
        Command::Salvage(a) => salvage::run(a),
        Command::Preserved(a) => preserved::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Crashsim(a) => crashsim::run(a),
        Command::Bench(a) => bench::run(a),
    };
    result.unwrap_or_else(|e| {
        eprintln!("fswal: {e}");
        ExitCode::from(2)
    })
}
