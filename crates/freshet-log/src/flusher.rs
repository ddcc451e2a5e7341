//! Group commit: one thread fsyncs dirty partitions, each at most once per
//! its flush interval, and releases every append the fsync covered.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::partition::Partition;

#[derive(Debug, Default)]
struct Queue {
    pending: Vec<(Instant, Arc<Partition>)>,
    stopping: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Flusher {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Flusher {
    pub fn start() -> (Arc<Self>, JoinHandle<()>) {
        let flusher = Arc::new(Self::default());
        let worker = Arc::clone(&flusher);
        let thread = std::thread::Builder::new()
            .name("freshet-log-flusher".into())
            .spawn(move || worker.run())
            .expect("spawn the log flusher thread");
        (flusher, thread)
    }

    /// Asks for `partition` to be fsynced no earlier than `due`. Each
    /// partition is queued at most once at a time (it tracks that itself).
    pub fn schedule(&self, partition: Arc<Partition>, due: Instant) {
        let mut queue = self.queue.lock().expect("flush queue lock");
        queue.pending.push((due, partition));
        self.wake.notify_one();
    }

    /// Flushes everything still queued, then ends the thread.
    pub fn stop(&self) {
        self.queue.lock().expect("flush queue lock").stopping = true;
        self.wake.notify_one();
    }

    fn run(&self) {
        let mut queue = self.queue.lock().expect("flush queue lock");
        loop {
            if queue.pending.is_empty() {
                if queue.stopping {
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
                if let Err(error) = partition.flush() {
                    // acks=all appends stay waiting; the next append retries.
                    tracing::error!(topic = partition.topic(), partition = partition.id(), %error, "fsync failed");
                }
            }
            queue = self.queue.lock().expect("flush queue lock");
        }
    }
}
