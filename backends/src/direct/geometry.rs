//! What the kernel says about a file's or a block device's sectors: [`Geometry`],
//! probed with `BLKSSZGET`, `BLKPBSZGET` and `BLKGETSIZE64` for block devices, and
//! `statx` (`STATX_DIOALIGN`) for files.

use super::*;

/// The block size used when the kernel does not say, or says something unusable.
pub const BLOCK_BYTES_DEFAULT: u32 = 4096;

/// The smallest logical or physical block size accepted from the kernel.
pub const BLOCK_BYTES_MIN: u32 = 512;

/// The largest logical or physical block size accepted from the kernel.
pub const BLOCK_BYTES_MAX: u32 = 65_536;

/// `BLKGETSIZE64`, `_IOR(0x12, 114, size_t)`: a block device's size in bytes, as a
/// `u64`. Not in `libc`; built with `libc`'s `_IOR`, which encodes it the way this
/// architecture does (`0x80081272` on x86_64 and aarch64).
#[cfg(target_os = "linux")]
pub(super) const BLKGETSIZE64: libc::Ioctl = libc::_IOR::<u64>(0x12, 114);

/// What the kernel says about the sectors and the size of a file or block device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Geometry {
    /// The unit of direct I/O: offsets, lengths and buffer addresses must be multiples
    /// of it. For a block device, its logical sector size (`BLKSSZGET`); for a regular
    /// file, the larger of the file system's direct I/O offset and memory alignments
    /// (`statx` with `STATX_DIOALIGN`), or 4096 when the kernel does not say.
    pub logical_block_bytes: u32,
    /// The sector size the medium writes internally, at least `logical_block_bytes`.
    /// For a block device, `BLKPBSZGET`; for a regular file, the file system's block
    /// size (`st_blksize`).
    pub physical_block_bytes: u32,
    /// The size of the block device or the length of the file, in bytes.
    pub size_bytes: u64,
}

impl Geometry {
    /// The unit the device reads and writes in: the physical block size, which is a
    /// power of two at least the logical one (see the module docs).
    #[must_use]
    pub fn io_block_bytes(&self) -> u32 {
        self.physical_block_bytes.max(self.logical_block_bytes)
    }
}

/// What kind of file a descriptor refers to, for the device's purposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    RegularFile,
    BlockDevice,
}

/// The geometry of `file`, open at `path`: for a block device, the kernel's sector
/// sizes and size (`BLKSSZGET`, `BLKPBSZGET`, `BLKGETSIZE64`); for a regular file, the
/// direct I/O alignment `statx` reports (`STATX_DIOALIGN`, 4096 when the kernel does
/// not fill it) and its length. Block sizes the kernel reports that are not a power of
/// two in 512..=65536 are replaced by 4096. Anything else than a regular file or a
/// block device is refused with `InvalidInput`.
pub fn geometry(file: &File, path: &Path) -> Result<Geometry, FileError> {
    probe(file, path).map(|(geometry, _)| geometry)
}

/// The geometry of `file` and what kind of file it is.
pub(super) fn probe(file: &File, path: &Path) -> Result<(Geometry, Kind), FileError> {
    let metadata = file
        .metadata()
        .map_err(|e| FileError::new("stat", path, None, e))?;
    let file_type = metadata.file_type();
    if file_type.is_block_device() {
        Ok((block_device_geometry(file, path)?, Kind::BlockDevice))
    } else if file_type.is_file() {
        let logical_block_bytes =
            dio_alignment_bytes(file).map_or(BLOCK_BYTES_DEFAULT, valid_block_bytes);
        let physical_block_bytes = valid_block_bytes(metadata.blksize()).max(logical_block_bytes);
        Ok((
            Geometry {
                logical_block_bytes,
                physical_block_bytes,
                size_bytes: metadata.len(),
            },
            Kind::RegularFile,
        ))
    } else {
        Err(FileError::custom(
            "open",
            path,
            None,
            io::ErrorKind::InvalidInput,
            "neither a regular file nor a block device",
        ))
    }
}

/// `bytes` if it is a power of two in `BLOCK_BYTES_MIN..=BLOCK_BYTES_MAX`, else
/// [`BLOCK_BYTES_DEFAULT`] (4096, a multiple of every smaller valid size, so aligning
/// to it is never wrong where a smaller size was meant).
pub(super) fn valid_block_bytes(bytes: u64) -> u32 {
    u32::try_from(bytes)
        .ok()
        .filter(|b| b.is_power_of_two() && (BLOCK_BYTES_MIN..=BLOCK_BYTES_MAX).contains(b))
        .unwrap_or(BLOCK_BYTES_DEFAULT)
}

/// The alignment direct I/O on `file` needs, as `statx` reports it: the larger of
/// `stx_dio_offset_align` and `stx_dio_mem_align` (the device aligns offsets, lengths
/// and buffers to one value). `None` when the kernel does not fill `STATX_DIOALIGN`
/// (before Linux 6.1, or a file system that does not say) or reports 0 (no direct I/O
/// on this file).
#[cfg(target_os = "linux")]
pub(super) fn dio_alignment_bytes(file: &File) -> Option<u64> {
    // SAFETY: `libc::statx` is a C struct of integers (and integer padding), for which
    // all zero bytes are a valid value.
    let mut stx: libc::statx = unsafe { core::mem::zeroed() };
    // SAFETY: the path is an empty NUL-terminated string and `AT_EMPTY_PATH` makes
    // `statx` describe the descriptor itself, which `file` keeps open for the call;
    // `statx` writes only into `stx`, a live local of the right type.
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &raw mut stx,
        )
    };
    if rc != 0 || stx.stx_mask & libc::STATX_DIOALIGN == 0 || stx.stx_dio_offset_align == 0 {
        return None;
    }
    Some(u64::from(
        stx.stx_dio_offset_align.max(stx.stx_dio_mem_align),
    ))
}

/// Other systems have no `STATX_DIOALIGN`: the default alignment is used.
#[cfg(not(target_os = "linux"))]
pub(super) fn dio_alignment_bytes(_file: &File) -> Option<u64> {
    None
}

/// A block device's sector sizes and size, from the kernel.
#[cfg(target_os = "linux")]
pub(super) fn block_device_geometry(file: &File, path: &Path) -> Result<Geometry, FileError> {
    let fd = file.as_raw_fd();
    let ioctl_error = |op: &'static str| FileError::new(op, path, None, io::Error::last_os_error());

    let mut logical: libc::c_int = 0;
    // SAFETY: `BLKSSZGET` writes one `int` through its argument, which points to
    // `logical`, live for the call; the descriptor is `file`'s, open for the call.
    if unsafe { libc::ioctl(fd, libc::BLKSSZGET, &raw mut logical) } != 0 {
        return Err(ioctl_error("ioctl BLKSSZGET"));
    }
    let mut physical: libc::c_uint = 0;
    // SAFETY: `BLKPBSZGET` writes one `unsigned int` through its argument, which points
    // to `physical`, live for the call; the descriptor is open for the call.
    if unsafe { libc::ioctl(fd, libc::BLKPBSZGET, &raw mut physical) } != 0 {
        return Err(ioctl_error("ioctl BLKPBSZGET"));
    }
    let mut size_bytes: u64 = 0;
    // SAFETY: `BLKGETSIZE64` writes one `u64` through its argument, which points to
    // `size_bytes`, live for the call; the descriptor is open for the call.
    if unsafe { libc::ioctl(fd, BLKGETSIZE64, &raw mut size_bytes) } != 0 {
        return Err(ioctl_error("ioctl BLKGETSIZE64"));
    }
    let logical_block_bytes = u64::try_from(logical).map_or(BLOCK_BYTES_DEFAULT, valid_block_bytes);
    let physical_block_bytes = valid_block_bytes(u64::from(physical)).max(logical_block_bytes);
    Ok(Geometry {
        logical_block_bytes,
        physical_block_bytes,
        size_bytes,
    })
}

/// Block device geometry is only asked of Linux.
#[cfg(not(target_os = "linux"))]
pub(super) fn block_device_geometry(_file: &File, path: &Path) -> Result<Geometry, FileError> {
    Err(FileError::custom(
        "geometry",
        path,
        None,
        io::ErrorKind::Unsupported,
        "block device geometry is only known on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_from_the_kernel_are_validated() {
        assert_eq!(valid_block_bytes(512), 512);
        assert_eq!(valid_block_bytes(4096), 4096);
        assert_eq!(valid_block_bytes(65_536), 65_536);
        for bad in [0, 1, 4, 256, 513, 3000, 131_072, u64::MAX] {
            assert_eq!(valid_block_bytes(bad), BLOCK_BYTES_DEFAULT, "{bad}");
        }
    }

    // glibc only: its request type is `c_ulong`, which holds 0x80081272 as written.
    #[cfg(all(
        target_os = "linux",
        target_env = "gnu",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn blkgetsize64_has_the_kernel_headers_value() {
        assert_eq!(BLKGETSIZE64, 0x8008_1272);
        assert_eq!(libc::BLKSSZGET, 0x1268);
        assert_eq!(libc::BLKPBSZGET, 0x127b);
    }
}
