//! The intake journal as append-only segment files: what SQLite
//! deployments journal into (`<database>-intake.d/`).
//!
//! Why not a SQLite file: an append there is an INSERT, a WAL frame per
//! touched page and a commit, ~1.3 ms under load; here it is one
//! `pwrite` and one `fdatasync` of a file whose blocks already exist, so
//! the sync writes the data and no metadata.
//!
//! Layout: segments named by the sequence number of their first record
//! (`00000000000000000042.log`), each filled and then left for the next.
//! A segment is made ahead of need by a thread of its own (`spare.tmp`,
//! zero-filled and synced, then renamed when the tail is full), so an
//! append never grows a file and its sync never waits for more than its
//! own records. Sizes double from [`FIRST_SEGMENT_BYTES`] up to
//! [`SEGMENT_BYTES`], so a quiet journal stays small.
//!
//! A record: `len: u32 LE | crc32: u32 LE | body`, the CRC over the body,
//! and the body `seq: i64 LE | received_ms: i64 LE | source length: u8 |
//! source | payload`. Reading stops at the first record that is zeros,
//! fails its CRC, or does not carry the next sequence number: the tail
//! of a write that a crash interrupted, never acknowledged. Opening
//! zeroes whatever follows the last good record of the last segment, so
//! that a torn tail cannot be mistaken for records later.
//!
//! Only the journal writer appends (one append at a time); only the
//! applier reads, never past what is durable.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{JournalRecord, Result, StoreError};

/// The largest segment made ahead of need.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// The first segment of a new journal; each next one is twice as large.
pub const FIRST_SEGMENT_BYTES: u64 = 1 << 20;
const SPARE: &str = "spare.tmp";
const HEADER: usize = 8;
/// seq, received_ms, source length.
const BODY_FIXED: usize = 17;
/// Bytes read from a segment at a time.
const READ_WINDOW: usize = 256 << 10;
/// A sync this slow kept every sender of its append waiting as long:
/// worth an operator's look (normally one takes under 2 ms).
const SLOW_SYNC: Duration = Duration::from_millis(50);
/// Least time between two warnings about slow syncs.
const SLOW_SYNC_WARN_EVERY: Duration = Duration::from_secs(10);

/// The journal's segment files. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FileJournal {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    segment_bytes: u64,
    /// `fdatasync` every append (survives power loss), or leave the
    /// writes to the OS (survives a crash of the process only).
    sync: bool,
    tail: Mutex<Tail>,
    cursor: Mutex<Option<Cursor>>,
    /// The last sequence number written and synced (0: none yet).
    durable: AtomicI64,
    /// Where what is synced ends: (first sequence number of the segment
    /// being appended to, byte offset). Reads of that segment stop there.
    durable_end: Mutex<(i64, u64)>,
    closed: AtomicBool,
    slow_syncs: Mutex<SlowSyncs>,
    /// Records found missing while reading (a segment deleted or damaged
    /// by hand, or by a second process before the store lock existed):
    /// how many, and the last such range. Reading goes on after a gap.
    lost: Mutex<Lost>,
}

/// What [`FileJournal::lost`] reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Lost {
    /// Records missing in all, since this process opened the journal.
    pub records: i64,
    /// The last gap, first and last missing sequence number.
    pub last_gap: Option<(i64, i64)>,
}

/// Syncs over [`SLOW_SYNC`], for a warning at most every
/// [`SLOW_SYNC_WARN_EVERY`]: a disk that stalls now and then would
/// otherwise fill the log.
#[derive(Debug, Default)]
struct SlowSyncs {
    /// Slow syncs since the last warning, and the slowest of them.
    count: u64,
    worst: Duration,
    warned_at: Option<Instant>,
}

impl SlowSyncs {
    /// Counts a slow sync; when a warning is due, the slow syncs it
    /// reports (this one included) and the slowest of them.
    fn record(&mut self, took: Duration, now: Instant) -> Option<(u64, Duration)> {
        self.count += 1;
        self.worst = self.worst.max(took);
        if self
            .warned_at
            .is_some_and(|t| now.saturating_duration_since(t) < SLOW_SYNC_WARN_EVERY)
        {
            return None;
        }
        self.warned_at = Some(now);
        let due = (self.count, self.worst);
        (self.count, self.worst) = (0, Duration::ZERO);
        Some(due)
    }
}

/// The segment being appended to.
#[derive(Debug)]
struct Tail {
    /// `None` until the first append of an empty journal.
    file: Option<File>,
    path: PathBuf,
    /// The segment's first sequence number.
    first: i64,
    /// Where the next record goes.
    end: u64,
    /// Bytes zero-filled (the file's length).
    allocated: u64,
    last: i64,
    /// The next segment, being made: (its size, the thread making it).
    spare: Option<(u64, std::thread::JoinHandle<io::Result<File>>)>,
}

/// Where the applier's reads left off.
#[derive(Debug)]
struct Cursor {
    file: File,
    path: PathBuf,
    /// The segment's first sequence number.
    first: i64,
    offset: u64,
    next: i64,
    /// Bytes read at `window_at`; `window_len` of them valid.
    window: Vec<u8>,
    window_at: u64,
    window_len: usize,
}

/// One record, decoded.
struct Frame {
    record: JournalRecord,
    /// Header and body.
    len: u64,
}

fn io_error(path: &Path, e: io::Error) -> StoreError {
    StoreError::Journal {
        path: path.to_path_buf(),
        error: e,
    }
}

fn segment_name(first: i64) -> String {
    format!("{first:020}.log")
}

/// The segments in `dir`, oldest first: (first sequence number, path).
fn segments(dir: &Path) -> Result<Vec<(i64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<i64>().ok())
        else {
            continue;
        };
        out.push((first, entry.path()));
    }
    out.sort_unstable_by_key(|s| s.0);
    Ok(out)
}

/// Makes a new or removed directory entry durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

fn encode(records: &[JournalRecord], buf: &mut Vec<u8>) -> Result<()> {
    for r in records {
        let source = r.source.as_bytes();
        let source_len = u8::try_from(source.len())
            .map_err(|_| StoreError::Corrupt(format!("source name too long: {}", r.source)))?;
        let body_len = BODY_FIXED + source.len() + r.payload.len();
        let body_len = u32::try_from(body_len).map_err(|_| {
            StoreError::Corrupt(format!(
                "delivery of {body_len} bytes is too large to journal"
            ))
        })?;
        let at = buf.len();
        buf.extend_from_slice(&body_len.to_le_bytes());
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&r.seq.to_le_bytes());
        buf.extend_from_slice(&r.received_ms.to_le_bytes());
        buf.push(source_len);
        buf.extend_from_slice(source);
        buf.extend_from_slice(r.payload.as_bytes());
        let crc = crc32fast::hash(&buf[at + HEADER..]);
        buf[at + 4..at + HEADER].copy_from_slice(&crc.to_le_bytes());
    }
    Ok(())
}

/// The record at the start of `bytes`, if one is complete and intact.
fn decode(bytes: &[u8]) -> Option<Frame> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..HEADER)?.try_into().ok()?);
    if len < BODY_FIXED {
        return None;
    }
    let body = bytes.get(HEADER..HEADER + len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let seq = i64::from_le_bytes(body[..8].try_into().ok()?);
    let received_ms = i64::from_le_bytes(body[8..16].try_into().ok()?);
    let source_end = BODY_FIXED + body[16] as usize;
    let source = std::str::from_utf8(body.get(BODY_FIXED..source_end)?).ok()?;
    let payload = std::str::from_utf8(body.get(source_end..)?).ok()?;
    Some(Frame {
        record: JournalRecord {
            seq,
            received_ms,
            source: source.to_string(),
            payload: payload.to_string(),
        },
        len: (HEADER + len) as u64,
    })
}

/// Reads `want` bytes of `file` from `at` into `buf` (fewer where the
/// file ends): the number read. `buf` only grows, so it is zeroed once.
fn read_window(file: &File, at: u64, buf: &mut Vec<u8>, want: usize) -> io::Result<usize> {
    if buf.len() < want {
        buf.resize(want, 0);
    }
    let mut filled = 0;
    while filled < want {
        match file.read_at(&mut buf[filled..want], at + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl Cursor {
    /// A cursor at the start of the segment that begins with `first`.
    fn open(path: &Path, first: i64) -> Result<Cursor> {
        Ok(Cursor {
            file: File::open(path).map_err(|e| io_error(path, e))?,
            path: path.to_path_buf(),
            first,
            offset: 0,
            next: first,
            window: Vec::new(),
            window_at: 0,
            window_len: 0,
        })
    }

    /// The record at the cursor, reading from the file when the window
    /// does not hold all of it (or held zeros where it is now). Reads
    /// stop at byte `bound` of the segment.
    fn frame(&mut self, bound: u64) -> Result<Option<Frame>> {
        let from_window = |c: &Cursor| {
            let start = usize::try_from(c.offset.checked_sub(c.window_at)?).ok()?;
            decode(c.window.get(start..c.window_len)?)
        };
        if let Some(f) = from_window(self) {
            return Ok(Some(f));
        }
        let mut want = READ_WINDOW
            .min(usize::try_from(bound.saturating_sub(self.offset)).unwrap_or(usize::MAX));
        loop {
            self.window_len = read_window(&self.file, self.offset, &mut self.window, want)
                .map_err(|e| io_error(&self.path, e))?;
            self.window_at = self.offset;
            if let Some(f) = decode(&self.window[..self.window_len]) {
                return Ok(Some(f));
            }
            // A record longer than the window: read all of it, if the
            // file is that long (a garbage length is not an allocation).
            let len = self
                .window
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map(|b| u32::from_le_bytes(b) as usize + HEADER)
                .unwrap_or(0);
            let file_len = self
                .file
                .metadata()
                .map_err(|e| io_error(&self.path, e))?
                .len();
            if len <= want || self.offset + len as u64 > file_len.min(bound) {
                return Ok(None);
            }
            want = len;
        }
    }
}

impl Cursor {
    /// The record at the cursor if it is the next in sequence (moving
    /// past it); `None` where this segment's records end.
    fn next_record(&mut self, bound: u64) -> Result<Option<JournalRecord>> {
        match self.frame(bound)? {
            Some(f) if f.record.seq == self.next => {
                self.offset += f.len;
                self.next += 1;
                Ok(Some(f.record))
            }
            _ => Ok(None),
        }
    }
}

impl FileJournal {
    /// Opens (creating it if need be) the journal in `dir`; with `sync`,
    /// every append is synced to the disk before it returns.
    pub async fn open(dir: PathBuf, sync: bool) -> Result<FileJournal> {
        Self::open_with(dir, sync, SEGMENT_BYTES).await
    }

    /// [`FileJournal::open`] with segments of another size (tests).
    pub async fn open_with(dir: PathBuf, sync: bool, segment_bytes: u64) -> Result<FileJournal> {
        tokio::task::spawn_blocking(move || Self::open_blocking(dir, sync, segment_bytes))
            .await
            .map_err(|e| StoreError::Corrupt(format!("journal open task: {e}")))?
    }

    fn open_blocking(dir: PathBuf, sync: bool, segment_bytes: u64) -> Result<FileJournal> {
        if dir.exists() && !dir.is_dir() {
            return Err(io_error(
                &dir,
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists and is not a folder (the journal keeps its segments in a folder of this name)",
                ),
            ));
        }
        fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        let mut segs = segments(&dir)?;
        let mut tail = Tail {
            file: None,
            path: dir.clone(),
            first: 0,
            end: 0,
            allocated: 0,
            last: 0,
            spare: None,
        };
        // The last segment with a good record; an empty one (a crash
        // right after it was made) is removed.
        while let Some((first, path)) = segs.pop() {
            let mut cursor = Cursor::open(&path, first)?;
            let mut last = None;
            while let Some(r) = cursor.next_record(u64::MAX)? {
                last = Some(r.seq);
            }
            let Some(last) = last else {
                if has_data(&cursor.file).map_err(|e| io_error(&path, e))? {
                    // Not one good record, yet not a fresh segment either:
                    // keep it for whoever looks into it.
                    let mut aside = path.clone().into_os_string();
                    aside.push(".unreadable");
                    fs::rename(&path, &aside).map_err(|e| io_error(&path, e))?;
                    tracing::error!(
                        segment = %path.display(),
                        moved_to = ?aside,
                        "intake journal: a segment without one readable record was set aside"
                    );
                } else {
                    fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
                }
                continue;
            };
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io_error(&path, e))?;
            let len = file.metadata().map_err(|e| io_error(&path, e))?.len();
            let cleared = wipe(&file, cursor.offset, len).map_err(|e| io_error(&path, e))?;
            if cleared > 0 {
                tracing::warn!(
                    segment = %path.display(),
                    after_record = last,
                    "intake journal: cleared the unfinished write a crash left (never answered)"
                );
            }
            tail = Tail {
                file: Some(file),
                path,
                first,
                end: cursor.offset,
                allocated: len,
                last,
                spare: None,
            };
            break;
        }
        let inner = Inner {
            dir,
            segment_bytes,
            sync,
            durable: AtomicI64::new(tail.last),
            durable_end: Mutex::new((tail.first, tail.end)),
            tail: Mutex::new(tail),
            cursor: Mutex::new(None),
            closed: AtomicBool::new(false),
            slow_syncs: Mutex::new(SlowSyncs::default()),
            lost: Mutex::new(Lost::default()),
        };
        // Listed in /metrics from the start, not from the first slow sync.
        metrics::counter!("firstline_intake_journal_slow_syncs_total").increment(0);
        metrics::counter!("firstline_intake_journal_lost_records_total").increment(0);
        {
            let mut tail = inner.tail.lock().unwrap_or_else(|p| p.into_inner());
            let size = inner.next_size(tail.allocated);
            tail.spare = inner.make_spare(size);
        }
        Ok(FileJournal {
            inner: Arc::new(inner),
        })
    }

    /// The folder of the segments.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The highest sequence number journaled (0 when empty).
    pub fn last_seq(&self) -> i64 {
        self.inner.durable.load(Ordering::Acquire)
    }

    /// Appends `records` (their sequence numbers following the last
    /// one's) and syncs them: when this returns, they survive a power loss.
    pub async fn append(&self, records: Vec<JournalRecord>) -> Result<()> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.append(&records))
            .await
            .map_err(|e| StoreError::Corrupt(format!("journal append task: {e}")))?
    }

    /// Up to `limit` durable records after `seq`, in order.
    pub async fn read_after(&self, seq: i64, limit: i64) -> Result<Vec<JournalRecord>> {
        if seq >= self.last_seq() {
            return Ok(Vec::new());
        }
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.read_after(seq, limit))
            .await
            .map_err(|e| StoreError::Corrupt(format!("journal read task: {e}")))?
    }

    /// Removes the segments whose every record is at or before `seq`
    /// (the segment being appended to stays); the number removed.
    pub async fn prune_through(&self, seq: i64) -> Result<u64> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.prune_through(seq))
            .await
            .map_err(|e| StoreError::Corrupt(format!("journal prune task: {e}")))?
    }

    /// Records the reader found missing (see [`Lost`]).
    pub fn lost(&self) -> Lost {
        *self.inner.lost.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses every later append (as a full disk would).
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
    }
}

/// Zeroes what is not zeros in `from..to` (the tail a crash may have
/// left after the last good record), and syncs it: the bytes cleared.
fn wipe(file: &File, from: u64, to: u64) -> io::Result<u64> {
    let mut buf = Vec::new();
    let (mut at, mut cleared) = (from, 0);
    while at < to {
        let want = (to - at).min(READ_WINDOW as u64) as usize;
        let n = read_window(file, at, &mut buf, want)?;
        if buf[..n].iter().any(|b| *b != 0) {
            zero_fill(file, at, at + n as u64)?;
            cleared += n as u64;
        }
        if n == 0 {
            break;
        }
        at += n as u64;
    }
    file.sync_data()?;
    Ok(cleared)
}

/// Whether `file` holds anything but zeros.
fn has_data(file: &File) -> io::Result<bool> {
    let len = file.metadata()?.len();
    let mut buf = Vec::new();
    let mut at = 0;
    while at < len {
        let n = read_window(file, at, &mut buf, READ_WINDOW)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(true);
        }
        at += n as u64;
    }
    Ok(false)
}

/// A zero-filled file of `size` bytes at `path`, synced with its length.
/// Synced a megabyte at a time: one sync of 64 MB would hold the disk
/// for a while, and the journal's own syncs would queue behind it.
fn zeroed_file(path: &Path, size: u64) -> io::Result<File> {
    const STEP: u64 = 1 << 20;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let mut at = 0;
    while at < size {
        let to = (at + STEP).min(size);
        zero_fill(&file, at, to)?;
        file.sync_all()?;
        at = to;
    }
    Ok(file)
}

/// Writes zeros over `from..to`.
fn zero_fill(file: &File, from: u64, to: u64) -> io::Result<()> {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

impl Inner {
    fn append(&self, records: &[JournalRecord]) -> Result<()> {
        let Some(first) = records.first().map(|r| r.seq) else {
            return Ok(());
        };
        if self.closed.load(Ordering::Acquire) {
            return Err(io_error(
                &self.dir,
                io::Error::new(io::ErrorKind::BrokenPipe, "the journal is closed"),
            ));
        }
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let in_order = records
            .iter()
            .enumerate()
            .all(|(i, r)| r.seq == first + i as i64)
            && first > 0
            && (tail.last == 0 || first == tail.last + 1);
        if !in_order {
            return Err(StoreError::Corrupt(format!(
                "journal append out of order: records from {first} after {}",
                tail.last
            )));
        }
        let mut buf = Vec::with_capacity(records.iter().map(|r| r.payload.len() + 64).sum());
        encode(records, &mut buf)?;
        let len = buf.len() as u64;
        if tail.file.is_none() || (tail.end > 0 && tail.end + len > tail.allocated) {
            self.roll(&mut tail, first)?;
        }
        let Tail {
            file: Some(file),
            path,
            end,
            allocated,
            ..
        } = &mut *tail
        else {
            return Err(StoreError::Corrupt("journal segment missing".into()));
        };
        if *end + len > *allocated {
            // A delivery larger than a whole segment.
            zero_fill(file, *allocated, *end + len)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error(path, e))?;
            *allocated = *end + len;
        }
        // A failed write or sync leaves `end` where it was: the next
        // append writes over whatever part of this one reached the disk.
        file.write_all_at(&buf, *end)
            .map_err(|e| io_error(path, e))?;
        if self.sync {
            let started = Instant::now();
            file.sync_data().map_err(|e| io_error(path, e))?;
            let took = started.elapsed();
            if took >= SLOW_SYNC {
                self.slow_sync(path, took);
            }
        }
        *end += len;
        let last = first + records.len() as i64 - 1;
        tail.last = last;
        *self.durable_end.lock().unwrap_or_else(|p| p.into_inner()) = (tail.first, tail.end);
        self.durable.store(last, Ordering::Release);
        Ok(())
    }

    /// Counts a sync over [`SLOW_SYNC`], and now and then says so.
    fn slow_sync(&self, path: &Path, took: Duration) {
        metrics::counter!("firstline_intake_journal_slow_syncs_total").increment(1);
        let due = self
            .slow_syncs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(took, Instant::now());
        if let Some((count, worst)) = due {
            tracing::warn!(
                path = %path.display(),
                worst_ms = worst.as_millis() as u64,
                slow_syncs = count,
                "the intake journal's disk was slow to sync: senders waited up to {} ms for their answer (syncs over {} ms since the last warning: {count}). Another writer on the same disk (the database's checkpoints, a backup, logs) is the usual cause; README, \"The journal's disk\", says how to give the journal a disk of its own",
                worst.as_millis(),
                SLOW_SYNC.as_millis(),
            );
        }
    }

    /// Makes the spare the segment that begins with `first`, and starts
    /// making the next spare.
    fn roll(&self, tail: &mut Tail, first: i64) -> Result<()> {
        let spare_path = self.dir.join(SPARE);
        let (size, file) = match tail.spare.take() {
            Some((size, maker)) => match maker.join() {
                Ok(Ok(file)) => (size, file),
                Ok(Err(e)) => return Err(io_error(&spare_path, e)),
                Err(_) => {
                    return Err(StoreError::Corrupt(
                        "the thread making the next journal segment panicked".into(),
                    ));
                }
            },
            // The thread could not be started: make it here.
            None => {
                let size = self.next_size(tail.allocated);
                (
                    size,
                    zeroed_file(&spare_path, size).map_err(|e| io_error(&spare_path, e))?,
                )
            }
        };
        let path = self.dir.join(segment_name(first));
        fs::rename(&spare_path, &path).map_err(|e| io_error(&path, e))?;
        sync_dir(&self.dir)?;
        *tail = Tail {
            file: Some(file),
            path,
            first,
            end: 0,
            allocated: size,
            last: tail.last,
            spare: self.make_spare(self.next_size(size)),
        };
        Ok(())
    }

    /// The size of the segment after one of `bytes`.
    fn next_size(&self, bytes: u64) -> u64 {
        let min = FIRST_SEGMENT_BYTES.min(self.segment_bytes);
        bytes.saturating_mul(2).clamp(min, self.segment_bytes)
    }

    /// Starts making the spare segment on a thread of its own; `None` if
    /// no thread could be started (the roll then makes it).
    fn make_spare(&self, size: u64) -> Option<(u64, std::thread::JoinHandle<io::Result<File>>)> {
        let path = self.dir.join(SPARE);
        std::thread::Builder::new()
            .name("journal-spare".into())
            .spawn(move || zeroed_file(&path, size))
            .ok()
            .map(|maker| (size, maker))
    }

    /// Where reads of the segment that begins with `first` must stop:
    /// the end of what is synced, if it is the one being appended to.
    fn bound(&self, first: i64) -> u64 {
        let (segment, end) = *self.durable_end.lock().unwrap_or_else(|p| p.into_inner());
        if segment == first { end } else { u64::MAX }
    }

    fn read_after(&self, seq: i64, limit: i64) -> Result<Vec<JournalRecord>> {
        let durable = self.durable.load(Ordering::Acquire);
        let mut slot = self.cursor.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_none_or(|c| c.next != seq + 1) {
            *slot = Some(self.seek(seq + 1)?);
        }
        let Some(cursor) = slot.as_mut() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        while (out.len() as i64) < limit && cursor.next <= durable {
            if let Some(r) = cursor.next_record(self.bound(cursor.first))? {
                out.push(r);
                continue;
            }
            // The end of this segment: the next one starts here.
            let path = self.dir.join(segment_name(cursor.next));
            if path.exists() {
                *cursor = Cursor::open(&path, cursor.next)?;
                continue;
            }
            // It does not: records are missing. Report them and go on
            // from the next segment there is, rather than stall for good.
            let segs = segments(&self.dir)?;
            let Some((first, path)) = segs.into_iter().find(|(first, _)| *first > cursor.next)
            else {
                return Err(StoreError::Corrupt(format!(
                    "intake journal: records {} to {durable} are missing from {} (its last segment is gone)",
                    cursor.next,
                    self.dir.display()
                )));
            };
            self.report_gap(cursor.next, first - 1);
            *cursor = Cursor::open(&path, first)?;
        }
        Ok(out)
    }

    /// Counts and logs records `from..=to` as lost.
    fn report_gap(&self, from: i64, to: i64) {
        let n = to - from + 1;
        {
            let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
            lost.records += n;
            lost.last_gap = Some((from, to));
        }
        metrics::counter!("firstline_intake_journal_lost_records_total").increment(n as u64);
        tracing::error!(
            from,
            to,
            records = n,
            dir = %self.dir.display(),
            "intake journal: records are missing (a segment was removed or damaged); they cannot be applied, the ones after them are"
        );
    }

    /// A cursor at record `next` (or where it will be written), or at
    /// the oldest record if that comes later (the ones before it applied
    /// and pruned).
    fn seek(&self, next: i64) -> Result<Cursor> {
        let segs = segments(&self.dir)?;
        let found = segs.iter().rev().find(|(first, _)| *first <= next);
        if found.is_none()
            && let Some((first, _)) = segs.first()
            && *first > next
        {
            // Pruning keeps the segment holding the record after the last
            // one applied: an oldest segment starting later means loss.
            self.report_gap(next, *first - 1);
        }
        let Some((first, path)) = found.or(segs.first()) else {
            return Err(StoreError::Corrupt(format!(
                "intake journal: record {next} is missing from {}",
                self.dir.display()
            )));
        };
        let mut cursor = Cursor::open(path, *first)?;
        let bound = self.bound(*first);
        while cursor.next < next && cursor.next_record(bound)?.is_some() {}
        Ok(cursor)
    }

    fn prune_through(&self, seq: i64) -> Result<u64> {
        let segs = segments(&self.dir)?;
        let mut removed = 0;
        for pair in segs.windows(2) {
            // Every record of a segment is before the next one's first.
            if pair[1].0 - 1 <= seq {
                fs::remove_file(&pair[0].1).map_err(|e| io_error(&pair[0].1, e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: i64, payload: &str) -> JournalRecord {
        JournalRecord {
            seq,
            received_ms: 1_700_000_000_000 + seq,
            source: "alertmanager".into(),
            payload: payload.into(),
        }
    }

    fn seqs(records: &[JournalRecord]) -> Vec<i64> {
        records.iter().map(|r| r.seq).collect()
    }

    /// Opens the journal at `path`, appends `records` and closes it.
    async fn append_and_close(path: &Path, records: Vec<JournalRecord>) {
        let journal = FileJournal::open(path.to_path_buf(), true)
            .await
            .expect("open");
        journal.append(records).await.expect("append");
    }

    #[test]
    fn slow_syncs_warn_at_once_then_at_most_every_ten_seconds_with_what_they_held_back() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut slow = SlowSyncs::default();

        let first = slow.record(ms(60), t0);
        let held = [
            slow.record(ms(300), t0 + ms(1_000)),
            slow.record(ms(70), t0 + ms(9_999)),
        ];
        let next = slow.record(ms(80), t0 + ms(10_000));
        let after = slow.record(ms(90), t0 + ms(12_000));

        assert_eq!(first, Some((1, ms(60))), "the first slow sync is reported");
        assert_eq!(held, [None, None], "then none for ten seconds");
        assert_eq!(
            next,
            Some((3, ms(300))),
            "the next warning counts the held ones and names the worst"
        );
        assert_eq!(after, None);
    }

    #[tokio::test]
    async fn records_read_back_in_order_after_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("j");
        let journal = FileJournal::open(path.clone(), true).await.expect("open");
        assert_eq!(journal.last_seq(), 0);
        journal
            .append(vec![record(1, "{\"a\":1}"), record(2, "ü")])
            .await
            .expect("append");
        journal.append(vec![record(3, "")]).await.expect("append");
        let read = journal.read_after(1, 10).await.expect("read");
        assert_eq!(seqs(&read), [2, 3]);
        assert_eq!(read[0].payload, "ü");
        assert_eq!(read[0].received_ms, 1_700_000_000_002);
        assert_eq!(read[0].source, "alertmanager");
        drop(journal);

        let journal = FileJournal::open(path, true).await.expect("reopen");
        assert_eq!(journal.last_seq(), 3);
        assert_eq!(seqs(&journal.read_after(0, 2).await.expect("read")), [1, 2]);
        journal.append(vec![record(4, "x")]).await.expect("append");
        assert_eq!(
            seqs(&journal.read_after(2, 10).await.expect("read")),
            [3, 4]
        );
    }

    /// README's way to give the journal a disk of its own: move the
    /// folder and leave a symlink where it was.
    #[tokio::test]
    async fn a_journal_moved_behind_a_symlink_keeps_its_records_and_goes_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("firstline.db-intake.d");
        append_and_close(&path, vec![record(1, "one"), record(2, "two")]).await;
        let elsewhere = dir.path().join("other-disk");
        fs::create_dir(&elsewhere).expect("mkdir");
        let moved = elsewhere.join("firstline.db-intake.d");
        fs::rename(&path, &moved).expect("move");
        std::os::unix::fs::symlink(&moved, &path).expect("symlink");

        append_and_close(&path, vec![record(3, "three")]).await;
        let journal = FileJournal::open(path, true).await.expect("reopen");
        let read = journal.read_after(0, 10).await.expect("read");

        assert_eq!(seqs(&read), [1, 2, 3]);
        assert!(
            moved.join(segment_name(1)).is_file(),
            "the records live on the other disk"
        );
    }

    #[tokio::test]
    async fn a_torn_tail_is_dropped_and_written_over() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("j");
        append_and_close(&path, vec![record(1, "one"), record(2, "two")]).await;
        // A crash in the middle of writing record 2 (and 3 after it).
        let seg = path.join(segment_name(1));
        let file = OpenOptions::new().write(true).open(&seg).expect("segment");
        let one = (HEADER + BODY_FIXED + "alertmanager".len() + "one".len()) as u64;
        file.write_all_at(b"garbage!", one + 10).expect("tear");
        // ... with record 3 intact just where the retried record 2 will
        // end: unless the torn tail is wiped, it would read back.
        let mut retried = Vec::new();
        encode(&[record(2, "2")], &mut retried).expect("encode");
        let mut three = Vec::new();
        encode(&[record(3, "three")], &mut three).expect("encode");
        file.write_all_at(&three, one + retried.len() as u64)
            .expect("write");
        drop(file);

        let journal = FileJournal::open(path.clone(), true).await.expect("reopen");
        assert_eq!(journal.last_seq(), 1, "record 2 was torn");
        journal.append(vec![record(2, "2")]).await.expect("append");
        drop(journal);
        let journal = FileJournal::open(path, true).await.expect("reopen");
        let read = journal.read_after(0, 10).await.expect("read");
        assert_eq!(seqs(&read), [1, 2], "the stale record 3 is not read back");
        assert_eq!(read[1].payload, "2");
    }

    /// A journal of 200-byte segments at `path` holding records 1 to 5,
    /// one a segment.
    async fn five_segments(path: &Path) -> FileJournal {
        let journal = FileJournal::open_with(path.to_path_buf(), true, 200)
            .await
            .expect("open");
        let payload = "p".repeat(100);
        for seq in 1..=5 {
            journal
                .append(vec![record(seq, &payload)])
                .await
                .expect("append");
        }
        journal
    }

    #[tokio::test]
    async fn full_segments_roll_over_and_applied_ones_are_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("j");
        let journal = five_segments(&path).await;
        assert_eq!(segments(&path).expect("list").len(), 5);
        assert_eq!(
            seqs(&journal.read_after(0, 10).await.expect("read")),
            [1, 2, 3, 4, 5]
        );
        // A record larger than a segment gets one of its own.
        journal
            .append(vec![record(6, &"q".repeat(500))])
            .await
            .expect("append");
        assert_eq!(journal.prune_through(3).await.expect("prune"), 3);
        assert_eq!(
            seqs(&journal.read_after(3, 10).await.expect("read")),
            [4, 5, 6]
        );
        assert_eq!(journal.prune_through(6).await.expect("prune"), 2);
        assert_eq!(segments(&path).expect("list").len(), 1, "the tail stays");
        drop(journal);
        let journal = FileJournal::open_with(path, true, 200)
            .await
            .expect("reopen");
        assert_eq!(journal.last_seq(), 6);
        journal.append(vec![record(7, "r")]).await.expect("append");
        assert_eq!(seqs(&journal.read_after(6, 10).await.expect("read")), [7]);
    }

    #[tokio::test]
    async fn a_missing_segment_is_reported_as_lost_records_and_reading_goes_on_past_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("j");
        drop(five_segments(&path).await);
        // Records 2 and 3 gone (their segments removed by hand).
        for seq in [2, 3] {
            fs::remove_file(path.join(segment_name(seq))).expect("remove");
        }
        let journal = FileJournal::open_with(path.clone(), true, 200)
            .await
            .expect("reopen");

        let read = journal.read_after(0, 10).await.expect("read goes on");

        assert_eq!(seqs(&read), [1, 4, 5]);
        assert_eq!(
            journal.lost(),
            Lost {
                records: 2,
                last_gap: Some((2, 3))
            }
        );
        // A reader that starts inside the gap reports it too.
        let journal = FileJournal::open_with(path, true, 200)
            .await
            .expect("reopen");
        assert_eq!(
            seqs(&journal.read_after(1, 10).await.expect("read")),
            [4, 5]
        );
        assert_eq!(journal.lost().last_gap, Some((2, 3)));
    }

    #[tokio::test]
    async fn a_segment_without_a_readable_record_is_set_aside_not_deleted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("j");
        let journal = FileJournal::open(path.clone(), true).await.expect("open");
        journal
            .append(vec![record(1, "one")])
            .await
            .expect("append");
        drop(journal);
        // A later segment that is neither zeros nor records.
        let garbage = path.join(segment_name(2));
        fs::write(&garbage, b"not a journal record").expect("write");

        let journal = FileJournal::open(path.clone(), true).await.expect("reopen");
        assert_eq!(journal.last_seq(), 1);
        assert!(!garbage.exists());
        let aside = path.join(format!("{}.unreadable", segment_name(2)));
        assert_eq!(
            fs::read(&aside).expect("set aside"),
            b"not a journal record"
        );
        journal
            .append(vec![record(2, "two")])
            .await
            .expect("append");
        assert_eq!(
            seqs(&journal.read_after(0, 10).await.expect("read")),
            [1, 2]
        );
    }

    #[tokio::test]
    async fn a_file_where_the_folder_belongs_is_named_in_the_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("firstline.db-intake.d");
        fs::write(&path, b"").expect("write");
        let err = FileJournal::open(path, true).await.expect_err("a file");
        let text = err.to_string();
        assert!(
            text.contains("firstline.db-intake.d") && text.contains("not a folder"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn appends_out_of_order_or_after_close_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = FileJournal::open(dir.path().join("j"), true)
            .await
            .expect("open");
        journal.append(vec![record(5, "a")]).await.expect("append");
        let err = journal.append(vec![record(7, "b")]).await.expect_err("gap");
        assert!(err.to_string().contains("out of order"), "{err}");
        journal.close();
        let err = journal
            .append(vec![record(6, "b")])
            .await
            .expect_err("closed");
        assert!(err.to_string().contains("closed"), "{err}");
        assert_eq!(seqs(&journal.read_after(0, 10).await.expect("read")), [5]);
    }
}
