//! What `fswal bench` measures, one module per kind of measurement:
//!
//! | module | what |
//! |---|---|
//! | [`floors`] | what the machine allows: XXH64 double-hash over the WAL's files, sequential write + `fdatasync` in its directory |
//! | [`hotpath`] | `Recorder::append` latency at a paced rate, and throughput flat out, per backend |
//! | [`replay`] | verified replay handing events out, sequential and on every core |
//!
//! Whole-process figures (`fswal record`, `fswal verify`) are timed by running this
//! very executable as a child process, as a user would.

pub mod floors;
pub mod hotpath;
pub mod replay;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::CliError;

/// The median of `values` (the mean of the middle two for an even count); 0 for none.
#[must_use]
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs this executable with `args` as a child process and returns its wall time; its
/// output is discarded, and a failure is an error naming the command.
pub fn time_fswal(args: &[&str]) -> Result<Duration, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::new(format!("cannot find the fswal executable: {e}")))?;
    let start = Instant::now();
    let output = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| CliError::new(format!("{}: {e}", exe.display())))?;
    let elapsed = start.elapsed();
    if !output.status.success() {
        return Err(CliError::new(format!(
            "fswal {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(elapsed)
}

/// Removes the directory `dir` and everything in it, if it exists.
pub fn remove_dir(dir: &Path) -> Result<(), CliError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::new(format!("{}: {e}", dir.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[f64::NAN, 1.0]), 1.0);
    }
}
