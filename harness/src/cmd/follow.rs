//! `fswal follow`: build or extend a verified replica of a stream in a directory.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use fswal_replicate::follow::{Progress, follow};
use fswal_replicate::nats::{LogStream, connect};
use fswal_replicate::replica::Replica;

use crate::cmd::ship::runtime;
use crate::error::CliError;

/// Arguments of `fswal follow`.
#[derive(Args, Debug)]
pub struct FollowArgs {
    /// The NATS servers, comma-separated (`nats://host:port,...`).
    #[arg(long, value_name = "URLS")]
    pub nats: String,
    /// The JetStream stream to follow.
    #[arg(long, value_name = "NAME")]
    pub stream: String,
    /// The replica's directory (created when missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// Exit 0 once the replica durably holds this event.
    #[arg(long, value_name = "ID")]
    pub until: Option<u64>,
    /// Report progress as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
}

fn progress_line(p: &Progress, json: bool) -> String {
    if json {
        format!(
            "{{\"sequence\":{},\"durable_event_id\":{},\"lag_events\":{},\"lag_ms\":{}}}",
            p.sequence, p.durable_event_id, p.lag_events, p.lag_ms
        )
    } else {
        format!(
            "following: sequence {}, durable through event {}, lag {} event(s), {} ms",
            p.sequence, p.durable_event_id, p.lag_events, p.lag_ms
        )
    }
}

/// Runs `fswal follow`.
pub fn run(args: &FollowArgs) -> Result<ExitCode, CliError> {
    let mut replica =
        Replica::open(&args.dir, &args.stream).map_err(|e| CliError::new(e.to_string()))?;
    let rt = runtime()?;
    let json = args.json;
    let done = rt
        .block_on(async {
            let client = connect(&args.nats).await?;
            let stream = LogStream::open(client, &args.stream).await?;
            follow(&stream, &mut replica, args.until, |p| {
                let line = progress_line(p, json);
                if json {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
                } else {
                    eprintln!("fswal: {line}");
                }
            })
            .await
        })
        .map_err(|e| CliError::new(e.to_string()))?;
    if !json {
        println!(
            "replica {} holds events through {} (stream {} sequence {})",
            args.dir.display(),
            done.durable_event_id,
            args.stream,
            done.sequence
        );
    }
    Ok(ExitCode::SUCCESS)
}
