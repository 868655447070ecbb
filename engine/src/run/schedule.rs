//! How a run's files are spread over the workers, within one memory budget.
//!
//! [`MemoryPlan`] turns the budget (`--memory`) into the numbers every
//! buffer is sized from: files in flight, the pipeline window, upload
//! buffers per file. Most files go one per worker through
//! [`crate::pipeline::seal`], at most `files_in_flight` at once; local CBC
//! files that share a data key (supplied, or cached with `--reuse-key`) go
//! in groups through the multi-buffer path ([`crate::pipeline::lanes`]), a
//! group of files under one key at a time.

use std::sync::{Arc, Condvar, Mutex};

use super::keys::{Keys, Material};
use super::plan::Entry;
use crate::error::{Error, Result};
use crate::format::{Iv, BLOCK};
use crate::keys::DataKey;
use crate::pipeline::Tuning;
use crate::pipeline::lanes::{self, LaneFiles};
use crate::pipeline::Sealed;
use crate::events::Events;
use crate::store::{Committed, PendingOutput, Source};

/// What a run does with each file of a group (the encryption run implements it).
pub(crate) trait Files: Sync {
    /// Open `file`'s plaintext and its pending output, and draw its IV under `material`'s key.
    fn open(&self, file: &Entry, material: &Material) -> Result<(Box<dyn Source>, Box<dyn PendingOutput>, Iv)>;
    /// Record the outcome of `file`.
    fn done(&self, file: &Entry, material: &Material, result: Result<(Sealed, Committed, Iv)>);
    /// `file` failed before it was opened (no key for it).
    fn failed(&self, file: &Entry, error: Error);
    /// Where the bytes processed are told.
    fn events(&self) -> &dyn Events;
    /// The pipeline window: the buffer memory one worker may hold.
    fn window(&self) -> usize;
    /// The plaintext digest to record.
    fn digest(&self) -> crate::format::digest::DigestAlg;
}

/// Files in flight of a run that reads or writes S3, by default: at 30 ms a
/// request and about five requests a small object, 64 keep about 400
/// objects a second in flight (s5cmd runs 256 workers, the AWS CLI 10
/// requests). `--memory` still bounds them ([`Budget`]).
pub const DEFAULT_REMOTE_IN_FLIGHT: usize = 64;

/// How a memory budget is split. Every buffer a run holds is sized from it:
///
/// * a file in the pipeline holds `window × (depth + 3)`: the windows queued
///   for the writer and two spare (`depth + 2`), and the window being read
///   (a memory map or a read buffer);
/// * an upload to S3 holds `part_size × upload_concurrency` per file;
/// * the multi-buffer CBC path holds at most one window per worker thread.
///
/// So a run holds at most [`MemoryPlan::bound`] bytes of buffers, whatever
/// the number or size of its files. Not counted: the ledger's map of finished
/// files (about 60 bytes per file) and the program itself.
#[derive(Clone, Copy, Debug)]
pub struct MemoryPlan {
    /// Files encrypted at once.
    pub files_in_flight: usize,
    /// Pipeline sizes.
    pub tuning: Tuning,
    /// Part buffers per upload (S3 destinations).
    pub upload_concurrency: usize,
    /// Part size of uploads (S3 destinations), 0 for local ones.
    pub part_size: u64,
}

/// Windows a file in the pipeline holds besides the queued ones (two spare, one being read).
const SLOTS_BESIDE_QUEUE: usize = 3;

impl MemoryPlan {
    /// The default budget: 1 GiB, or a quarter of the machine's memory if that is less (at least 64 MiB).
    pub fn default_budget() -> u64 {
        let total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
            .map(|kib| kib * 1024);
        total.map_or(1 << 30, |t| (t / 4).min(1 << 30)).max(64 << 20)
    }

    /// Split `budget` bytes over `threads` workers encrypting with `chunk`-sized
    /// pieces; `upload` is `(part_size, requested concurrency)` for S3 destinations.
    pub fn new(budget: u64, threads: usize, chunk: usize, upload: Option<(u64, usize)>) -> Result<Self> {
        let threads = threads.max(1);
        let default = Tuning::for_threads(threads, chunk);
        let depth = default.depth;
        let slots = (depth + SLOTS_BESIDE_QUEUE) as u64;
        // Uploads hold their part buffers already: smaller windows (one chunk per thread, at least 4 MiB).
        let preferred = match upload {
            Some(_) => (chunk * threads).max(4 << 20).min(default.window),
            None => default.window,
        } as u64;
        let min_window = (chunk as u64).max(1 << 20).min(preferred);
        let (part, wanted) = upload.unwrap_or((0, 0));
        let min_upload = part * wanted.min(1) as u64;
        let per_file_min = slots * min_window + min_upload;
        if budget < per_file_min {
            return Err(Error::Usage(format!(
                "--memory {} is too small: one file needs at least {} (window {} x {slots}{})",
                crate::size::human(budget),
                crate::size::human(per_file_min),
                crate::size::human(min_window),
                if part > 0 { format!(" + one {} part", crate::size::human(part)) } else { String::new() }
            )));
        }
        let files = (budget / per_file_min).min(threads as u64).max(1) as usize;
        let share = budget / files as u64;
        let upload_concurrency = match upload {
            Some(_) => ((share - slots * min_window) / part).min(wanted as u64).max(1) as usize,
            None => 0,
        };
        let left = share - part * upload_concurrency as u64;
        let mut window = (left / slots).min(preferred).max(min_window) as usize;
        let unit = chunk.max(BLOCK);
        if window >= unit {
            window -= window % unit;
        }
        window -= window % BLOCK;
        Ok(MemoryPlan { files_in_flight: files, tuning: Tuning { chunk, window, depth }, upload_concurrency, part_size: part })
    }

    /// The most bytes of buffers a run under this plan holds.
    pub fn bound(&self) -> u64 {
        self.files_in_flight as u64 * self.share()
    }

    /// The buffers one file of any size may hold: its windows and its part buffers.
    pub fn share(&self) -> u64 {
        (self.tuning.depth + SLOTS_BESIDE_QUEUE) as u64 * self.tuning.window as u64 + self.part_size * self.upload_concurrency as u64
    }

    /// What a file of `size` bytes holds while in flight, charged against
    /// the run's [`Budget`]: a file of one window goes through the pipeline
    /// in one piece, so it holds about three copies of itself (read, sealed,
    /// the upload's body) and [`SMALL_FILE_OVERHEAD`]; a larger one a whole [`MemoryPlan::share`].
    /// So a run of small objects has many in flight (the network's
    /// latency, not the cores, sets how many it needs), a run of large
    /// files as many as the plan's `files_in_flight`, within one budget.
    pub fn charge(&self, size: u64) -> u64 {
        match size <= self.tuning.window as u64 {
            true => (3 * size + SMALL_FILE_OVERHEAD).min(self.share()),
            false => self.share(),
        }
    }
}

/// Besides its bytes, what a small file in flight holds (requests, records, its thread).
pub const SMALL_FILE_OVERHEAD: u64 = 64 << 10;

/// The bytes of buffers all files in flight may hold together. Files are
/// admitted in the order they ask: one that does not fit waits, and the
/// ones after it wait behind it (a large file is never starved by a stream of small ones).
pub struct Budget {
    state: Mutex<Tickets>,
    freed: Condvar,
}

struct Tickets {
    free: u64,
    next: u64,
    serving: u64,
}

/// A file's share of a [`Budget`], given back when dropped.
pub struct Charge<'b> {
    budget: &'b Budget,
    bytes: u64,
}

impl Budget {
    /// A budget of `total` bytes.
    pub fn new(total: u64) -> Self {
        Budget { state: Mutex::new(Tickets { free: total, next: 0, serving: 0 }), freed: Condvar::new() }
    }

    /// Wait for `bytes` (at most the whole budget) and take them.
    pub fn take(&self, bytes: u64) -> Charge<'_> {
        let mut t = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = t.next;
        t.next += 1;
        while t.serving != ticket || t.free < bytes {
            t = self.freed.wait(t).unwrap_or_else(|p| p.into_inner());
        }
        t.free -= bytes;
        t.serving += 1;
        drop(t);
        // The next in line may fit too.
        self.freed.notify_all();
        Charge { budget: self, bytes }
    }
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        self.budget.state.lock().unwrap_or_else(|p| p.into_inner()).free += self.bytes;
        self.budget.freed.notify_all();
    }
}

/// Files handed to the multi-buffer path in one go.
const GROUP: usize = 256;

/// Encrypt `admitted` (local CBC files) in groups of files under one key.
pub(crate) fn cbc_groups(admitted: impl Iterator<Item = Entry>, keys: &Keys<'_>, run: &dyn Files) {
    let mut group: Vec<Entry> = Vec::with_capacity(GROUP);
    let mut current: Option<Arc<Material>> = None;
    for f in admitted {
        let material = match keys.for_file(f.size) {
            Ok(m) => m,
            Err(e) => {
                run.failed(&f, e);
                continue;
            }
        };
        if let Some(c) = current.as_ref().filter(|c| !Arc::ptr_eq(c, &material) || group.len() == GROUP) {
            seal_group(&group, c, run);
            group.clear();
        }
        current = Some(material);
        group.push(f);
    }
    if let Some(c) = current.as_ref().filter(|_| !group.is_empty()) {
        seal_group(&group, c, run);
    }
}

fn seal_group(group: &[Entry], material: &Material, run: &dyn Files) {
    let files = Group { queue: Mutex::new(group.iter()), material, run };
    lanes::seal_cbc(&files, run.window(), run.digest());
}

/// One group of files as the multi-buffer path sees them.
struct Group<'g> {
    queue: Mutex<std::slice::Iter<'g, Entry>>,
    material: &'g Material,
    run: &'g dyn Files,
}

impl LaneFiles for Group<'_> {
    type File = Entry;

    fn next(&self) -> Option<&Entry> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).next()
    }

    fn open(&self, file: &Entry) -> Result<(Box<dyn Source>, Box<dyn PendingOutput>, Iv)> {
        self.run.open(file, self.material)
    }

    fn key(&self) -> &DataKey {
        self.material.key()
    }

    fn done(&self, file: &Entry, result: Result<(Sealed, Committed, Iv)>) {
        self.run.done(file, self.material, result)
    }

    fn events(&self) -> &dyn Events {
        self.run.events()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_stays_within_its_budget() {
        for budget in [64u64 << 20, 256 << 20, 1 << 30, 4 << 30] {
            for threads in [1, 2, 16, 64] {
                for upload in [None, Some((16u64 << 20, 8usize)), Some((64 << 20, 16))] {
                    let Ok(plan) = MemoryPlan::new(budget, threads, 1 << 20, upload) else { continue };
                    assert!(plan.bound() <= budget, "{budget} {threads} {upload:?}: {plan:?} holds {}", plan.bound());
                    assert!(plan.files_in_flight >= 1 && plan.files_in_flight <= threads);
                    // A file's charge never exceeds its share, so one file always fits.
                    for size in [0u64, 1, 100 << 10, plan.tuning.window as u64, 1 << 40] {
                        assert!(plan.charge(size) <= plan.share() && plan.share() <= plan.bound(), "{size}: {plan:?}");
                    }
                    assert!(plan.tuning.window >= 1 << 20 && plan.tuning.window % 16 == 0, "{plan:?}");
                    if upload.is_some() {
                        assert!(plan.upload_concurrency >= 1);
                    }
                }
            }
        }
    }

    #[test]
    fn defaults_on_a_small_machine_are_unchanged_and_a_tiny_budget_is_refused() {
        // 2 threads, 1 GiB: today's sizes (8 MiB windows, 2 files, 8 parts of 16 MiB).
        let local = MemoryPlan::new(1 << 30, 2, 1 << 20, None).unwrap();
        assert_eq!((local.files_in_flight, local.tuning.window), (2, 8 << 20));
        let s3 = MemoryPlan::new(1 << 30, 2, 1 << 20, Some((16 << 20, 8))).unwrap();
        assert_eq!((s3.files_in_flight, s3.tuning.window, s3.upload_concurrency), (2, 4 << 20, 8));
        // 16 threads in 256 MiB: fewer parts in flight, smaller windows, never over.
        let tight = MemoryPlan::new(256 << 20, 16, 1 << 20, Some((16 << 20, 8))).unwrap();
        assert!(tight.bound() <= 256 << 20, "{tight:?}");
        let err = MemoryPlan::new(4 << 20, 2, 1 << 20, None).unwrap_err().to_string();
        assert!(err.starts_with("--memory 4.0 MiB is too small"), "{err}");
    }

    #[test]
    fn the_budget_admits_in_order_and_never_overcommits() {
        let budget = Budget::new(100);
        let a = budget.take(60);
        let b = budget.take(40);
        let asked = |n: u64| {
            // Until the n-th ticket is drawn (a thread is waiting for it).
            while budget.state.lock().unwrap().next < n {
                std::thread::yield_now();
            }
        };
        std::thread::scope(|scope| {
            let budget = &budget;
            // A large file waits for room; a small one asking after it waits behind it.
            let big = scope.spawn(move || budget.take(90));
            asked(3);
            let small = scope.spawn(move || drop(budget.take(10)));
            asked(4);
            drop(b);
            // 40 bytes free: the small one would fit, yet neither is admitted (neither can be, until `a` goes).
            let t = budget.state.lock().unwrap();
            assert_eq!((t.free, t.serving), (40, 2));
            drop(t);
            drop(a);
            let c = big.join().unwrap();
            assert_eq!(c.bytes, 90);
            small.join().unwrap();
            assert_eq!(budget.state.lock().unwrap().free, 10);
        });
        assert_eq!(budget.state.lock().unwrap().free, 100);
    }
}
