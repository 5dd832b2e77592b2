//! Cross-request micro-batching for the per-face networks (embedder,
//! liveness).
//!
//! Every request runs those networks on its own faces, one face at a time.
//! When more analyses are in flight than a model has sessions, their runs
//! queue here; whichever caller finds a session free takes up to
//! [`Batching::max_batch`] queued inputs and runs them as one batch, then
//! hands each caller its own outputs. Inputs are taken round-robin over
//! *lanes* (the server gives each tenant its own), so a tenant with many
//! requests in flight cannot fill every batch while another waits.
//!
//! A free session waits up to [`Batching::window`] for more inputs only when
//! more analyses are in flight than the model has sessions (some of them
//! would queue anyway) and the model's previous run was a batch of several
//! (inputs do arrive close together). A lone request, as many requests as
//! sessions, or requests too far apart to share a batch never wait:
//! batching costs them nothing. On a CPU, where one single-threaded session
//! per core already keeps every core busy, that is the usual case and
//! batches rarely form; on a GPU few sessions serve many requests and
//! batches are what fills the device.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::runtime::Tensor;

/// How a model combines concurrent runs into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// The largest batch; 1 turns batching off.
    pub max_batch: usize,
    /// How long a free session may wait for more inputs when more analyses
    /// are in flight than there are sessions; zero runs what is queued.
    pub window: Duration,
}

impl Batching {
    /// Every run on its own.
    pub const OFF: Self = Self {
        max_batch: 1,
        window: Duration::ZERO,
    };

    /// The default: batches of up to 8, a 2 ms window.
    pub const DEFAULT: Self = Self {
        max_batch: 8,
        window: Duration::from_millis(2),
    };

    /// The default for a GPU: larger batches, the same window.
    pub const GPU: Self = Self {
        max_batch: 32,
        window: Duration::from_millis(2),
    };

    pub(crate) fn is_on(&self) -> bool {
        self.max_batch > 1
    }
}

impl Default for Batching {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What a model's batcher has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Runs of the network (batches, including batches of one).
    pub batches: u64,
    /// Inputs those runs carried.
    pub inputs: u64,
    /// The largest batch run.
    pub largest: usize,
}

thread_local! {
    /// The lane this thread's model runs queue in (see [`Lanes::serve`]).
    static LANE: Cell<u64> = const { Cell::new(0) };
}

/// Analyses in flight on one runtime, and the lane of each thread's runs.
#[derive(Debug, Default, Clone)]
pub(crate) struct Lanes {
    in_flight: Arc<AtomicUsize>,
}

impl Lanes {
    /// Runs `f` as one analysis in flight whose model runs queue in `lane`.
    pub(crate) fn serve<T>(&self, lane: u64, f: impl FnOnce() -> T) -> T {
        struct Leave<'a> {
            in_flight: &'a AtomicUsize,
            previous: u64,
        }
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                LANE.with(|l| l.set(self.previous));
            }
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _leave = Leave {
            in_flight: &self.in_flight,
            previous: LANE.with(|l| l.replace(lane)),
        };
        f()
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

/// One queued input.
struct Job {
    ticket: u64,
    lane: u64,
    input: Vec<f32>,
}

/// A job's outputs, or why its batch failed.
pub(crate) type Outcome = std::result::Result<Vec<Tensor>, String>;

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Job>,
    finished: HashMap<u64, Outcome>,
    next_ticket: u64,
    free_sessions: usize,
    /// Inputs in batches now running.
    running: usize,
    /// A caller holds a free session and is waiting for the window.
    collecting: bool,
    /// The lane served last, where the next batch's round-robin starts.
    last_lane: u64,
    /// Inputs in the batch taken last.
    last_batch: usize,
    stats: BatchStats,
}

impl Queue {
    /// Up to `max` waiting jobs, one per lane in turn, starting with the
    /// lane after the one served last; oldest first within a lane.
    fn take(&mut self, max: usize) -> Vec<Job> {
        let mut lanes: Vec<u64> = self.waiting.iter().map(|j| j.lane).collect();
        lanes.sort_unstable();
        lanes.dedup();
        let first_after = lanes.partition_point(|&l| l <= self.last_lane);
        lanes.rotate_left(first_after);
        let mut batch = Vec::with_capacity(max.min(self.waiting.len()));
        while batch.len() < max && !self.waiting.is_empty() {
            for &lane in &lanes {
                if batch.len() == max {
                    break;
                }
                if let Some(i) = self.waiting.iter().position(|j| j.lane == lane) {
                    if let Some(job) = self.waiting.remove(i) {
                        self.last_lane = lane;
                        batch.push(job);
                    }
                }
            }
        }
        batch
    }
}

/// The micro-batcher of one model.
pub(crate) struct Batcher {
    config: Batching,
    sessions: usize,
    lanes: Lanes,
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Batcher {
    /// A batcher over `sessions` sessions that can each run a batch.
    pub(crate) fn new(config: Batching, sessions: usize, lanes: Lanes) -> Self {
        Self {
            config,
            sessions: sessions.max(1),
            lanes,
            queue: Mutex::new(Queue {
                free_sessions: sessions.max(1),
                ..Queue::default()
            }),
            changed: Condvar::new(),
        }
    }

    pub(crate) fn stats(&self) -> BatchStats {
        self.lock().stats
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding the lock; a poisoned lock still
        // holds a consistent queue.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enough inputs are waiting: a full batch, or every analysis in
    /// flight that is not already running on this model has queued.
    fn enough(&self, q: &Queue) -> bool {
        q.waiting.len() >= self.config.max_batch
            || q.waiting.len() + q.running >= self.lanes.in_flight()
    }

    /// Runs `input` (one item) in some batch; `execute` runs a batch of
    /// `n` inputs laid end to end and returns outputs whose first
    /// dimension is `n`.
    pub(crate) fn run(&self, input: &[f32], execute: &dyn Fn(&[f32], usize) -> Outcome) -> Outcome {
        let mut q = self.lock();
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.waiting.push_back(Job {
            ticket,
            lane: LANE.with(Cell::get),
            input: input.to_vec(),
        });
        self.changed.notify_all();
        loop {
            if let Some(outcome) = q.finished.remove(&ticket) {
                return outcome;
            }
            let queued = q.waiting.iter().any(|j| j.ticket == ticket);
            if queued && q.free_sessions > 0 && !q.collecting {
                q = self.lead(q, ticket, execute);
                continue;
            }
            q = self.changed.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Holds a free session: waits for the window if that can fill the
    /// batch, runs one batch and files its outcomes.
    fn lead<'a>(
        &'a self,
        mut q: MutexGuard<'a, Queue>,
        leader: u64,
        execute: &dyn Fn(&[f32], usize) -> Outcome,
    ) -> MutexGuard<'a, Queue> {
        if !self.config.window.is_zero()
            && self.lanes.in_flight() > self.sessions
            && q.last_batch > 1
            && !self.enough(&q)
        {
            q.collecting = true;
            let deadline = Instant::now() + self.config.window;
            while !self.enough(&q) {
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    break;
                };
                q = self
                    .changed
                    .wait_timeout(q, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            q.collecting = false;
        }
        let batch = q.take(self.config.max_batch);
        q.last_batch = batch.len();
        q.free_sessions -= 1;
        q.running += batch.len();
        q.stats.batches += 1;
        q.stats.inputs += batch.len() as u64;
        q.stats.largest = q.stats.largest.max(batch.len());
        // Others may lead the rest of the queue on another session.
        self.changed.notify_all();
        drop(q);

        let mut lease = Lease {
            batcher: self,
            leader,
            tickets: batch.iter().map(|j| j.ticket).collect(),
            outcomes: Vec::new(),
        };
        let inputs: Vec<f32> = batch.iter().flat_map(|j| j.input.iter().copied()).collect();
        lease.outcomes = split(execute(&inputs, batch.len()), batch.len());
        drop(lease);
        self.lock()
    }
}

/// A session taken for one batch. Dropping it, even while unwinding from
/// a panic in the runtime, frees the session and files an outcome for every
/// job of the batch, so no caller waits forever. A leader that unwinds
/// takes its own job with it: nobody would collect its outcome.
struct Lease<'a> {
    batcher: &'a Batcher,
    /// The ticket of the caller running the batch.
    leader: u64,
    tickets: Vec<u64>,
    outcomes: Vec<Outcome>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut q = self.batcher.lock();
        q.free_sessions += 1;
        q.running -= self.tickets.len();
        let unwinding = std::thread::panicking();
        if unwinding {
            q.waiting.retain(|j| j.ticket != self.leader);
        }
        let mut outcomes = std::mem::take(&mut self.outcomes).into_iter();
        for &ticket in &self.tickets {
            let outcome = outcomes
                .next()
                .unwrap_or_else(|| Err("the batch stopped before it finished".into()));
            if !(unwinding && ticket == self.leader) {
                q.finished.insert(ticket, outcome);
            }
        }
        self.batcher.changed.notify_all();
    }
}

/// One outcome per input from a batch's outputs, each output split along
/// its first dimension.
pub(crate) fn split(outcome: Outcome, n: usize) -> Vec<Outcome> {
    let outputs = match outcome {
        Ok(outputs) => outputs,
        Err(e) => return vec![Err(e); n],
    };
    if n == 1 {
        return vec![Ok(outputs)];
    }
    let mut per_input: Vec<Vec<Tensor>> = vec![Vec::with_capacity(outputs.len()); n];
    for t in outputs {
        if t.shape.first() != Some(&n) || t.data.len() % n != 0 {
            let e = format!("a batch of {n} gave an output of shape {:?}", t.shape);
            return vec![Err(e); n];
        }
        let mut shape = t.shape.clone();
        shape[0] = 1;
        for (slot, chunk) in per_input.iter_mut().zip(t.data.chunks(t.data.len() / n)) {
            slot.push(Tensor {
                shape: shape.clone(),
                data: chunk.to_vec(),
            });
        }
    }
    per_input.into_iter().map(Ok).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    /// A test double for a network: output i is input i's sum, shape
    /// `[n, 1]`, after `ms` milliseconds; records each batch's size.
    fn summing_network(
        sizes: &Mutex<Vec<usize>>,
        ms: u64,
    ) -> impl Fn(&[f32], usize) -> Outcome + '_ {
        move |inputs, n| {
            sizes.lock().unwrap().push(n);
            std::thread::sleep(Duration::from_millis(ms));
            let each = inputs.len() / n;
            Ok(vec![Tensor {
                shape: vec![n, 1],
                data: inputs.chunks(each).map(|c| c.iter().sum()).collect(),
            }])
        }
    }

    /// A batcher over one session that may hold it up to 5 s for a batch
    /// of up to 8 (long enough that only the rules, never the clock, end a
    /// wait in these tests), and its lanes.
    fn one_session_with_a_long_window() -> (Batcher, Lanes) {
        let lanes = Lanes::default();
        let config = Batching {
            max_batch: 8,
            window: Duration::from_secs(5),
        };
        (Batcher::new(config, 1, lanes.clone()), lanes)
    }

    #[test]
    fn a_lone_run_is_a_batch_of_one_and_does_not_wait() {
        let sizes = Mutex::new(Vec::new());
        let (batcher, lanes) = one_session_with_a_long_window();
        let started = Instant::now();
        let out = lanes.serve(7, || batcher.run(&[1.0, 2.0], &summing_network(&sizes, 20)));
        assert_eq!(out.unwrap()[0].data, vec![3.0]);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(*sizes.lock().unwrap(), vec![1]);
    }

    /// Six analyses in flight on one session, twice: the first time the
    /// first caller runs what has queued (nothing says more will come) and
    /// the rest queue behind it; after that batch of several, the window
    /// holds the session until all six have queued.
    #[test]
    fn queued_runs_share_a_batch_and_each_gets_its_own_output() {
        let sizes = Mutex::new(Vec::new());
        let (batcher, lanes) = one_session_with_a_long_window();
        let callers = 6;
        let barrier = Barrier::new(callers);
        let round = || {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..callers)
                    .map(|i| {
                        let (batcher, lanes, barrier, sizes) = (&batcher, &lanes, &barrier, &sizes);
                        s.spawn(move || {
                            lanes.serve(i as u64 % 2, || {
                                barrier.wait();
                                let x = i as f32;
                                batcher.run(&[x, x], &summing_network(sizes, 200))
                            })
                        })
                    })
                    .collect();
                for (i, h) in handles.into_iter().enumerate() {
                    let out = h.join().unwrap().unwrap();
                    assert_eq!(out[0].shape, vec![1, 1]);
                    assert_eq!(out[0].data, vec![2.0 * i as f32]);
                }
            })
        };
        round();
        let first = std::mem::take(&mut *sizes.lock().unwrap());
        assert_eq!(first.iter().sum::<usize>(), callers);
        // Whatever had queued, then everyone else (queued during 200 ms).
        assert!(first.len() <= 2, "{first:?}");
        round();
        assert_eq!(*sizes.lock().unwrap(), vec![callers]);
        assert_eq!(batcher.stats().inputs, 2 * callers as u64);
    }

    #[test]
    fn batches_take_lanes_in_turn() {
        let mut q = Queue::default();
        for (ticket, lane) in [(0, 1), (1, 1), (2, 1), (3, 1), (4, 2), (5, 3)] {
            q.waiting.push_back(Job {
                ticket,
                lane,
                input: vec![],
            });
        }
        let tickets = |b: Vec<Job>| b.iter().map(|j| j.ticket).collect::<Vec<_>>();
        // Lane 1's four cannot crowd out lanes 2 and 3.
        assert_eq!(tickets(q.take(3)), vec![0, 4, 5]);
        // The next batch starts after lane 3, i.e. with lane 1 again.
        assert_eq!(tickets(q.take(2)), vec![1, 2]);
        assert_eq!(tickets(q.take(5)), vec![3]);
    }

    #[test]
    fn a_failed_or_misshapen_batch_fails_every_caller_in_it() {
        let failed = split(Err("boom".into()), 3);
        assert!(failed.iter().all(|o| o.as_ref().unwrap_err() == "boom"));
        let wrong = Ok(vec![Tensor {
            shape: vec![1, 6],
            data: vec![0.0; 6],
        }]);
        let misshapen = split(wrong, 3);
        assert_eq!(misshapen.len(), 3);
        assert!(misshapen.iter().all(|o| o.is_err()));
    }

    #[test]
    fn a_panicking_network_fails_its_batch_and_frees_the_session() {
        let lanes = Lanes::default();
        let batcher = Batcher::new(Batching::DEFAULT, 1, lanes);
        let panicking = |_: &[f32], _: usize| -> Outcome { panic!("network bug") };
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            batcher.run(&[1.0], &panicking)
        }));
        assert!(caught.is_err());
        // The unwound leader's outcome is not kept for nobody.
        assert!(batcher.lock().finished.is_empty());
        assert!(batcher.lock().waiting.is_empty());
        let sizes = Mutex::new(Vec::new());
        let out = batcher.run(&[4.0], &summing_network(&sizes, 20));
        assert_eq!(out.unwrap()[0].data, vec![4.0]);
    }
}
