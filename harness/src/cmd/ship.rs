//! `fswal ship`: publish what a WAL directory holds that its JetStream stream lacks.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use fswal_replicate::epoch::read_epoch;
use fswal_replicate::nats::{LogStream, connect};
use fswal_replicate::ship::ship_dir;

use crate::error::CliError;

/// Arguments of `fswal ship`.
#[derive(Args, Debug)]
pub struct ShipArgs {
    /// The WAL directory to ship.
    #[arg(long)]
    pub dir: PathBuf,
    /// The NATS servers, comma-separated (`nats://host:port,...`).
    #[arg(long, value_name = "URLS")]
    pub nats: String,
    /// The JetStream stream of this log (created when missing).
    #[arg(long, value_name = "NAME")]
    pub stream: String,
    /// Replicas of a stream this command creates (an existing stream keeps its own).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
}

/// A current-thread runtime for one command's requests.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the NATS client's runtime: {e}")))
}

/// Runs `fswal ship`.
pub fn run(args: &ShipArgs) -> Result<ExitCode, CliError> {
    let epoch = read_epoch(&args.dir).map_err(|e| CliError::new(e.to_string()))?;
    let rt = runtime()?;
    let shipped = rt
        .block_on(async {
            let client = connect(&args.nats).await?;
            let stream =
                LogStream::open_or_create(client, &args.stream, usize::from(args.replicas)).await?;
            ship_dir(&args.dir, &stream, epoch.epoch).await
        })
        .map_err(|e| CliError::new(e.to_string()))?;
    println!(
        "shipped {} message(s) of {} to stream {}; it holds events through {} (last sequence {})",
        shipped.messages,
        args.dir.display(),
        args.stream,
        shipped.last_event_id,
        shipped.last_sequence
    );
    Ok(ExitCode::SUCCESS)
}
