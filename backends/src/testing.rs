//! Test support shared by the backends' tests and the harness's: a loop device guard
//! and a way to say that a test skipped. Compiled for tests and with the `testing`
//! feature; not part of the production API.

use std::format;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::string::{String, ToString};

/// Writes to stderr directly: libtest captures `println!` and `eprintln!`, and a skip
/// must be seen.
pub fn say(args: core::fmt::Arguments<'_>) {
    let _ = std::io::Write::write_fmt(&mut std::io::stderr(), args);
}

/// A loop device attached to an image file, detached when dropped.
#[derive(Debug)]
pub struct LoopDevice {
    path: PathBuf,
}

impl LoopDevice {
    /// Attaches `image` to a free loop device, or says why it could not (not root, no
    /// `losetup`, no loop support).
    pub fn attach(image: &Path) -> Result<Self, String> {
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(image)
            .output()
            .map_err(|e| format!("losetup: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "losetup -f --show: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if path.is_empty() {
            return Err("losetup printed no device".to_string());
        }
        Ok(Self {
            path: PathBuf::from(path),
        })
    }

    /// Attaches a new zero-filled image of `size_bytes` in `dir`, or says why it could
    /// not.
    pub fn attach_blank(dir: &Path, size_bytes: u64) -> Result<Self, String> {
        let image = dir.join("loop.img");
        let file =
            std::fs::File::create(&image).map_err(|e| format!("{}: {e}", image.display()))?;
        file.set_len(size_bytes)
            .map_err(|e| format!("{}: {e}", image.display()))?;
        Self::attach(&image)
    }

    /// The device node, such as `/dev/loop0`.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let detached = Command::new("losetup").arg("-d").arg(&self.path).status();
        if !detached.as_ref().is_ok_and(|status| status.success()) {
            say(format_args!(
                "warning: could not detach {}: {detached:?}\n",
                self.path.display()
            ));
        }
    }
}
