//! The data file across process deaths: what a killed server leaves past its last sync is moved
//! aside at the next start, so the file never holds a record cut short. Run on the target
//! directory's filesystem (the repository's disk), which keeps extended attributes.

mod support;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use hello_stateful::storage::{Storage, read_synced_len, write_synced_len};
use support::{TempDir, runnable};

fn open(path: &Path) -> Storage {
    Storage::open(path, Box::new(|why| panic!("fatal: {why}"))).unwrap()
}

/// A fresh directory under the target directory, or None (with a loud skip) when its
/// filesystem keeps no user extended attributes.
fn dir(test: &str) -> Option<TempDir> {
    let dir = TempDir::under(Path::new(env!("CARGO_TARGET_TMPDIR")), test);
    let probe = File::create(dir.path().join("probe")).unwrap();
    let marked = write_synced_len(&probe, 0);
    let why = match &marked {
        Ok(()) => String::new(),
        Err(e) => format!(
            "{} keeps no user extended attributes: {e}",
            dir.path().display()
        ),
    };
    runnable(test, marked.is_ok(), &why).then_some(dir)
}

fn synced_len(path: &Path) -> Option<u64> {
    read_synced_len(&File::open(path).unwrap()).unwrap()
}

/// Appends bytes as a killed server's unfinished write would leave them.
fn leave_behind(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

#[test]
fn every_sync_marks_the_length_it_covers() {
    let Some(dir) = dir("marks") else { return };
    let path = dir.path().join("hello");
    let storage = open(&path);
    assert_eq!(
        synced_len(&path),
        None,
        "a new file has no mark until its first sync"
    );
    storage.append(b"one,".to_vec()).unwrap();
    assert_eq!(synced_len(&path), Some(4));
    storage.append(b"two,".to_vec()).unwrap();
    assert_eq!(synced_len(&path), Some(8));
}

#[test]
fn bytes_past_the_last_sync_are_moved_aside_at_start() {
    let Some(dir) = dir("torn") else { return };
    let path = dir.path().join("hello");
    let storage = open(&path);
    storage.append(b"acknowledged,".to_vec()).unwrap();
    storage.close();
    drop(storage);
    leave_behind(&path, b"cut sh");

    let storage = open(&path);
    assert_eq!(storage.durable_len(), 13);
    assert_eq!(std::fs::read(&path).unwrap(), b"acknowledged,");
    assert_eq!(
        std::fs::read(dir.path().join("hello.unacknowledged")).unwrap(),
        b"cut sh"
    );
    storage.append(b"next,".to_vec()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"acknowledged,next,");

    // A second crash adds to what was set aside, and loses nothing of it.
    storage.close();
    drop(storage);
    leave_behind(&path, b"again");
    open(&path).close();
    assert_eq!(
        std::fs::read(dir.path().join("hello.unacknowledged")).unwrap(),
        b"cut shagain"
    );
}

#[test]
fn a_file_shorter_than_its_mark_is_kept_as_it_is() {
    let Some(dir) = dir("short") else { return };
    let path = dir.path().join("hello");
    let storage = open(&path);
    storage.append(b"abcdef".to_vec()).unwrap();
    storage.close();
    drop(storage);
    // Shortened outside the server (a volume restored from an older copy, say).
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(3)
        .unwrap();
    let storage = open(&path);
    assert_eq!(storage.durable_len(), 3);
    assert_eq!(synced_len(&path), Some(3));
    storage.append(b"x".to_vec()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"abcx");
    assert!(!dir.path().join("hello.unacknowledged").exists());
}

#[test]
fn a_file_without_a_mark_is_taken_whole() {
    // Written by hand, or by a version before the mark: there is nothing to judge a tail by.
    let Some(dir) = dir("unmarked") else { return };
    let path = dir.path().join("hello");
    std::fs::write(&path, b"old data").unwrap();
    let storage = open(&path);
    assert_eq!(storage.durable_len(), 8);
    storage.append(b"+new".to_vec()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"old data+new");
}
