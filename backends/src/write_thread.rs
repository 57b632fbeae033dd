//! A thread that issues a file's gathered writes, so that the caller builds the next
//! blocks (events copied, checksums computed) while the kernel copies the previous ones
//! into the page cache: on two cores, the two halves of recording overlap.
//!
//! The caller hands over whole buffers and gets empty ones back; at most
//! [`IN_FLIGHT_MAX`] are out at once, so memory stays bounded and a slow disk slows the
//! caller down instead of piling up. Writes are issued in the order handed over. A
//! failure is reported to the caller at its next hand-over, drain or sync, and from then
//! on every write fails: a write that never landed must never be followed by a sync
//! that claims success.

use std::format;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{self, JoinHandle};
use std::vec::Vec;

use crate::file::start_writeback;

/// Buffers handed over and not yet back.
pub const IN_FLIGHT_MAX: usize = 2;

/// A write the thread could not make.
#[derive(Debug)]
#[non_exhaustive]
pub struct Failed {
    /// Where it was to go.
    pub offset_bytes: u64,
    /// Why it failed.
    pub error: io::Error,
}

struct Job {
    offset_bytes: u64,
    bytes: Vec<u8>,
}

struct Done {
    bytes: Vec<u8>,
    result: Result<(), Failed>,
}

/// The write thread of one file.
#[derive(Debug)]
pub struct WriteThread {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    handle: Option<JoinHandle<()>>,
    in_flight: usize,
    /// Buffers back from the thread, to gather the next writes in.
    spare: Vec<Vec<u8>>,
}

impl WriteThread {
    /// Starts the thread, writing through its own descriptor for `file`.
    pub fn start(file: &File) -> io::Result<Self> {
        let file = file.try_clone()?;
        let (jobs, job_rx) = sync_channel::<Job>(IN_FLIGHT_MAX);
        let (done_tx, done) = sync_channel::<Done>(IN_FLIGHT_MAX);
        let handle = thread::Builder::new()
            .name("fswal-write".into())
            .spawn(move || {
                // Ends when the device drops its sender.
                for job in job_rx {
                    let len = job.bytes.len() as u64;
                    let result = file
                        .write_all_at(&job.bytes, job.offset_bytes)
                        .map_err(|error| Failed {
                            offset_bytes: job.offset_bytes,
                            error,
                        });
                    if result.is_ok() {
                        start_writeback(&file, job.offset_bytes, len);
                    }
                    let done = Done {
                        bytes: job.bytes,
                        result,
                    };
                    if done_tx.send(done).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            jobs: Some(jobs),
            done,
            handle: Some(handle),
            in_flight: 0,
            spare: Vec::new(),
        })
    }

    /// Hands `bytes` over, to be written at `offset_bytes`, and returns an empty
    /// buffer to gather the next writes in. Waits while [`IN_FLIGHT_MAX`] buffers are
    /// out; returns the failure of an earlier write, if one failed.
    pub fn submit(&mut self, offset_bytes: u64, bytes: Vec<u8>) -> Result<Vec<u8>, Failed> {
        if self.in_flight >= IN_FLIGHT_MAX {
            self.wait_one()?;
        }
        let stopped = |bytes: &[u8]| Failed {
            offset_bytes,
            error: io::Error::other(format!(
                "the write thread stopped before writing {} bytes",
                bytes.len()
            )),
        };
        let Some(jobs) = self.jobs.as_ref() else {
            return Err(stopped(&bytes));
        };
        jobs.send(Job {
            offset_bytes,
            bytes,
        })
        .map_err(|e| stopped(&e.0.bytes))?;
        self.in_flight += 1;
        let mut spare = self.spare.pop().unwrap_or_default();
        spare.clear();
        Ok(spare)
    }

    /// Waits until every buffer handed over was written; the first failure, if any.
    pub fn drain(&mut self) -> Result<(), Failed> {
        // Each pass takes one buffer back, so at most `IN_FLIGHT_MAX` passes.
        while self.in_flight > 0 {
            self.wait_one()?;
        }
        Ok(())
    }

    fn wait_one(&mut self) -> Result<(), Failed> {
        let done = self.done.recv().map_err(|_| Failed {
            offset_bytes: 0,
            error: io::Error::other("the write thread stopped"),
        })?;
        self.in_flight = self.in_flight.saturating_sub(1);
        self.spare.push(done.bytes);
        done.result
    }
}

impl Drop for WriteThread {
    fn drop(&mut self) {
        // Dropping the sender ends the thread's loop once it has written what it has.
        self.jobs = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
