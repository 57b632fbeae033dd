//! `fswal`: record, verify, dump, salvage and demonstrate FlashStrike write-ahead logs,
//! and list what recovery kept aside from them.
//!
//! Exit codes: 0 success (for `verify`: everything present is valid), 1 damage or
//! truncation found, 2 usage or I/O errors (130 and 143: `record` stopped by SIGINT or
//! SIGTERM). An error that exits 2 is one line on stderr; a command given `--json`
//! also prints it on stdout as one JSON object, `{"error", "file", "offset"}` (file and
//! offset null when unknown).

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use fswal_harness::cmd::{
    bench, convert, crashsim, demo, dump, follow, preserved, record, salvage, ship, verify,
};
use fswal_harness::error::CliError;

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
    /// Publish what a WAL directory holds that its NATS JetStream stream lacks.
    Ship(ship::ShipArgs),
    /// Build or extend a verified replica of a JetStream stream in a directory.
    Follow(follow::FollowArgs),
    /// Crash a seeded workload at every point, recover every crash image, check it.
    Crashsim(crashsim::CrashsimArgs),
    /// Measure recording, verification, replay and the hot path against this machine's
    /// floors.
    Bench(bench::BenchArgs),
}

impl Command {
    /// Whether the command was given `--json`: its errors are then printed as a JSON
    /// object on stdout too.
    fn json(&self) -> bool {
        match self {
            Self::Verify(a) => a.json,
            Self::Salvage(a) => a.json,
            Self::Preserved(a) => a.json,
            Self::Crashsim(a) => a.json,
            Self::Bench(a) => a.json,
            Self::Follow(a) => a.json,
            Self::Demo(_) | Self::Record(_) | Self::Dump(_) | Self::Convert(_) | Self::Ship(_) => {
                false
            }
        }
    }
}

/// Whether `args` (the command line, without the program's name) names a subcommand
/// that takes `--json` and gives it: for a command line clap refused, so that its
/// error too can be printed as JSON.
fn json_requested(args: &[OsString]) -> bool {
    let Some(name) = args
        .iter()
        .find(|a| !a.to_string_lossy().starts_with('-'))
        .and_then(|a| a.to_str())
    else {
        return false;
    };
    let takes_json = Cli::command()
        .find_subcommand(name)
        .is_some_and(|c| c.get_arguments().any(|a| a.get_long() == Some("json")));
    // Arguments after `--` are values, never options.
    takes_json
        && args
            .iter()
            .take_while(|a| *a != "--")
            .any(|a| a == "--json")
}

/// Prints `error` as one JSON object on stdout; a closed stdout is not an error here,
/// since the same error goes to stderr.
fn print_json_error(error: &CliError) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", error.json_line()).and_then(|()| out.flush());
}

/// What a refused command line says, in one line: clap's first paragraph (the
/// error itself and the arguments it names), without its `error: ` prefix and the
/// usage and help that follow.
fn usage_error_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let first_paragraph: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let line = first_paragraph.join(" ");
    line.strip_prefix("error: ").unwrap_or(&line).to_owned()
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout and exit 0: they are no errors.
            if e.use_stderr() && json_requested(args.get(1..).unwrap_or_default()) {
                print_json_error(&CliError::new(usage_error_line(&e)));
            }
            e.exit()
        }
    };
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
        Command::Ship(a) => ship::run(a),
        Command::Follow(a) => follow::run(a),
    };
    result.unwrap_or_else(|e| {
        eprintln!("fswal: {e}");
        if cli.command.json() {
            print_json_error(&e);
        }
        ExitCode::from(2)
    })
}
