//! A temporary folder, removed on drop. The unit tests use this same file (`src/lib.rs`
//! includes it), so the crate has one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty folder under the system's temporary folder.
    pub fn new(name: &str) -> TempDir {
        TempDir::under(&std::env::temp_dir(), name)
    }

    /// A new, empty folder under `base`, named after `name`, this process and a counter, so
    /// tests running at once never share one.
    pub fn under(base: &Path, name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("hello-stateful-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir); // a leftover of an earlier run, if any
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0); // best effort: it is under a temporary folder
    }
}
