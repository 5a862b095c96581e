//! Storage: the append-only data file, written by one thread with group commit.
//!
//! Every `/store` hands its bytes to [`Storage::append`], which returns only once an `fsync`
//! covers them. One writer thread owns the file: it takes everything queued since its last sync,
//! writes the records one after another at the end of the file, and syncs once for the whole
//! batch. Requests that arrive while a sync is under way therefore share the next one, so
//! durability does not cost throughput, and records never interleave.
//!
//! A process killed in the middle of a write (`kill -9`, or the kernel's OOM killer) can leave
//! part of a record at the end of the file, where the next server would append after it. So
//! each sync also records the length it covers in an extended attribute of the file
//! ([`SYNCED_LEN`]); at start, bytes past that length were never acknowledged, and are moved to
//! a file beside the data file (`<name>.unacknowledged`) instead of staying as a torn record.
//! `fsync`, not `fdatasync`: the attribute is metadata that `fdatasync` need not write, and it
//! must reach the disk with the data it describes. For appends both commit the filesystem's
//! journal anyway (measured on ext4: about 200 µs per append and sync either way).

use std::ffi::CStr;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::mem;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crate::decimal::parse_decimal;
use crate::metrics::METRICS;
use crate::sync::{lock, wait};

/// Why a record was not stored. Each maps to one HTTP status in `routes.rs`.
#[derive(Debug)]
pub enum AppendError {
    /// No space left on the volume (ENOSPC or EDQUOT): 507. Nothing was appended.
    DiskFull,
    /// Any other write failure: 500. Nothing was appended.
    Io(String),
    /// The server is shutting down or the writer has failed for good: 503.
    Closed,
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendError::DiskFull => f.write_str("write data file: no space left on device"),
            AppendError::Io(e) => write!(f, "write data file: {e}"),
            AppendError::Closed => f.write_str("write data file: server is shutting down"),
        }
    }
}

/// A data file that cannot be used: a start-up error, with what to do about it.
#[derive(Debug)]
pub struct OpenError {
    pub path: PathBuf,
    pub error: io::Error,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot open data file {}: {}",
            self.path.display(),
            self.error
        )?;
        match self.error.raw_os_error() {
            Some(libc::EPERM) => f.write_str(
                "; the file may be immutable (lsattr shows 'i') or a security policy forbids writing it",
            ),
            Some(libc::EACCES) | Some(libc::EROFS) => write!(
                f,
                "; the volume must be writable by this process (uid {}, gid {}): set the pod's \
                 securityContext.fsGroup to its group, or chown the volume's root directory",
                current_uid(),
                current_gid()
            ),
            Some(libc::EWOULDBLOCK) => f.write_str(
                "; another process holds it open for writing: only one server may use a data file",
            ),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// The extended attribute of the data file that holds the length the last sync covered.
pub const SYNCED_LEN: &CStr = c"user.hello-stateful.synced-length";

/// Called by the writer when the data file can no longer be trusted (an `fsync` or a rollback
/// failed): the process must stop and exit non-zero.
pub type OnFatal = Box<dyn Fn(&str) + Send>;

/// Handle to the data file. Cheap to share; all writes go through the writer thread.
pub struct Storage {
    state: Arc<FileState>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// What the handles and the writer thread both see of the data file: its path, the records
/// queued for it, the file itself and how much of it is durable.
struct FileState {
    path: PathBuf,
    queue: Mutex<Queue>,
    wake: Condvar,
    /// The file the writer appends to. Replaced, under this lock and together with
    /// `durable_len`, only when the file is created again, so a reader that takes both under
    /// it gets a length that belongs to that file.
    current: Mutex<Opened>,
    /// Length of the file that an `fsync` has covered: what `/data` may show.
    durable_len: AtomicU64,
    /// False once the writer has failed for good or has been closed.
    open: AtomicBool,
}

/// One opening of the data file by this process, and a random number drawn for it.
#[derive(Clone)]
struct Opened {
    file: Arc<File>,
    id: u64,
}

impl Opened {
    fn new(file: File) -> Opened {
        Opened {
            file: Arc::new(file),
            id: random_id(),
        }
    }
}

/// The durable part of the data file, as one reader sees it at one moment.
pub struct Durable {
    /// The file the writer appends to; read it at offsets (`FileExt::read_at`), since every
    /// reader shares its position.
    pub file: Arc<File>,
    /// Bytes an `fsync` has covered: the file only grows past them, so they never change.
    pub len: u64,
    /// Names this opening of the file: drawn at random each time the server opens or creates
    /// it, so two files, or two lives of one path (a volume restored from a snapshot, the
    /// file deleted and created again, another pod's file), never share it, even at the
    /// same length. An inode number would not do: a fresh filesystem gives its first file
    /// the same one every time, and a freed one is given again.
    pub id: u64,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    closed: bool,
}

/// What to do with a record's outcome, on the writer thread: it must not block.
pub type Done = Box<dyn FnOnce(Result<(), AppendError>) + Send>;

struct Pending {
    bytes: Vec<u8>,
    done: Done,
}

impl Storage {
    /// Opens (creating if missing) the data file and starts its writer thread.
    pub fn open(path: &Path, on_fatal: OnFatal) -> Result<Storage, OpenError> {
        let open_error = |error| OpenError {
            path: path.to_path_buf(),
            error,
        };
        let (file, len, marked) = open_data_file(path).map_err(open_error)?;
        let opened = Opened::new(file);
        let state = Arc::new(FileState {
            path: path.to_path_buf(),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            current: Mutex::new(opened.clone()),
            durable_len: AtomicU64::new(len),
            open: AtomicBool::new(true),
        });
        let writer = Writer {
            state: state.clone(),
            file: opened.file,
            len,
            marked,
            on_fatal,
        };
        let handle = thread::Builder::new()
            .name("storage".into())
            .spawn(move || writer.run())
            .map_err(open_error)?;
        Ok(Storage {
            state,
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Appends `bytes` as one contiguous record and returns once it is durable.
    pub fn append(&self, bytes: Vec<u8>) -> Result<(), AppendError> {
        let (done, result) = sync_channel(1);
        self.append_then(
            bytes,
            Box::new(move |outcome| {
                // The requester waits for this; if it is gone there is nobody left to tell.
                let _ = done.send(outcome);
            }),
        );
        // The writer answers every record it takes; a closed channel means it died with it.
        result.recv().unwrap_or(Err(AppendError::Closed))
    }

    /// Appends `bytes` as one contiguous record and calls `done` with the outcome once it is
    /// durable (or failed), on the writer thread; at once if the file is closed.
    pub fn append_then(&self, bytes: Vec<u8>, done: Done) {
        {
            let mut queue = lock(&self.state.queue);
            if !queue.closed {
                queue.pending.push(Pending { bytes, done });
                drop(queue);
                self.state.wake.notify_one();
                return;
            }
        }
        done(Err(AppendError::Closed));
    }

    /// Bytes of the file that are durable, so `/data` never shows an unacknowledged record.
    pub fn durable_len(&self) -> u64 {
        self.state.durable_len.load(Ordering::Acquire)
    }

    /// The file and its durable length, taken together: `/data` reads exactly these bytes.
    pub fn durable(&self) -> Durable {
        let current = lock(&self.state.current);
        Durable {
            file: current.file.clone(),
            len: self.state.durable_len.load(Ordering::Acquire),
            id: current.id,
        }
    }

    /// True while appends can succeed: the file is open and the writer healthy.
    pub fn is_open(&self) -> bool {
        self.state.open.load(Ordering::Acquire)
    }

    pub fn path(&self) -> &Path {
        &self.state.path
    }

    /// Stops taking records, writes and syncs everything already queued, and waits for the
    /// writer to finish. Appends after this fail with [`AppendError::Closed`].
    pub fn close(&self) {
        lock(&self.state.queue).closed = true;
        self.state.wake.notify_one();
        let handle = lock(&self.writer).take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            log::error!("storage writer panicked while closing");
        }
    }
}

/// The writer thread's state: the only place the data file is written.
struct Writer {
    state: Arc<FileState>,
    /// Shared with readers, which only read it at offsets.
    file: Arc<File>,
    /// Length of the file including every record written so far (synced or not).
    len: u64,
    /// False when the volume keeps no extended attributes: no [`SYNCED_LEN`] then.
    marked: bool,
    on_fatal: OnFatal,
}

impl Writer {
    fn run(mut self) {
        while let Some(batch) = self.next_batch() {
            if let Err(why) = self.commit(batch) {
                self.state.open.store(false, Ordering::Release);
                log::error!(
                    "{why}; exiting so the pod restarts with the data file as it is on disk"
                );
                (self.on_fatal)(&why);
                self.fail_queued();
                return;
            }
        }
        self.state.open.store(false, Ordering::Release);
    }

    /// Waits for records; `None` once closed and drained.
    fn next_batch(&self) -> Option<Vec<Pending>> {
        let mut queue = lock(&self.state.queue);
        loop {
            if !queue.pending.is_empty() {
                return Some(mem::take(&mut queue.pending));
            }
            if queue.closed {
                return None;
            }
            queue = wait(&self.state.wake, queue);
        }
    }

    /// Writes the batch and syncs it once. A record whose write fails is rolled back and
    /// answered with its error; the others go on. Returns Err only when the file can no
    /// longer be trusted.
    fn commit(&mut self, batch: Vec<Pending>) -> Result<(), String> {
        self.reopen_if_deleted()?;
        let mut written = Vec::with_capacity(batch.len());
        for record in batch {
            match self.file.write_all_at(&record.bytes, self.len) {
                Ok(()) => {
                    self.len += record.bytes.len() as u64;
                    written.push(record);
                }
                Err(e) => {
                    // A write that failed part-way may have left some of the record behind:
                    // cut the file back so no torn record is ever synced.
                    if let Err(t) = self.file.set_len(self.len) {
                        let path = self.state.path.display();
                        let why = format!("roll back a failed write ({e}) of {path}: {t}");
                        answer(record, Err(AppendError::Io(e.to_string())));
                        for record in written {
                            answer(record, Err(AppendError::Io(why.clone())));
                        }
                        return Err(why);
                    }
                    let error = append_error(&e, e.to_string());
                    log::error!(
                        "append {} bytes to {}: {e}",
                        record.bytes.len(),
                        self.state.path.display()
                    );
                    answer(record, Err(error));
                }
            }
        }
        if written.is_empty() {
            return Ok(());
        }
        if self.marked {
            match write_synced_len(&self.file, self.len) {
                Ok(()) => {}
                Err(e) if is_unsupported(&e) => {
                    warn_unmarked(&self.state.path, &e);
                    self.marked = false;
                }
                // Without the mark the next start would take these records for a torn tail.
                Err(e) => return self.refuse_unmarked(written, &e),
            }
        }
        let syncing = Instant::now();
        if let Err(e) = self.file.sync_all() {
            // Linux may drop the dirty pages after a failed fsync and report success on the next
            // one, so a retry would acknowledge data that is not on disk: fail instead.
            for record in written {
                answer(record, Err(AppendError::Io(format!("fsync: {e}"))));
            }
            return Err(format!("fsync {}: {e}", self.state.path.display()));
        }
        let bytes = self.len - self.state.durable_len.load(Ordering::Acquire);
        self.state.durable_len.store(self.len, Ordering::Release);
        METRICS.synced(written.len(), bytes, syncing.elapsed());
        log::trace!("synced {} records", written.len());
        for record in written {
            answer(record, Ok(()));
        }
        Ok(())
    }

    /// The batch whose [`SYNCED_LEN`] could not be set fails as a whole, like a record whose
    /// write fails: the file is cut back to its last sync and every record gets the error.
    fn refuse_unmarked(&mut self, written: Vec<Pending>, e: &io::Error) -> Result<(), String> {
        let synced = self.state.durable_len.load(Ordering::Acquire);
        let path = self.state.path.display();
        if let Err(t) = self.file.set_len(synced) {
            let why = format!("roll back a batch whose {SYNCED_LEN:?} failed ({e}) in {path}: {t}");
            for record in written {
                answer(record, Err(AppendError::Io(why.clone())));
            }
            return Err(why);
        }
        self.len = synced;
        log::error!(
            "set {SYNCED_LEN:?} of {path}: {e}; {} records refused",
            written.len()
        );
        for record in written {
            answer(
                record,
                Err(append_error(e, format!("mark synced length: {e}"))),
            );
        }
        Ok(())
    }

    /// If someone deleted the data file while we run, writes would go to an unlinked inode
    /// and vanish with the process: start a new file at the path instead, and say so.
    fn reopen_if_deleted(&mut self) -> Result<(), String> {
        let linked = self.file.metadata().map(|m| m.nlink() > 0).unwrap_or(true);
        if linked {
            return Ok(());
        }
        log::warn!(
            "data file {} was deleted while in use; creating it again",
            self.state.path.display()
        );
        let (file, len, marked) = open_data_file(&self.state.path).map_err(|e| {
            format!(
                "re-create deleted data file {}: {e}",
                self.state.path.display()
            )
        })?;
        let opened = Opened::new(file);
        self.len = len;
        self.marked = marked;
        self.file = opened.file.clone();
        let mut current = lock(&self.state.current);
        *current = opened;
        self.state.durable_len.store(self.len, Ordering::Release);
        Ok(())
    }

    /// After a fatal error: answer whatever is still queued, and refuse what comes later.
    fn fail_queued(&self) {
        let pending = {
            let mut queue = lock(&self.state.queue);
            queue.closed = true;
            mem::take(&mut queue.pending)
        };
        for record in pending {
            answer(record, Err(AppendError::Closed));
        }
    }
}

/// A full volume is its own error (507); anything else is `message`.
fn append_error(e: &io::Error, message: String) -> AppendError {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => AppendError::DiskFull,
        _ => AppendError::Io(message),
    }
}

fn answer(record: Pending, result: Result<(), AppendError>) {
    (record.done)(result);
}

/// Opens the data file for writing, creating it and its directory if missing, and cuts what
/// the last sync did not cover ([`cut_unsynced_tail`]): the file, its length, and whether the
/// volume keeps the mark. A new file's directory is synced so the file itself survives a
/// crash, not only its contents. An exclusive lock keeps a second server from writing the
/// same file at its own offsets.
fn open_data_file(path: &Path) -> io::Result<(File, u64, bool)> {
    let dir = dir_of(path);
    if !dir.exists() {
        std::fs::create_dir_all(&dir)?;
    }
    let existed = path.exists();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    lock_exclusive(&file)?;
    if !existed {
        File::open(&dir)?.sync_all()?;
    }
    let (len, marked) = cut_unsynced_tail(path, &file)?;
    Ok((file, len, marked))
}

/// Moves bytes past the length the last sync covered ([`SYNCED_LEN`]) to `<name>.unacknowledged`
/// beside the data file, and cuts the data file back to it. Those bytes were written before the
/// previous process died and never acknowledged: left in place, a record cut short would be
/// continued by the next one. Returns the file's length, and whether the volume keeps the mark.
fn cut_unsynced_tail(path: &Path, mut file: &File) -> io::Result<(u64, bool)> {
    let len = file.metadata()?.len();
    let synced = match read_synced_len(file) {
        Ok(Some(synced)) => synced,
        // A new file, or one written before the mark existed: nothing to judge by.
        Ok(None) => return Ok((len, true)),
        Err(e) if is_unsupported(&e) => {
            warn_unmarked(path, &e);
            return Ok((len, false));
        }
        Err(e) => return Err(e),
    };
    if synced > len {
        log::error!(
            "data file {} is {len} bytes, shorter than the {synced} bytes its last sync covered: \
             acknowledged records were lost outside this process (volume restored or truncated?)",
            path.display()
        );
        write_synced_len(file, len)?;
        file.sync_all()?;
        return Ok((len, true));
    }
    if synced == len {
        return Ok((len, true));
    }
    let mut aside_name = path.file_name().unwrap_or_default().to_os_string();
    aside_name.push(".unacknowledged");
    let aside_path = path.with_file_name(aside_name);
    let mut aside = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&aside_path)?;
    file.seek(SeekFrom::Start(synced))?;
    io::copy(&mut file.take(len - synced), &mut aside)?;
    aside.flush()?;
    aside.sync_all()?;
    File::open(dir_of(path))?.sync_all()?;
    file.set_len(synced)?;
    file.sync_all()?;
    log::warn!(
        "data file {}: {} bytes past its last sync (written when the previous process died, never \
         acknowledged) moved to {}",
        path.display(),
        len - synced,
        aside_path.display()
    );
    Ok((synced, true))
}

fn warn_unmarked(path: &Path, e: &io::Error) {
    log::warn!(
        "the volume of {} keeps no extended attributes ({e}): a record cut short when the \
         process is killed mid-write would stay in the file",
        path.display()
    );
}

fn is_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::ENOSYS))
}

/// The [`SYNCED_LEN`] mark of `file`, if it has one.
pub fn read_synced_len(file: &File) -> io::Result<Option<u64>> {
    let mut value = [0u8; 24];
    // SAFETY: the name is NUL-terminated and the buffer is valid for its length.
    let n = unsafe {
        libc::fgetxattr(
            file.as_raw_fd(),
            SYNCED_LEN.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) => Ok(None),
            _ => Err(e),
        };
    }
    let text = std::str::from_utf8(&value[..n as usize]).unwrap_or("");
    match parse_decimal(text) {
        Ok(len) => Ok(Some(len)),
        Err(_) => {
            log::warn!("ignoring a {SYNCED_LEN:?} that is not a length: {text:?}");
            Ok(None)
        }
    }
}

/// Sets the [`SYNCED_LEN`] mark of `file` to `len`.
pub fn write_synced_len(file: &File, len: u64) -> io::Result<()> {
    let value = len.to_string();
    // SAFETY: the name is NUL-terminated and the value is valid for its length.
    let rc = unsafe {
        libc::fsetxattr(
            file.as_raw_fd(),
            SYNCED_LEN.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn lock_exclusive(file: &File) -> io::Result<()> {
    // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// 64 random bits from the kernel. Should `getrandom` fail (a kernel older than 3.17), the
/// clock and a counter still tell this process's openings apart, and a restart apart from the
/// last one.
fn random_id() -> u64 {
    static FALLBACK: AtomicU64 = AtomicU64::new(0);
    let mut id = [0u8; 8];
    // SAFETY: the buffer is valid for writes of its length.
    let n = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
    if n == id.len() as isize {
        return u64::from_ne_bytes(id);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos.wrapping_add(FALLBACK.fetch_add(1, Ordering::Relaxed))
}

fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

fn current_gid() -> u32 {
    // SAFETY: getgid has no preconditions and cannot fail.
    unsafe { libc::getgid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temp_dir::TempDir;

    fn open(path: &Path) -> Storage {
        Storage::open(path, Box::new(|why| panic!("fatal: {why}"))).unwrap()
    }

    #[test]
    fn appends_are_durable_and_in_order() {
        let dir = TempDir::new("order");
        let path = dir.path().join("hello");
        let storage = open(&path);
        storage.append(b"one".to_vec()).unwrap();
        storage.append(b"two".to_vec()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"onetwo");
        assert_eq!(storage.durable_len(), 6);
        storage.close();
        assert!(matches!(
            storage.append(b"x".to_vec()),
            Err(AppendError::Closed)
        ));
    }

    #[test]
    fn creates_missing_directory_and_keeps_existing_data() {
        let dir = TempDir::new("create");
        let path = dir.path().join("sub/dir/hello");
        open(&path).close();
        std::fs::write(&path, b"old").unwrap();
        let storage = open(&path);
        assert_eq!(storage.durable_len(), 3);
        storage.append(b"new".to_vec()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"oldnew");
    }

    #[test]
    fn concurrent_records_never_interleave() {
        let dir = TempDir::new("concurrent");
        let path = dir.path().join("hello");
        let storage = Arc::new(open(&path));
        let threads: Vec<_> = (0..16u8)
            .map(|i| {
                let storage = storage.clone();
                thread::spawn(move || {
                    for _ in 0..20 {
                        storage.append(vec![b'a' + i; 1000]).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len(), 16 * 20 * 1000);
        for record in data.chunks(1000) {
            assert!(
                record.iter().all(|&b| b == record[0]),
                "a record was interleaved"
            );
        }
    }

    #[test]
    fn second_server_on_the_same_file_is_refused() {
        let dir = TempDir::new("lock");
        let path = dir.path().join("hello");
        let _first = open(&path);
        let err = Storage::open(&path, Box::new(|_| {}))
            .err()
            .expect("second open must fail");
        assert!(err.to_string().contains("only one server"), "{err}");
    }

    #[test]
    fn deleted_file_is_created_again() {
        let dir = TempDir::new("deleted");
        let path = dir.path().join("hello");
        let storage = open(&path);
        storage.append(b"before".to_vec()).unwrap();
        std::fs::remove_file(&path).unwrap();
        storage.append(b"after".to_vec()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"after");
        assert_eq!(storage.durable_len(), 5);
    }

    #[test]
    fn permission_errors_say_how_to_fix_them() {
        for errno in [libc::EACCES, libc::EROFS] {
            let err = OpenError {
                path: "/etc/stateful/hello".into(),
                error: io::Error::from_raw_os_error(errno),
            };
            let text = err.to_string();
            assert!(
                text.starts_with("cannot open data file /etc/stateful/hello: "),
                "{text}"
            );
            assert!(text.contains("fsGroup") && text.contains("chown"), "{text}");
        }
    }
}
