//! Group commit: one thread fsyncs dirty partitions, each at most once per
//! its flush interval, and releases every append the fsync covered. With
//! direct writes, a second thread of the same kind writes appended bytes
//! from memory to the files, as soon as they are appended.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::partition::Partition;

/// How long after a failed fsync or write it is tried again.
const RETRY_AFTER: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct Queue {
    pending: Vec<(Instant, Arc<Partition>)>,
    stopping: bool,
    /// The thread has ended.
    done: bool,
}

/// What the thread does to a partition that is due.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Job {
    /// Fsync it ([`Partition::flush`]).
    Flush,
    /// Write its appended bytes to the file ([`Partition::write`]).
    Write,
}

#[derive(Debug)]
pub(crate) struct Flusher {
    job: Job,
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Flusher {
    pub fn start(job: Job) -> (Arc<Self>, JoinHandle<()>) {
        let flusher = Arc::new(Self {
            job,
            queue: Mutex::default(),
            wake: Condvar::new(),
        });
        let worker = Arc::clone(&flusher);
        let name = match job {
            Job::Flush => "freshet-log-flusher",
            Job::Write => "freshet-log-writer",
        };
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || worker.run())
            .expect("spawn a log thread");
        (flusher, thread)
    }

    /// Asks for `partition` to be fsynced (or written) no earlier than
    /// `due`. Each partition is queued at most once at a time (it tracks
    /// that itself).
    /// Returns `false`, queueing nothing, once the thread has ended.
    pub fn schedule(&self, partition: Arc<Partition>, due: Instant) -> bool {
        let mut queue = self.queue.lock().expect("flush queue lock");
        if queue.done {
            return false;
        }
        queue.pending.push((due, partition));
        self.wake.notify_one();
        true
    }

    /// Flushes everything still queued, then ends the thread.
    pub fn stop(&self) {
        self.queue.lock().expect("flush queue lock").stopping = true;
        self.wake.notify_one();
    }

    fn run(&self) {
        let mut retry = Vec::new();
        let mut queue = self.queue.lock().expect("flush queue lock");
        loop {
            if queue.pending.is_empty() {
                if queue.stopping {
                    queue.done = true;
                    return;
                }
                queue = self.wake.wait(queue).expect("flush queue lock");
                continue;
            }
            let now = Instant::now();
            let earliest = queue
                .pending
                .iter()
                .map(|(due, _)| *due)
                .min()
                .expect("non-empty");
            if earliest > now && !queue.stopping {
                queue = self
                    .wake
                    .wait_timeout(queue, earliest - now)
                    .expect("flush queue lock")
                    .0;
                continue;
            }
            let stopping = queue.stopping;
            let (due, later): (Vec<_>, Vec<_>) = queue
                .pending
                .drain(..)
                .partition(|(due, _)| stopping || *due <= now);
            queue.pending = later;
            drop(queue);
            for (_, partition) in due {
                let (done, what) = match self.job {
                    Job::Flush => (partition.flush(), "fsync failed"),
                    Job::Write => (partition.write(), "write to the segment file failed"),
                };
                if let Err(error) = done {
                    // Appends waiting for it stay waiting, and it is tried
                    // again: after a while, or at the next append.
                    tracing::error!(topic = partition.topic(), partition = partition.id(), %error, "{what}");
                    // Unless an append has queued it again meanwhile.
                    if partition.claim(self.job) {
                        retry.push((Instant::now() + RETRY_AFTER, partition));
                    }
                }
            }
            queue = self.queue.lock().expect("flush queue lock");
            if !queue.stopping {
                queue.pending.append(&mut retry);
            }
            retry.clear();
        }
    }
}
