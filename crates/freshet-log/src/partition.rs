//! One partition: an ordered list of segments, the only writer to them, and
//! the notifications readers and `acks=all` producers wait on.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use freshet_core::limits;
use tokio::sync::watch;

use crate::Shared;
use crate::batch::{self, BatchHeader};
use crate::config::{Durability, TopicConfig};
use crate::error::{LogError, Result};
use crate::files;
use crate::flusher::Job;
use crate::producers::{self, ProducerStates, SequenceCheck};
use crate::segment::{self, Segment};

const RECOVERY_POINT_FILE: &str = "recovery-point";

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// Wall-clock time of the append (Kafka's log append time).
    pub append_time_ms: i64,
    pub log_start_offset: i64,
    /// The batch was a producer's retry of one already in the log; the
    /// offsets are the original ones and nothing was written.
    pub duplicate: bool,
}

/// Whole batches read from a partition.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    /// Record batches of one segment, each checked before it was
    /// returned: a slice of the mapped segment file.
    pub bytes: Bytes,
    /// The offset after the last batch returned (the next one to read).
    pub next_offset: i64,
    /// One past the last offset in the partition when the read started.
    pub end_offset: i64,
    pub log_start_offset: i64,
}

/// What recovery did to a partition when the log opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionRecovery {
    pub truncated_bytes: u64,
    pub segments_dropped: usize,
}

#[derive(Debug)]
struct WriterState {
    closed: bool,
    producers: ProducerStates,
}

#[derive(Debug)]
pub struct Partition {
    topic: String,
    id: u32,
    dir: PathBuf,
    config: Arc<RwLock<TopicConfig>>,
    /// Serialises appends, rolls, retention and close.
    writer: Mutex<WriterState>,
    /// The segments, oldest first; readers clone the `Arc` and read lock-free.
    segments: RwLock<Arc<Vec<Arc<Segment>>>>,
    log_start_offset: AtomicI64,
    end_offset: watch::Sender<i64>,
    durable_offset: watch::Sender<i64>,
    flush_scheduled: AtomicBool,
    write_scheduled: AtomicBool,
    last_sync: Mutex<Instant>,
    waiting_readers: AtomicUsize,
    shared: Arc<Shared>,
}

impl Partition {
    pub(crate) fn open(
        topic: &str,
        id: u32,
        dir: &Path,
        config: Arc<RwLock<TopicConfig>>,
        shared: Arc<Shared>,
        clean: bool,
    ) -> Result<(Self, PartitionRecovery)> {
        fs::create_dir_all(dir).map_err(LogError::io(dir))?;
        let mut bases = Vec::new();
        for entry in fs::read_dir(dir).map_err(LogError::io(dir))? {
            let path = entry.map_err(LogError::io(dir))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(&path);
            } else if let Some(base) = name
                .strip_suffix(".log")
                .and_then(|b| b.parse::<i64>().ok())
            {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let recovery_point = if clean {
            i64::MAX
        } else {
            read_recovery_point(dir)
        };
        let mut recovery = PartitionRecovery::default();
        let mut segments: Vec<Arc<Segment>> = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let contiguous = segments
                .last()
                .is_none_or(|previous| previous.next_offset() == base);
            let prefix_broken = recovery.truncated_bytes > 0;
            if !contiguous || prefix_broken {
                // Keep exactly a prefix: everything after a gap or a cut goes.
                for &dropped in &bases[i..] {
                    tracing::warn!(
                        topic,
                        partition = id,
                        base_offset = dropped,
                        "dropping segment after a recovered gap"
                    );
                    let _ = fs::remove_file(segment::log_path(dir, dropped));
                    recovery.segments_dropped += 1;
                }
                break;
            }
            let sealed_before_recovery_point =
                bases.get(i + 1).is_some_and(|&next| next <= recovery_point);
            let trust_index = clean || sealed_before_recovery_point;
            let (segment, report) = Segment::open(
                dir,
                base,
                shared.interval_bytes,
                Arc::clone(&shared.files),
                &shared.recent,
                trust_index,
            )?;
            if let Some(report) = report {
                recovery.truncated_bytes += report.truncated_bytes;
            }
            segments.push(Arc::new(segment));
        }
        if segments.is_empty() {
            segments.push(Arc::new(Segment::create(
                dir,
                0,
                shared.interval_bytes,
                Arc::clone(&shared.files),
                &shared.recent,
            )?));
        }
        let active = segments.last().expect("at least one segment");
        active.activate()?;
        active.sync()?;
        let end = active.next_offset();
        let start = segments[0].base_offset();
        if !clean {
            files::write_atomically(&dir.join(RECOVERY_POINT_FILE), end.to_string().as_bytes())?;
        }
        let producers = recover_producers(dir, &segments, start, end)?;
        let partition = Self {
            topic: topic.to_string(),
            id,
            dir: dir.to_path_buf(),
            config,
            writer: Mutex::new(WriterState {
                closed: false,
                producers,
            }),
            segments: RwLock::new(Arc::new(segments)),
            log_start_offset: AtomicI64::new(start),
            end_offset: watch::Sender::new(end),
            durable_offset: watch::Sender::new(end),
            flush_scheduled: AtomicBool::new(false),
            write_scheduled: AtomicBool::new(false),
            last_sync: Mutex::new(Instant::now()),
            waiting_readers: AtomicUsize::new(0),
            shared,
        };
        Ok((partition, recovery))
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    /// One past the last offset appended and in the file: what readers
    /// see, and what a kill of the process keeps (Kafka's log end offset;
    /// with a single replica also the high watermark). With direct writes
    /// an append is in memory first and reaches the file, and this, an
    /// instant later (see [`Partition::wait_written`]).
    pub fn end_offset(&self) -> i64 {
        *self.end_offset.borrow()
    }

    /// One past the last offset known to be on stable storage.
    pub fn durable_offset(&self) -> i64 {
        *self.durable_offset.borrow()
    }

    pub fn size_bytes(&self) -> u64 {
        self.snapshot().iter().map(|s| s.size_bytes()).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.snapshot().len()
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Segment>>> {
        Arc::clone(&self.segments.read().expect("segments lock"))
    }

    fn publish(&self, segments: Vec<Arc<Segment>>) {
        self.log_start_offset
            .store(segments[0].base_offset(), Ordering::Release);
        *self.segments.write().expect("segments lock") = Arc::new(segments);
    }

    fn active(&self) -> Arc<Segment> {
        Arc::clone(
            self.snapshot()
                .last()
                .expect("a partition always has an active segment"),
        )
    }

    /// Validates and appends one or more record batches (a produce
    /// request's record set), assigning offsets. Batches are stored as the
    /// bytes given, but for the base offset and leader epoch.
    pub fn append(self: &Arc<Self>, bytes: impl AsRef<[u8]>) -> Result<AppendInfo> {
        let bytes = bytes.as_ref();
        let config = *self.config.read().expect("config lock");
        let mut headers: Vec<BatchHeader> = batch::split(bytes)?
            .into_iter()
            .map(|(header, _)| header)
            .collect();
        if headers.is_empty() {
            return Err(crate::error::BatchError::Truncated {
                needed: batch::HEADER_BYTES,
                available: 0,
            }
            .into());
        }
        if let Some(large) = headers
            .iter()
            .find(|h| h.size_bytes > config.max_message_bytes)
        {
            return Err(LogError::BatchTooLarge {
                size_bytes: large.size_bytes as usize,
                max_bytes: config.max_message_bytes,
            });
        }
        let mut guard = self.writer.lock().expect("writer lock");
        if guard.closed {
            return Err(LogError::ShuttingDown);
        }
        // Idempotent producers: a retry is answered with its first offsets;
        // a gap or a fenced epoch is refused before anything is written.
        let mut checks = Vec::with_capacity(headers.len());
        for header in &headers {
            checks.push(guard.producers.check(header)?);
        }
        if let [
            SequenceCheck::Duplicate {
                base_offset,
                last_offset,
            },
        ] = checks[..]
        {
            return Ok(AppendInfo {
                base_offset,
                last_offset,
                append_time_ms: -1,
                log_start_offset: self.log_start_offset(),
                duplicate: true,
            });
        }
        if checks
            .iter()
            .any(|c| matches!(c, SequenceCheck::Duplicate { .. }))
        {
            let header = headers[0];
            return Err(producers::ProducerError::OutOfOrderSequence {
                producer_id: header.producer_id,
                expected: -1,
                got: header.base_sequence,
            }
            .into());
        }
        let now_ms = self.shared.clock.now_ms();
        let mut active = self.active();
        let too_big = active.size_bytes() + bytes.len() as u64 > config.segment_bytes;
        let too_old = active
            .first_append_ms()
            .is_some_and(|first| now_ms - first >= config.segment_ms);
        if !active.is_empty() && (too_big || too_old) {
            self.roll_locked(&guard)?;
            active = self.active();
        }
        let base_offset = active.next_offset();
        let mut next_offset = base_offset;
        for header in &mut headers {
            header.base_offset = next_offset;
            header.leader_epoch = batch::LEADER_EPOCH;
            next_offset += header.offset_count();
        }
        let in_file = active.append(bytes, &headers, now_ms)?;
        for header in &headers {
            guard.producers.record(header);
        }
        if !in_file && config.durability == Durability::EveryBatch {
            active.write_behind(active.size_bytes())?;
        }
        if in_file || config.durability == Durability::EveryBatch {
            advance(&self.end_offset, next_offset);
        }
        let stats = &self.shared.stats;
        stats
            .batches_appended
            .fetch_add(headers.len() as u64, Ordering::Relaxed);
        stats
            .bytes_appended
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        match config.durability {
            Durability::EveryBatch => {
                self.sync_timed(&active)?;
                self.durable_offset.send_replace(next_offset);
            }
            // Without fsyncs, written is as durable as it gets.
            Durability::None if in_file => {
                self.durable_offset.send_replace(next_offset);
            }
            Durability::None | Durability::GroupCommit => {}
        }
        drop(guard);
        if !in_file && config.durability != Durability::EveryBatch {
            self.schedule_write();
        }
        if config.durability == Durability::GroupCommit {
            self.schedule_flush(config.flush_interval_ms);
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: next_offset - 1,
            append_time_ms: now_ms,
            log_start_offset: self.log_start_offset(),
            duplicate: false,
        })
    }

    /// Appends as [`Partition::append`] does, then writes the append to
    /// the file before returning, if the writer thread has not yet: for
    /// appenders in the process that go on as if it were kept by a kill.
    pub fn append_written(self: &Arc<Self>, bytes: impl AsRef<[u8]>) -> Result<AppendInfo> {
        let info = self.append(bytes)?;
        if self.end_offset() <= info.last_offset {
            self.write()?;
        }
        Ok(info)
    }

    fn sync_timed(&self, segment: &Segment) -> Result<()> {
        let started = Instant::now();
        segment.sync()?;
        self.shared.stats.record_fsync(started.elapsed());
        Ok(())
    }

    fn schedule_flush(self: &Arc<Self>, interval_ms: u64) {
        if self.flush_scheduled.swap(true, Ordering::AcqRel) {
            return; // the pending flush will cover this append
        }
        let earliest =
            *self.last_sync.lock().expect("last sync lock") + Duration::from_millis(interval_ms);
        if !self
            .shared
            .flusher
            .schedule(Arc::clone(self), earliest.max(Instant::now()))
            && let Err(error) = self.flush()
        {
            tracing::error!(topic = %self.topic, partition = self.id, %error, "fsync failed");
        }
    }

    fn schedule_write(self: &Arc<Self>) {
        if self.write_scheduled.swap(true, Ordering::AcqRel) {
            return; // the pending write will take this append too
        }
        if !self
            .shared
            .writer
            .schedule(Arc::clone(self), Instant::now())
        {
            // The writer thread has ended (the log is going away): write
            // here instead.
            if let Err(error) = self.write() {
                tracing::error!(topic = %self.topic, partition = self.id, %error, "write to the segment file failed");
            }
        }
    }

    /// Marks the partition queued for `job`; `false` if it already was.
    pub(crate) fn claim(&self, job: Job) -> bool {
        let scheduled = match job {
            Job::Flush => &self.flush_scheduled,
            Job::Write => &self.write_scheduled,
        };
        !scheduled.swap(true, Ordering::AcqRel)
    }

    /// The active segment, how far it is appended and the offset after
    /// that, as one appender left them.
    fn appended(&self) -> (Arc<Segment>, u64, i64) {
        let _guard = self.writer.lock().expect("writer lock");
        let active = self.active();
        let (size, next) = (active.size_bytes(), active.next_offset());
        (active, size, next)
    }

    /// Called by the writer thread: writes what has been appended to the
    /// file and makes it readable (direct writes; see [`crate::recent`]).
    pub(crate) fn write(&self) -> Result<()> {
        self.write_scheduled.store(false, Ordering::Release);
        let (active, size, next) = self.appended();
        active.write_behind(size)?;
        advance(&self.end_offset, next);
        let durability = self.config.read().expect("config lock").durability;
        if durability == Durability::None {
            advance(&self.durable_offset, next);
        }
        Ok(())
    }

    /// Called by the flusher: writes and fsyncs what has been appended so
    /// far and releases every append it covers.
    pub(crate) fn flush(&self) -> Result<()> {
        self.flush_scheduled.store(false, Ordering::Release);
        let (active, size, next) = self.appended();
        active.write_behind(size)?;
        advance(&self.end_offset, next);
        // The interval runs from the start of one fsync to the next.
        *self.last_sync.lock().expect("last sync lock") = Instant::now();
        self.sync_timed(&active)?;
        advance(&self.durable_offset, next);
        Ok(())
    }

    /// Waits until everything before `offset` is in the file, so readable
    /// and kept by a kill of the process (for `acks=1`). Returns at once
    /// unless the log writes directly, behind the appends.
    pub async fn wait_written(&self, offset: i64) -> Result<()> {
        let mut end = self.end_offset.subscribe();
        end.wait_for(|&end| end >= offset)
            .await
            .map(|_| ())
            .map_err(|_| LogError::ShuttingDown)
    }

    /// Waits until everything before `offset` is on stable storage (for
    /// `acks=all`). Returns at once under `Durability::None`.
    pub async fn wait_durable(&self, offset: i64) -> Result<()> {
        let mut durable = self.durable_offset.subscribe();
        durable
            .wait_for(|&durable| durable >= offset)
            .await
            .map(|_| ())
            .map_err(|_| LogError::ShuttingDown)
    }

    /// Waits until the partition holds data at `offset`, or the timeout
    /// passes. Returns whether data is there. Waiters per partition are
    /// bounded; past the bound this returns at once.
    pub async fn wait_for_data(&self, offset: i64, timeout: Duration) -> bool {
        if self.end_offset() > offset {
            return true;
        }
        if self.waiting_readers.fetch_add(1, Ordering::AcqRel)
            >= limits::WAITING_READERS_PER_PARTITION_MAX
        {
            self.waiting_readers.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _waiting = Waiting(&self.waiting_readers);
        let mut end = self.end_offset.subscribe();
        matches!(
            tokio::time::timeout(timeout, end.wait_for(|&end| end > offset)).await,
            Ok(Ok(_))
        )
    }

    pub fn waiting_readers(&self) -> usize {
        self.waiting_readers.load(Ordering::Acquire)
    }

    /// Reads whole batches starting with the one holding `offset`, up to
    /// `max_bytes` but at least one batch if any is there. A read stops at
    /// the end of a segment, as a Kafka broker's does, and of a chunk of
    /// recent bytes in memory: the bytes are one slice of that chunk or of
    /// the segment's mapped file.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        let end = self.end_offset();
        let segments = self.snapshot();
        let start = segments[0].base_offset();
        if offset < start || offset > end {
            return Err(LogError::OffsetOutOfRange { offset, start, end });
        }
        let at = segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1);
        let mut read = ReadResult {
            bytes: Bytes::new(),
            next_offset: offset,
            end_offset: end,
            log_start_offset: start,
        };
        if offset == end {
            return Ok(read);
        }
        for segment in &segments[at..] {
            match segment.read(offset, max_bytes) {
                Ok(Some((bytes, next))) => {
                    read.bytes = bytes;
                    read.next_offset = next;
                    break;
                }
                Ok(None) => {}
                Err(LogError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    // Retention deleted the segment before it was mapped.
                    let start = self.log_start_offset();
                    return Err(LogError::OffsetOutOfRange { offset, start, end });
                }
                Err(error) => return Err(error),
            }
        }
        Ok(read)
    }

    /// The first batch whose max timestamp is at least `timestamp`: its
    /// base offset and max timestamp. `None` if every batch is older.
    pub fn find_by_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>> {
        for segment in self.snapshot().iter() {
            if let Some(found) = segment.find_by_timestamp(timestamp)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Seals the active segment and starts a new one. Caller holds `writer`.
    fn roll_locked(&self, state: &WriterState) -> Result<()> {
        let mut segments = (*self.snapshot()).clone();
        let active = segments.last().expect("active segment");
        let started = Instant::now();
        active.seal()?;
        self.shared.stats.record_fsync(started.elapsed());
        let next_offset = active.next_offset();
        producers::write_snapshot(&self.dir, next_offset, &state.producers)?;
        let fresh = Segment::create(
            &self.dir,
            next_offset,
            self.shared.interval_bytes,
            Arc::clone(&self.shared.files),
            &self.shared.recent,
        )?;
        segments.push(Arc::new(fresh));
        self.publish(segments);
        // Everything before the new segment is synced: recovery may trust it.
        files::write_atomically(
            &self.dir.join(RECOVERY_POINT_FILE),
            next_offset.to_string().as_bytes(),
        )?;
        advance(&self.end_offset, next_offset);
        advance(&self.durable_offset, next_offset);
        self.shared
            .stats
            .segments_rolled
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(topic = %self.topic, partition = self.id, base_offset = next_offset, "rolled segment");
        Ok(())
    }

    /// Rolls the active segment if it is older than `segment_ms`, deletes
    /// whole segments past the time or size retention. Returns the number
    /// of segments deleted.
    pub fn enforce_retention(&self) -> Result<usize> {
        let config = *self.config.read().expect("config lock");
        let now_ms = self.shared.clock.now_ms();
        let guard = self.writer.lock().expect("writer lock");
        if guard.closed {
            return Ok(0);
        }
        let active = self.active();
        let cutoff_ms = config.retention_ms.map(|ms| now_ms.saturating_sub(ms));
        let too_old = active
            .first_append_ms()
            .is_some_and(|first| now_ms - first >= config.segment_ms);
        let expired = cutoff_ms.is_some_and(|cutoff| active.max_timestamp() < cutoff);
        if !active.is_empty() && (too_old || expired) {
            self.roll_locked(&guard)?;
        }
        let mut segments = (*self.snapshot()).clone();
        let mut deleted = Vec::new();
        if let Some(cutoff) = cutoff_ms {
            while segments.len() > 1 && segments[0].max_timestamp() < cutoff {
                deleted.push(segments.remove(0));
            }
        }
        if let Some(retention_bytes) = config.retention_bytes {
            let mut total: u64 = segments.iter().map(|s| s.size_bytes()).sum();
            while segments.len() > 1 && total - segments[0].size_bytes() >= retention_bytes {
                total -= segments[0].size_bytes();
                deleted.push(segments.remove(0));
            }
        }
        self.drop_segments(guard, segments, deleted, "retention")
    }

    /// Publishes `kept` as the segment list and deletes the files of
    /// `deleted` once the writer lock is released. Readers still holding a
    /// deleted segment finish their read.
    fn drop_segments(
        &self,
        guard: std::sync::MutexGuard<'_, WriterState>,
        kept: Vec<Arc<Segment>>,
        deleted: Vec<Arc<Segment>>,
        reason: &str,
    ) -> Result<usize> {
        if deleted.is_empty() {
            return Ok(0);
        }
        self.publish(kept);
        drop(guard);
        for segment in &deleted {
            tracing::info!(topic = %self.topic, partition = self.id, base_offset = segment.base_offset(), reason, "deleted segment");
            segment.delete()?;
        }
        self.shared
            .stats
            .segments_deleted
            .fetch_add(deleted.len() as u64, Ordering::Relaxed);
        Ok(deleted.len())
    }

    /// Deletes whole sealed segments holding only offsets below `offset`
    /// (Kafka's DeleteRecords at segment granularity). The log start offset
    /// moves to the first segment kept. Returns the number deleted.
    pub fn delete_before(&self, offset: i64) -> Result<usize> {
        let guard = self.writer.lock().expect("writer lock");
        if guard.closed {
            return Ok(0);
        }
        let mut segments = (*self.snapshot()).clone();
        let mut deleted = Vec::new();
        while segments.len() > 1 && segments[1].base_offset() <= offset {
            deleted.push(segments.remove(0));
        }
        self.drop_segments(guard, segments, deleted, "deleted before an offset")
    }

    /// Syncs and indexes the active segment so the next open trusts it,
    /// and refuses further appends.
    pub(crate) fn close(&self) -> Result<()> {
        let mut guard = self.writer.lock().expect("writer lock");
        if guard.closed {
            return Ok(());
        }
        guard.closed = true;
        let active = self.active();
        active.finish()?;
        active.write_index()?;
        let end = active.next_offset();
        advance(&self.end_offset, end);
        producers::write_snapshot(&self.dir, end, &guard.producers)?;
        files::write_atomically(
            &self.dir.join(RECOVERY_POINT_FILE),
            end.to_string().as_bytes(),
        )?;
        self.durable_offset.send_replace(end);
        Ok(())
    }
}

/// Rebuilds producer state: the newest snapshot, then the headers of
/// every batch appended after it.
fn recover_producers(
    dir: &Path,
    segments: &[Arc<Segment>],
    start: i64,
    end: i64,
) -> Result<ProducerStates> {
    let (from, mut states) = producers::load_snapshot(dir, start, end)?;
    let mut headers = Vec::new();
    for segment in segments.iter().filter(|s| s.next_offset() > from) {
        headers.clear();
        let read = segment.headers_from(from, &mut headers);
        for header in &headers {
            states.record(header);
        }
        match read {
            Ok(()) => {}
            // A segment trusted without a scan (it was synced before the
            // stop) can still be damaged on disk. Reads stop at the damage
            // with an error; the log still opens, and producers are known
            // from every batch that can be read.
            Err(error @ LogError::Corrupt { .. }) => {
                tracing::error!(dir = %dir.display(), %error, "damaged batch while rebuilding producer state");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(states)
}

/// Moves `offset` forward to `to`, waking its waiters, unless it is there.
fn advance(offset: &watch::Sender<i64>, to: i64) {
    offset.send_if_modified(|at| {
        let advanced = to > *at;
        *at = (*at).max(to);
        advanced
    });
}

fn read_recovery_point(dir: &Path) -> i64 {
    fs::read_to_string(dir.join(RECOVERY_POINT_FILE))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}
