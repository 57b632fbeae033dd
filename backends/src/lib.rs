//! fswal-backends: the storage backends of fswal, each a
//! [`BlockDevice`](fswal_core::BlockDevice) (one segment) and a
//! [`SegmentStore`](fswal_core::SegmentStore) (a numbered set of segments).
//!
//! | module | backend | needs |
//! |---|---|---|
//! | [`memory`] | `MemDevice` over any byte buffer; `MemStore`, a log in memory | nothing (`MemStore`: `std`) |
//! | `file` | `FileDevice`, one segment file with positioned I/O and `fdatasync` | `std`, Unix |
//! | `dir` | `DirStore`, a WAL directory of `FS.%08u.wal` files | `std`, Unix |
//! | `mmap` | `MmapDevice`, one segment file through a shared memory mapping, synced with `msync` | `std`, Unix |
//! | `direct` | `DirectDevice`, `O_DIRECT` I/O on a segment file or a window of a raw block device; `geometry` | `std`, Linux |
//! | `lz4` | `Lz4Device`, a sealed segment stored LZ4-compressed as `FS.%08u.wal.lz4`, read with random access; `compress_segment` | `std`, Unix |
//! | `write_thread` | the thread that issues a `FileDevice`'s writes when asked to (`FileDevice::set_write_thread`) | `std`, Unix |
//! | `raw` | `RawStore`, a WAL on a raw block device: a superblock, a checkpoint sector, a quarantine area and fixed segment slots, all `O_DIRECT` | `std`, Linux |
//! | `any` | `AnyStore`, a WAL on any of these backends chosen at run time (`Backend`) | `std`, Linux |
//!
//! Features: `std` (default) adds every backend but the memory device, and the
//! in-memory store. Without it the crate is `no_std` and offers only the memory device, so that
//! an embedded host depends on one backend crate whatever it runs on. `testing` is test
//! support for fswal's own tests (the module `testing`: a loop device guard, the C++
//! vector directory): it is **exempt from semver**, anything under it may change or go
//! in any release, and applications do not enable it.
//!
//! The file-based modules exist only on Unix (`cfg(unix)`): they use `libc` and the
//! positioned I/O of `std::os::unix`. Elsewhere the crate offers the memory device and
//! the in-memory store.

#![no_std]
#![deny(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

pub mod memory;

#[cfg(all(feature = "std", unix))]
pub mod file;

#[cfg(all(feature = "std", unix))]
pub mod dir;

#[cfg(all(feature = "std", unix))]
pub mod mmap;

#[cfg(all(feature = "std", unix))]
pub mod direct;

#[cfg(all(feature = "std", unix))]
pub mod lz4;

#[cfg(all(feature = "std", unix))]
pub mod raw;

#[cfg(all(feature = "std", unix))]
pub mod write_thread;

#[cfg(all(feature = "std", unix))]
pub mod any;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
