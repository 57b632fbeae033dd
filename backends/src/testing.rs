//! Test support shared by the backends' tests and the harness's: a loop device guard
//! and a way to say that a test skipped. Compiled for tests and with the `testing`
//! feature; not part of the production API, and exempt from semver: it may change or
//! go in any release.

use std::format;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::string::{String, ToString};

/// Writes to stderr directly: libtest captures `println!` and `eprintln!`, and a skip
/// must be seen.
pub fn say(args: core::fmt::Arguments<'_>) {
    let _ = std::io::Write::write_fmt(&mut std::io::stderr(), args);
}

/// The environment variable that makes an absent vector directory fail a test instead
/// of skipping it (CI sets it: it always has `../shared/vectors`).
pub const REQUIRE_VECTORS_VAR: &str = "FSWAL_REQUIRE_VECTORS";

/// The C++ recorder's vector directory `name` (in `../shared/vectors/` relative to the
/// project root), or `None` when it is absent, after saying on stderr that the test
/// skips it. With [`REQUIRE_VECTORS_VAR`] set, an absent directory panics instead.
#[must_use]
pub fn vectors_dir(name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/vectors")
        .join(name);
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os(REQUIRE_VECTORS_VAR).is_none(),
        "{} absent, and {REQUIRE_VECTORS_VAR} is set",
        dir.display()
    );
    say(format_args!(
        "skipping: {} absent (set {REQUIRE_VECTORS_VAR}=1 to fail instead)\n",
        dir.display()
    ));
    None
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
