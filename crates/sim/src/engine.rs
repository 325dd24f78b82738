//! The event-driven core: one farm, one workload, logical time.
//!
//! The [`Engine`] owns the event heap, the FIFO work queue, the replicas and
//! the per-interval accumulators. It never calls a policy: it runs until the
//! next *pause* (a control tick, an Alertmanager notification, or the end of
//! the run) and hands control back to a driver ([`crate::simulate`],
//! [`crate::Env`]), which decides and calls [`Engine::set_desired`]. This
//! keeps the whole-run API and the step API on exactly the same code.
//!
//! # Model
//!
//! - **Arrivals** enter a FIFO queue at their `arrival_s` (the workload is
//!   pre-sorted, so arrivals are merged with the heap instead of being pushed).
//! - **Replicas** go `Starting -> Ready (idle/busy) -> [Draining] -> Leaving ->
//!   Gone`. A scale-up request creates a replica that becomes ready after a
//!   start-up delay drawn from `platform.startup_delay` (or, after
//!   [`Engine::replay_startup`], the next delay of a recorded sequence). A scale-down removes
//!   starting replicas first (newest first, gone at once), then idle replicas
//!   (they leave after a scale-down delay), then busy ones (newest first):
//!   those stop pulling, finish their current task, then leave after the
//!   scale-down delay.
//! - **Scale API latency**: a desired count decided at `t` reaches the
//!   platform at `t + scale_api_latency_s`.
//! - **Per-function cap**: the platform accepts at most
//!   `per_function_cap * shards` replicas (see [`SimOptions::shards`]); the
//!   desired count is clamped to `[min_replicas, min(max_replicas, cap *
//!   shards)]`. With one shard this is exactly OpenFaaS CE's clamp.
//! - **Failures**: a ready replica fails after an exponential time with rate
//!   `failure_rate_per_hour / 3600`; its task (if any) is redelivered at the
//!   head of the queue and the replica restarts (a new start-up delay). A
//!   draining replica that fails is simply gone.
//! - **Replica-seconds** integrate every replica that exists (starting,
//!   ready, draining, leaving) from the moment the platform creates it until
//!   it is gone.
//!
//! # Determinism
//!
//! Events are ordered by `(time, class, sequence number)`: at equal times
//! replica/service events (class 0) run before arrivals (1), control ticks
//! (2) and alert evaluations / the horizon check (3); within a class, by
//! insertion order. Platform randomness comes from two PCG streams derived
//! from the seed (delays; failures), separate from the workload's stream, so
//! the same seed and scenario give bit-identical runs.

use std::collections::VecDeque;

use farm_model::cadence::{Armed, BacklogJump};
use farm_model::scenario::{DelaySequence, Dist, Platform, TaskSpec};
use farm_model::signals::Signals;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::metrics::{RunMetrics, TimelinePoint, nearest_rank, nearest_ranks};

/// Options of a simulation run that are not part of the scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Shard functions the desired parallelism is spread over, each capped at
    /// `platform.per_function_cap` (DESIGN.md "Act"). 0 (the default) =
    /// automatic: as many as `max_replicas` needs under the cap, as
    /// gateway-ext spreads a farm ([`shards_for`]); 1 = no sharding.
    pub shards: u32,
    /// Length of the sliding window the signals of a decision cover,
    /// seconds; `None` (or anything up to the control interval) = the
    /// interval since the previous decision (tumbling windows). Longer
    /// windows let a policy decide every second or two on statistics of
    /// several seconds (the same rule gateway-ext applies live).
    pub window_s: Option<f64>,
    /// After the last arrival window ends, keep the control loop running at
    /// most this long for the queue to drain; what is left then is counted
    /// unfinished.
    pub max_drain_s: f64,
    /// Emulate Prometheus + Alertmanager (OpenFaaS CE alert rule) and deliver
    /// notifications to [`farm_policy::Policy::on_alert`].
    pub alerts: bool,
    /// Keep the per-interval timeline in the metrics.
    pub timeline: bool,
    /// Decide early, between ticks, when the backlog jumps (gateway-ext's
    /// `CONTROL_EVENTS`); `None` = only at ticks. The regular ticks restart
    /// from an early decision.
    pub events: Option<BacklogJump>,
    /// Drop a task whose deadline has already passed when a replica would
    /// start it (the runtime's `FARM_SHED_EXPIRED`): it is a QoS miss
    /// either way, and the replica takes the next one instead.
    pub shed_expired: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            shards: 0,
            window_s: None,
            max_drain_s: 600.0,
            alerts: true,
            timeline: true,
            events: None,
            shed_expired: false,
        }
    }
}

/// Shard functions a farm on `platform` is spread over: `requested`, or
/// for 0 (automatic) the fewest that hold `max_replicas` under the
/// per-function cap (1 without a cap).
pub fn shards_for(platform: &Platform, requested: u32) -> u32 {
    if requested > 0 {
        return requested;
    }
    match platform.per_function_cap {
        Some(cap) if cap > 0 => platform.max_replicas.div_ceil(cap).max(1),
        _ => 1,
    }
}

/// Counts and samples of one closed decision interval, kept while it is
/// inside the sliding window ([`SimOptions::window_s`]).
#[derive(Debug, Clone, Default)]
struct Bucket {
    start: f64,
    arrivals: u32,
    completions: u32,
    on_time: u32,
    redeliveries: u32,
    deadline_min: f64,
    deadline_sum: f64,
    service: Vec<f64>,
    latency: Vec<f64>,
}

/// The OpenFaaS CE alert: `rate(invocations[10s]) > 5` for 5 s, evaluated
/// every 5 s; Alertmanager repeats a firing notification every 30 s.
///
/// The invocation counter is the number of tasks submitted to the farm
/// (arrivals): that is the load the rule is meant to react to. (Counting
/// completions instead would make a one-replica farm with 1.5 s tasks
/// never fire, which is not what CE users observe with direct invocations.)
pub mod alert_rule {
    /// Seconds between two rule evaluations (Prometheus `evaluation_interval`).
    pub const EVAL_INTERVAL_S: f64 = 5.0;
    /// Rate window of the rule, seconds (`[10s]`). Must be a multiple of the
    /// evaluation interval (the rate is computed from counter samples).
    pub const RATE_WINDOW_S: f64 = 10.0;
    /// Threshold on invocations per second.
    pub const THRESHOLD_PER_S: f64 = 5.0;
    /// `for:` duration before a pending alert fires, seconds.
    pub const FOR_S: f64 = 5.0;
    /// Alertmanager `repeat_interval` while firing, seconds.
    pub const REPEAT_S: f64 = 30.0;
}

/// Why the engine handed control back.
#[derive(Debug, Clone, PartialEq)]
pub enum Pause {
    /// A control tick: the signals of the interval that just ended.
    Tick(Signals),
    /// Alertmanager posted a notification (`firing` or resolved) with the
    /// signals since the last tick.
    Alert {
        /// `true` for firing, `false` for resolved.
        firing: bool,
        /// Signals of the partial interval since the last tick.
        signals: Signals,
    },
    /// The run is over (all tasks done after the arrival window, or the drain
    /// bound was reached).
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Starting,
    Idle,
    Busy {
        task: u32,
    },
    /// Busy with `task`, removed from the pool: leaves after it.
    Draining {
        task: u32,
    },
    Leaving,
    Gone,
}

#[derive(Debug, Clone, Copy)]
struct Replica {
    state: State,
    /// Bumped whenever pending events for this replica become stale.
    generation: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ready { replica: u32, generation: u32 },
    Done { replica: u32, generation: u32 },
    Gone { replica: u32, generation: u32 },
    Fail { replica: u32, generation: u32 },
    Apply { desired: u32 },
}

/// Heap entry: the earliest `(t_bits, seq)` pops first.
///
/// Packed into integers (a [`Kind`] in `key`'s lowest bits and one word):
/// every field is then written and read as a whole machine word, so an
/// entry popped right after it was pushed is forwarded from the store
/// buffer instead of stalling on a wide load over narrow stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Event {
    /// `(f64::to_bits(t) << 64) | (seq << 3) | tag` for a non-negative
    /// time `t`: the bits of a non-negative float are monotone in its
    /// value, so one integer comparison orders by time, then by insertion
    /// (`seq` is unique, so the tag never decides).
    key: u128,
    /// The kind's fields: `replica | generation << 32`, or `desired`.
    data: u64,
}

impl Event {
    fn new(t: f64, seq: u64, kind: Kind) -> Event {
        let (tag, data) = match kind {
            Kind::Ready {
                replica,
                generation,
            } => (0, pair(replica, generation)),
            Kind::Done {
                replica,
                generation,
            } => (1, pair(replica, generation)),
            Kind::Gone {
                replica,
                generation,
            } => (2, pair(replica, generation)),
            Kind::Fail {
                replica,
                generation,
            } => (3, pair(replica, generation)),
            Kind::Apply { desired } => (4, u64::from(desired)),
        };
        // `seq` counts the events of one run: far below 2^61.
        debug_assert!(seq < 1 << 61, "event sequence number overflow");
        let low = (seq << 3) | tag;
        Event {
            key: (u128::from(t.max(0.0).to_bits()) << 64) | u128::from(low),
            data,
        }
    }

    fn t_bits(&self) -> u64 {
        (self.key >> 64) as u64
    }

    fn kind(&self) -> Kind {
        Kind::unpack(self.key as u64 & 7, self.data)
    }
}

impl Kind {
    /// The kind [`Event::new`] packed as `tag` and `data`.
    fn unpack(tag: u64, data: u64) -> Kind {
        let replica = data as u32;
        let generation = (data >> 32) as u32;
        match tag {
            0 => Kind::Ready {
                replica,
                generation,
            },
            1 => Kind::Done {
                replica,
                generation,
            },
            2 => Kind::Gone {
                replica,
                generation,
            },
            3 => Kind::Fail {
                replica,
                generation,
            },
            _ => Kind::Apply {
                desired: data as u32,
            },
        }
    }
}

fn pair(replica: u32, generation: u32) -> u64 {
    u64::from(replica) | (u64::from(generation) << 32)
}

/// A binary min-heap of [`Event`]s by `key`.
///
/// Keys are unique, so any correct priority queue pops the same sequence;
/// this one exists for speed: `std::collections::BinaryHeap::push` writes
/// the new entry field by field and reads it back as a whole to sift it,
/// a store-forwarding stall that cost about 7 % of an environment step's
/// CPU (measured with `perf annotate`). Here the entry being sifted stays in
/// registers and each slot is written once.
#[derive(Debug, Clone, Default)]
struct EventHeap {
    v: Vec<Event>,
}

impl EventHeap {
    fn with_capacity(n: usize) -> EventHeap {
        EventHeap {
            v: Vec::with_capacity(n),
        }
    }

    /// Time bits of the earliest event.
    fn peek_t_bits(&self) -> Option<u64> {
        self.v.first().map(Event::t_bits)
    }

    #[inline(always)]
    fn push(&mut self, ev: Event) {
        let mut i = self.v.len();
        self.v.push(ev);
        while i > 0 {
            let parent = (i - 1) / 2;
            let p = self.v[parent];
            if ev.key >= p.key {
                break;
            }
            self.v[i] = p;
            i = parent;
        }
        self.v[i] = ev;
    }

    fn pop(&mut self) -> Option<Event> {
        let last = self.v.pop()?;
        let Some(&top) = self.v.first() else {
            return Some(last);
        };
        // Sift `last` down from the root into the hole the top left.
        let n = self.v.len();
        let mut i = 0;
        loop {
            let left = 2 * i + 1;
            if left >= n {
                break;
            }
            let right = left + 1;
            let child = if right < n && self.v[right].key < self.v[left].key {
                right
            } else {
                left
            };
            let c = self.v[child];
            if c.key >= last.key {
                break;
            }
            self.v[i] = c;
            i = child;
        }
        self.v[i] = last;
        Some(top)
    }
}

const NOT_DONE: f64 = f64::NEG_INFINITY;
/// Stream ids of the platform RNGs (xor-ed into the seed).
const DELAY_STREAM: u64 = 0x5eed_de1a_0000_0001;
const FAIL_STREAM: u64 = 0x5eed_fa11_0000_0002;

/// A simulated farm running one workload.
#[derive(Debug, Clone)]
pub struct Engine {
    tasks: Vec<TaskSpec>,
    duration_s: f64,
    interval_s: f64,
    /// Sliding window of the signals (>= `interval_s`).
    window_s: f64,
    min_replicas: u32,
    max_replicas: u32,
    startup: Dist,
    scale_down: Dist,
    api_latency_s: f64,
    fail_rate_per_s: f64,
    opts: SimOptions,
    rng_delay: Pcg64Mcg,
    rng_fail: Pcg64Mcg,
    /// Start-up delays to replay instead of drawing from `startup`.
    replay: Option<DelaySequence>,

    now: f64,
    seq: u64,
    heap: EventHeap,
    next_arrival: usize,
    next_tick: f64,
    /// Ticks fall at `tick_base + tick_index * interval_s`; an early
    /// decision moves the base to its time.
    tick_base: f64,
    tick_index: u64,
    /// The backlog-jump trigger armed by the last decision.
    armed: Option<Armed>,
    early_decisions: u32,
    next_alert_eval: f64,
    end_s: f64,
    end_checked: bool,
    finished: bool,

    queue: VecDeque<u32>,
    replicas: Vec<Replica>,
    idle: Vec<u32>,
    n_starting: u32,
    n_ready: u32,
    n_busy: u32,
    n_alive: u32,
    desired: u32,
    last_scale_s: f64,
    last_direction: i8,

    // per-task outcome
    completion_s: Vec<f64>,
    completed: u64,
    on_time: u64,
    last_completion_s: f64,
    redeliveries: u64,
    failures: u64,

    // window accumulators (since the last tick)
    w_start: f64,
    w_arrivals: u32,
    w_completions: u32,
    w_on_time: u32,
    w_redeliveries: u32,
    w_deadline_min: f64,
    w_deadline_sum: f64,
    w_service: Vec<f64>,
    w_latency: Vec<f64>,
    scratch: Vec<f64>,
    /// Closed intervals still inside the sliding window, oldest first (empty
    /// with tumbling windows), and emptied buckets kept for reuse.
    past: VecDeque<Bucket>,
    spare: Vec<Bucket>,

    // alert emulation
    alert_counts: [u64; 3],
    alert_pending_since: Option<f64>,
    alert_firing: bool,
    alert_last_post: f64,
    arrived_total: u64,
    /// Tasks dropped unstarted past their deadline (`shed_expired`).
    shed: u64,

    // run metrics
    area: f64,
    area_t: f64,
    max_alive: u32,
    actions: u32,
    reversals: u32,
    events: u64,
    timeline: Vec<TimelinePoint>,
}

impl Engine {
    /// A farm at time 0 with `platform.initial_replicas` ready replicas and
    /// the given tasks (must be sorted by arrival; [`crate::SimError`] checks
    /// happen in [`crate::validate`]).
    pub fn new(
        tasks: Vec<TaskSpec>,
        duration_s: f64,
        platform: &Platform,
        seed: u64,
        opts: SimOptions,
    ) -> Engine {
        let cap = platform.per_function_cap.map_or(u32::MAX, |c| {
            c.saturating_mul(shards_for(platform, opts.shards))
        });
        let max_replicas = platform.max_replicas.min(cap).max(platform.min_replicas);
        let window_s = opts
            .window_s
            .filter(|w| w.is_finite())
            .unwrap_or(0.0)
            .max(platform.control_interval_s);
        let initial = platform
            .initial_replicas
            .clamp(platform.min_replicas, max_replicas);
        let n = tasks.len();
        let mut e = Engine {
            tasks,
            duration_s,
            interval_s: platform.control_interval_s,
            window_s,
            min_replicas: platform.min_replicas,
            max_replicas,
            startup: platform.startup_delay.clone(),
            scale_down: platform.scale_down_delay.clone(),
            api_latency_s: platform.scale_api_latency_s.max(0.0),
            fail_rate_per_s: platform.failure_rate_per_hour.max(0.0) / 3600.0,
            opts,
            rng_delay: Pcg64Mcg::seed_from_u64(seed ^ DELAY_STREAM),
            rng_fail: Pcg64Mcg::seed_from_u64(seed ^ FAIL_STREAM),
            replay: None,
            now: 0.0,
            seq: 0,
            heap: EventHeap::with_capacity(64),
            next_arrival: 0,
            next_tick: platform.control_interval_s,
            tick_base: 0.0,
            tick_index: 1,
            armed: None,
            early_decisions: 0,
            next_alert_eval: alert_rule::EVAL_INTERVAL_S,
            end_s: 0.0,
            end_checked: false,
            finished: false,
            queue: VecDeque::with_capacity(64),
            replicas: Vec::with_capacity(64),
            idle: Vec::with_capacity(64),
            n_starting: 0,
            n_ready: 0,
            n_busy: 0,
            n_alive: 0,
            desired: initial,
            last_scale_s: 0.0,
            last_direction: 0,
            completion_s: vec![NOT_DONE; n],
            completed: 0,
            on_time: 0,
            last_completion_s: 0.0,
            redeliveries: 0,
            failures: 0,
            w_start: 0.0,
            w_arrivals: 0,
            w_completions: 0,
            w_on_time: 0,
            w_redeliveries: 0,
            w_deadline_min: f64::INFINITY,
            w_deadline_sum: 0.0,
            w_service: Vec::with_capacity(64),
            w_latency: Vec::with_capacity(64),
            scratch: Vec::with_capacity(64),
            past: VecDeque::new(),
            spare: Vec::new(),
            alert_counts: [0; 3],
            alert_pending_since: None,
            alert_firing: false,
            alert_last_post: f64::NEG_INFINITY,
            arrived_total: 0,
            shed: 0,
            area: 0.0,
            area_t: 0.0,
            max_alive: 0,
            actions: 0,
            reversals: 0,
            events: 0,
            timeline: Vec::new(),
        };
        for _ in 0..initial {
            let id = e.replicas.len() as u32;
            e.replicas.push(Replica {
                state: State::Idle,
                generation: 0,
            });
            e.n_ready += 1;
            e.n_alive += 1;
            e.idle.push(id);
            e.schedule_failure(id);
        }
        e.max_alive = e.n_alive;
        e.arm();
        e
    }

    /// Replay `seq` for start-up delays (new replicas and restarts after a
    /// failure, in the order they start) instead of drawing from
    /// `platform.startup_delay`; once it runs out, its fallback is drawn
    /// from the same delay stream. Call before the first [`Engine::run`].
    pub fn replay_startup(&mut self, seq: DelaySequence) {
        self.replay = Some(seq);
    }

    /// The replayed sequence, if any (its counters tell how many delays
    /// came from it and how many from its fallback).
    pub fn startup_replay(&self) -> Option<&DelaySequence> {
        self.replay.as_ref()
    }

    fn startup_delay(&mut self) -> f64 {
        match &mut self.replay {
            Some(seq) => seq.next_delay(&mut self.rng_delay),
            None => self.startup.sample(&mut self.rng_delay),
        }
    }

    /// Current logical time, seconds.
    pub fn now(&self) -> f64 {
        self.now
    }

    /// Events processed so far (heap events and arrivals).
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Replicas last asked for (after clamping).
    pub fn desired(&self) -> u32 {
        self.desired
    }

    /// The effective replica bounds `(min, max)` after the per-function cap.
    pub fn bounds(&self) -> (u32, u32) {
        (self.min_replicas, self.max_replicas)
    }

    /// Whether the run is over.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The tasks of this run.
    pub fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    /// Completion time of each task, `None` if not (yet) completed.
    pub fn completion_times(&self) -> impl Iterator<Item = Option<f64>> + '_ {
        self.completion_s
            .iter()
            .map(|&c| (c != NOT_DONE).then_some(c))
    }

    // Inlined so that `kind` reaches the heap in registers: called out of
    // line, it was passed through the stack, written field by field and
    // read back whole (a store-forwarding stall, ~9 % of a step's CPU).
    #[inline(always)]
    fn push(&mut self, t: f64, kind: Kind) {
        self.seq += 1;
        self.heap.push(Event::new(t, self.seq, kind));
    }

    fn advance_clock(&mut self, t: f64) {
        // Time never goes backwards: the ordering of the sources guarantees
        // t >= now (checked in debug builds, which the property tests use).
        debug_assert!(t >= self.now, "time went backwards: {} -> {}", self.now, t);
        let t = t.max(self.now);
        self.area += f64::from(self.n_alive) * (t - self.area_t);
        self.area_t = t;
        self.now = t;
    }

    fn schedule_failure(&mut self, replica: u32) {
        if self.fail_rate_per_s > 0.0 {
            let u: f64 = self.rng_fail.random::<f64>();
            let dt = -(1.0 - u).ln() / self.fail_rate_per_s;
            let generation = self.replicas[replica as usize].generation;
            self.push(
                self.now + dt,
                Kind::Fail {
                    replica,
                    generation,
                },
            );
        }
    }

    fn dispatch(&mut self) {
        while !self.queue.is_empty() {
            let Some(r) = self.idle.pop() else { break };
            let Some(task) = self.next_runnable() else {
                self.idle.push(r);
                break;
            };
            let rep = &mut self.replicas[r as usize];
            rep.state = State::Busy { task };
            let generation = rep.generation;
            self.n_busy += 1;
            let s = self.tasks[task as usize].service_s;
            self.push(
                self.now + s,
                Kind::Done {
                    replica: r,
                    generation,
                },
            );
        }
    }

    /// The queue's next task to start; with `shed_expired`, the ones whose
    /// deadline already passed are dropped on the way (counted `shed`).
    fn next_runnable(&mut self) -> Option<u32> {
        while let Some(task) = self.queue.pop_front() {
            let t = &self.tasks[task as usize];
            if self.opts.shed_expired && self.now - t.arrival_s > t.deadline_s * (1.0 + 1e-12) {
                self.shed += 1;
                continue;
            }
            return Some(task);
        }
        None
    }

    fn arrive(&mut self, i: usize) {
        let task = self.tasks[i];
        self.queue.push_back(i as u32);
        self.w_arrivals += 1;
        self.arrived_total += 1;
        self.w_deadline_min = self.w_deadline_min.min(task.deadline_s);
        self.dispatch();
    }

    fn complete(&mut self, task: u32) {
        let spec = self.tasks[task as usize];
        let latency = self.now - spec.arrival_s;
        self.completion_s[task as usize] = self.now;
        self.completed += 1;
        self.last_completion_s = self.now;
        self.w_completions += 1;
        // Deadlines are compared with a tolerance of one ulp-ish so that a
        // task finishing exactly at its deadline counts as on time despite
        // the rounding of arrival + service.
        if latency <= spec.deadline_s * (1.0 + 1e-12) {
            self.on_time += 1;
            self.w_on_time += 1;
        }
        self.w_service.push(spec.service_s);
        self.w_latency.push(latency);
        self.w_deadline_min = self.w_deadline_min.min(spec.deadline_s);
        self.w_deadline_sum += spec.deadline_s;
    }

    fn handle(&mut self, kind: Kind) {
        match kind {
            Kind::Ready {
                replica,
                generation,
            } => {
                let rep = &mut self.replicas[replica as usize];
                if rep.generation != generation || rep.state != State::Starting {
                    return;
                }
                rep.state = State::Idle;
                self.n_starting -= 1;
                self.n_ready += 1;
                self.idle.push(replica);
                self.schedule_failure(replica);
                self.dispatch();
            }
            Kind::Done {
                replica,
                generation,
            } => {
                let rep = self.replicas[replica as usize];
                if rep.generation != generation {
                    return;
                }
                match rep.state {
                    State::Busy { task } => {
                        self.n_busy -= 1;
                        self.complete(task);
                        self.replicas[replica as usize].state = State::Idle;
                        self.idle.push(replica);
                        self.dispatch();
                    }
                    State::Draining { task } => {
                        self.complete(task);
                        self.start_leaving(replica);
                    }
                    _ => {}
                }
            }
            Kind::Gone {
                replica,
                generation,
            } => {
                let rep = &mut self.replicas[replica as usize];
                if rep.generation == generation && rep.state == State::Leaving {
                    rep.state = State::Gone;
                    rep.generation += 1;
                    self.n_alive -= 1;
                }
            }
            Kind::Fail {
                replica,
                generation,
            } => {
                let rep = self.replicas[replica as usize];
                if rep.generation != generation {
                    return;
                }
                match rep.state {
                    State::Idle | State::Busy { .. } => {
                        self.failures += 1;
                        if let State::Busy { task } = rep.state {
                            self.n_busy -= 1;
                            self.redeliver(task);
                        } else if let Some(pos) = self.idle.iter().position(|&r| r == replica) {
                            self.idle.remove(pos);
                        }
                        self.n_ready -= 1;
                        self.n_starting += 1;
                        let r = &mut self.replicas[replica as usize];
                        r.state = State::Starting;
                        r.generation += 1;
                        let generation = r.generation;
                        let delay = self.startup_delay();
                        self.push(
                            self.now + delay,
                            Kind::Ready {
                                replica,
                                generation,
                            },
                        );
                        self.dispatch();
                    }
                    State::Draining { task } => {
                        self.failures += 1;
                        self.redeliver(task);
                        let r = &mut self.replicas[replica as usize];
                        r.state = State::Gone;
                        r.generation += 1;
                        self.n_alive -= 1;
                        self.dispatch();
                    }
                    _ => {}
                }
            }
            Kind::Apply { desired } => self.apply(desired),
        }
    }

    fn redeliver(&mut self, task: u32) {
        self.redeliveries += 1;
        self.w_redeliveries += 1;
        self.queue.push_front(task);
    }

    fn start_leaving(&mut self, replica: u32) {
        let r = &mut self.replicas[replica as usize];
        r.state = State::Leaving;
        let generation = r.generation;
        let delay = self.scale_down.sample(&mut self.rng_delay);
        self.push(
            self.now + delay,
            Kind::Gone {
                replica,
                generation,
            },
        );
    }

    /// The platform receives a desired count and converges towards it.
    fn apply(&mut self, desired: u32) {
        let current = self.n_starting + self.n_ready;
        if desired > current {
            for _ in current..desired {
                let id = self.replicas.len() as u32;
                self.replicas.push(Replica {
                    state: State::Starting,
                    generation: 0,
                });
                self.n_starting += 1;
                self.n_alive += 1;
                let delay = self.startup_delay();
                self.push(
                    self.now + delay,
                    Kind::Ready {
                        replica: id,
                        generation: 0,
                    },
                );
            }
            self.max_alive = self.max_alive.max(self.n_alive);
        } else if desired < current {
            let mut remove = current - desired;
            // 1. starting replicas, newest first: gone at once.
            for id in (0..self.replicas.len()).rev() {
                if remove == 0 {
                    break;
                }
                let r = &mut self.replicas[id];
                if r.state == State::Starting {
                    r.state = State::Gone;
                    r.generation += 1;
                    self.n_starting -= 1;
                    self.n_alive -= 1;
                    remove -= 1;
                }
            }
            // 2. idle replicas, most recently idle first.
            while remove > 0 {
                let Some(id) = self.idle.pop() else { break };
                self.n_ready -= 1;
                self.start_leaving(id);
                remove -= 1;
            }
            // 3. busy replicas, newest first: drain.
            for id in (0..self.replicas.len()).rev() {
                if remove == 0 {
                    break;
                }
                let r = &mut self.replicas[id];
                if let State::Busy { task } = r.state {
                    r.state = State::Draining { task };
                    self.n_busy -= 1;
                    self.n_ready -= 1;
                    remove -= 1;
                }
            }
        }
    }

    /// Ask for `desired` replicas now (clamped to the platform's bounds).
    /// Returns the clamped value. A change counts as a scaling action; a
    /// change against the direction of the previous one as a reversal.
    pub fn set_desired(&mut self, desired: u32) -> u32 {
        let d = desired.clamp(self.min_replicas, self.max_replicas);
        if let Some(a) = &mut self.armed {
            a.set_replicas(f64::from(d));
        }
        if d != self.desired {
            let dir: i8 = if d > self.desired { 1 } else { -1 };
            if self.last_direction != 0 && dir != self.last_direction {
                self.reversals += 1;
            }
            self.last_direction = dir;
            self.actions += 1;
            self.desired = d;
            self.last_scale_s = self.now;
            if self.api_latency_s > 0.0 {
                self.push(self.now + self.api_latency_s, Kind::Apply { desired: d });
            } else {
                self.apply(d);
            }
        }
        d
    }

    /// Signals of the window (since the last tick, or the sliding window of
    /// [`SimOptions::window_s`]), without closing it.
    pub fn signals(&mut self) -> Signals {
        // Buckets that started before the window are out of it.
        while let Some(b) = self.past.front() {
            if b.start < self.now - self.window_s - 1e-9 {
                if let Some(mut b) = self.past.pop_front() {
                    b.service.clear();
                    b.latency.clear();
                    self.spare.push(b);
                }
            } else {
                break;
            }
        }
        let mut start = self.w_start;
        let mut arrivals = self.w_arrivals;
        let mut completions = self.w_completions;
        let mut on_time = self.w_on_time;
        let mut redeliveries = self.w_redeliveries;
        let mut deadline_min = self.w_deadline_min;
        let mut deadline_sum = self.w_deadline_sum;
        for b in &self.past {
            start = start.min(b.start);
            arrivals += b.arrivals;
            completions += b.completions;
            on_time += b.on_time;
            redeliveries += b.redeliveries;
            deadline_min = deadline_min.min(b.deadline_min);
            deadline_sum += b.deadline_sum;
        }
        let n = completions as usize;
        let (service_mean_s, service_p95_s) = if n == 0 {
            (None, None)
        } else {
            self.scratch.clear();
            for b in &self.past {
                self.scratch.extend_from_slice(&b.service);
            }
            self.scratch.extend_from_slice(&self.w_service);
            let mean = self.scratch.iter().sum::<f64>() / n as f64;
            (Some(mean), Some(nearest_rank(&mut self.scratch, 0.95)))
        };
        let (latency_mean_s, latency_max_s, latency_p95_s) = if n == 0 {
            (None, None, None)
        } else {
            self.scratch.clear();
            for b in &self.past {
                self.scratch.extend_from_slice(&b.latency);
            }
            self.scratch.extend_from_slice(&self.w_latency);
            let mean = self.scratch.iter().sum::<f64>() / n as f64;
            let max = self
                .scratch
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            (
                Some(mean),
                Some(max),
                Some(nearest_rank(&mut self.scratch, 0.95)),
            )
        };
        Signals {
            interval_s: self.now - start,
            step_s: self.now - self.w_start,
            backlog: self.queue.len() as f64,
            in_flight: self.in_flight() as f64,
            arrivals: f64::from(arrivals),
            completions: f64::from(completions),
            completions_on_time: f64::from(on_time),
            service_mean_s,
            service_p95_s,
            latency_mean_s,
            latency_max_s,
            latency_p95_s,
            deadline_min_s: deadline_min.is_finite().then_some(deadline_min),
            deadline_mean_s: (n > 0).then(|| deadline_sum / n as f64),
            replicas_desired: f64::from(self.desired),
            replicas_ready: f64::from(self.n_ready),
            replicas_starting: f64::from(self.n_starting),
            replicas_busy: f64::from(self.n_busy),
            since_last_scale_s: self.now - self.last_scale_s,
            redeliveries: f64::from(redeliveries),
            min_replicas: f64::from(self.min_replicas),
            max_replicas: f64::from(self.max_replicas),
            oldest_age_s: self.queue_head_age(),
        }
    }

    /// Tasks delivered and not yet completed (busy and draining replicas).
    fn in_flight(&self) -> u64 {
        self.completed_pending()
    }

    /// Age of the task at the head of the queue, seconds (0 when empty).
    fn queue_head_age(&self) -> f64 {
        self.queue.front().map_or(0.0, |&i| {
            (self.now - self.tasks[i as usize].arrival_s).max(0.0)
        })
    }

    fn completed_pending(&self) -> u64 {
        self.arrived_total - self.completed - self.shed - self.queue.len() as u64
    }

    fn close_window(&mut self) -> Signals {
        let s = self.signals();
        if self.opts.timeline {
            self.timeline.push(TimelinePoint {
                t_s: self.now,
                desired: self.desired,
                ready: self.n_ready,
                starting: self.n_starting,
                alive: self.n_alive,
                backlog: self.queue.len() as u32,
                arrivals: self.w_arrivals,
                completions: self.w_completions,
                window_qos: s.window_qos(),
            });
        }
        if self.window_s > self.interval_s + 1e-9 {
            let mut b = self.spare.pop().unwrap_or_default();
            b.start = self.w_start;
            b.arrivals = self.w_arrivals;
            b.completions = self.w_completions;
            b.on_time = self.w_on_time;
            b.redeliveries = self.w_redeliveries;
            b.deadline_min = self.w_deadline_min;
            b.deadline_sum = self.w_deadline_sum;
            std::mem::swap(&mut b.service, &mut self.w_service);
            std::mem::swap(&mut b.latency, &mut self.w_latency);
            self.past.push_back(b);
        }
        self.w_start = self.now;
        self.w_arrivals = 0;
        self.w_completions = 0;
        self.w_on_time = 0;
        self.w_redeliveries = 0;
        self.w_deadline_min = f64::INFINITY;
        self.w_deadline_sum = 0.0;
        self.w_service.clear();
        self.w_latency.clear();
        s
    }

    /// Closes the window for a decision and re-arms the backlog-jump
    /// trigger from it.
    fn decision_window(&mut self) -> Signals {
        let s = self.close_window();
        self.arm_with(&s);
        s
    }

    fn arm(&mut self) {
        if self.opts.events.is_some() {
            let s = self.signals();
            self.arm_with(&s);
        }
    }

    fn arm_with(&mut self, s: &Signals) {
        self.armed = self.opts.events.map(|t| t.arm(s, self.now));
    }

    fn all_done(&self) -> bool {
        self.next_arrival == self.tasks.len()
            && self.completed + self.shed == self.tasks.len() as u64
    }

    fn finish(&mut self, end: f64) {
        self.advance_clock(end);
        self.end_s = end;
        self.finished = true;
    }

    /// Run until the next pause. After [`Pause::Finished`] it keeps returning
    /// `Finished`.
    pub fn run(&mut self) -> Pause {
        if self.finished {
            return Pause::Finished;
        }
        let horizon = self.duration_s + self.opts.max_drain_s.max(0.0);
        loop {
            // The earliest of the four sources; ties broken by class.
            let t_heap = self
                .heap
                .peek_t_bits()
                .map_or(f64::INFINITY, f64::from_bits);
            let t_arr = self
                .tasks
                .get(self.next_arrival)
                .map_or(f64::INFINITY, |t| t.arrival_s);
            let t_tick = self.next_tick;
            let t_alert = if self.opts.alerts {
                self.next_alert_eval
            } else {
                f64::INFINITY
            };
            let t_end_check = if self.end_checked {
                f64::INFINITY
            } else {
                self.duration_s
            };
            let t_min = t_heap.min(t_arr).min(t_tick).min(t_alert).min(t_end_check);
            if t_min > horizon || !t_min.is_finite() {
                self.finish(horizon);
                return Pause::Finished;
            }
            if t_heap <= t_min {
                if let Some(ev) = self.heap.pop() {
                    self.advance_clock(t_heap);
                    self.events += 1;
                    self.handle(ev.kind());
                    if self.all_done() && self.now >= self.duration_s {
                        self.finish(self.now.max(self.duration_s));
                        return Pause::Finished;
                    }
                }
                continue;
            }
            if t_arr <= t_min {
                self.advance_clock(t_arr);
                self.events += 1;
                let i = self.next_arrival;
                self.next_arrival += 1;
                self.arrive(i);
                if self
                    .armed
                    .is_some_and(|a| a.fires(self.queue.len() as f64, self.now))
                {
                    self.early_decisions += 1;
                    self.tick_base = self.now;
                    self.tick_index = 1;
                    self.next_tick = self.now + self.interval_s;
                    return Pause::Tick(self.decision_window());
                }
                continue;
            }
            if t_tick <= t_min {
                self.advance_clock(t_tick);
                self.events += 1;
                self.tick_index += 1;
                self.next_tick = self.tick_base + self.tick_index as f64 * self.interval_s;
                return Pause::Tick(self.decision_window());
            }
            if t_alert <= t_min {
                self.advance_clock(t_alert);
                self.events += 1;
                self.next_alert_eval += alert_rule::EVAL_INTERVAL_S;
                if let Some(firing) = self.evaluate_alert() {
                    let signals = self.signals();
                    return Pause::Alert { firing, signals };
                }
                continue;
            }
            // Horizon check at the end of the arrival window: a run whose
            // work finished early still lasts the whole window.
            self.advance_clock(t_end_check);
            self.end_checked = true;
            if self.all_done() {
                self.finish(self.duration_s);
                return Pause::Finished;
            }
        }
    }

    /// One Prometheus rule evaluation; `Some(firing)` when Alertmanager
    /// would post a notification.
    fn evaluate_alert(&mut self) -> Option<bool> {
        // Counter samples every EVAL_INTERVAL_S; the rate over the 10 s window
        // is the difference with the sample two evaluations back.
        self.alert_counts.rotate_left(1);
        self.alert_counts[2] = self.arrived_total;
        let rate = (self.alert_counts[2] - self.alert_counts[0]) as f64 / alert_rule::RATE_WINDOW_S;
        let now = self.now;
        if rate > alert_rule::THRESHOLD_PER_S {
            let since = *self.alert_pending_since.get_or_insert(now);
            let held = now - since + 1e-9 >= alert_rule::FOR_S;
            let post =
                !self.alert_firing || now - self.alert_last_post + 1e-9 >= alert_rule::REPEAT_S;
            if held && post {
                self.alert_firing = true;
                self.alert_last_post = now;
                return Some(true);
            }
            None
        } else {
            self.alert_pending_since = None;
            if self.alert_firing {
                self.alert_firing = false;
                self.alert_last_post = now;
                return Some(false);
            }
            None
        }
    }

    /// Metrics of the run so far (final once [`Engine::is_finished`]).
    pub fn metrics(&self) -> RunMetrics {
        let end = if self.finished { self.end_s } else { self.now };
        let area = self.area + f64::from(self.n_alive) * (end - self.area_t).max(0.0);
        let mut lat: Vec<f64> = self
            .completion_s
            .iter()
            .zip(&self.tasks)
            .filter(|(c, _)| **c != NOT_DONE)
            .map(|(c, t)| c - t.arrival_s)
            .collect();
        // Three selections instead of a sort: same values, linear time.
        let [p50, p95, p99] = nearest_ranks(&mut lat, [0.50, 0.95, 0.99]);
        let n = self.tasks.len() as u64;
        let last_arrival = self.tasks.last().map_or(0.0, |t| t.arrival_s);
        RunMetrics {
            tasks: n,
            completed: self.completed,
            shed: self.shed,
            unfinished: n - self.completed - self.shed,
            on_time: self.on_time,
            qos: if n == 0 {
                1.0
            } else {
                self.on_time as f64 / n as f64
            },
            latency_p50_s: p50,
            latency_p95_s: p95,
            latency_p99_s: p99,
            replica_seconds: area,
            mean_replicas: if end > 0.0 { area / end } else { 0.0 },
            max_replicas: self.max_alive,
            scaling_actions: self.actions,
            reversals: self.reversals,
            drain_time_s: if self.completed + self.shed == n && n > 0 {
                (self.last_completion_s - last_arrival).max(0.0)
            } else {
                (end - last_arrival).max(0.0)
            },
            end_s: end,
            redeliveries: self.redeliveries,
            failures: self.failures,
            events: self.events,
            early_decisions: self.early_decisions,
            timeline: self.timeline.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The heap pops events in `(time, insertion)` order, whatever the
    /// order of pushes and pops, with many equal times, and gives back
    /// each kind unchanged.
    #[test]
    fn event_heap_pops_in_time_then_insertion_order() {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut heap = EventHeap::with_capacity(4);
        let mut model: Vec<(u64, u64, Kind)> = Vec::new();
        let mut seq = 0u64;
        for round in 0..5000u32 {
            if rand() % 3 != 0 {
                seq += 1;
                // Few distinct times, so ties are common.
                let t = (rand() % 50) as f64 * 0.25;
                let kind = Kind::unpack(rand() % 5, pair(rand() as u32, round));
                heap.push(Event::new(t, seq, kind));
                model.push((t.to_bits(), seq, kind));
            } else {
                model.sort_by_key(|&(t, s, _)| std::cmp::Reverse((t, s)));
                let want = model.pop();
                let got = heap.pop();
                assert_eq!(
                    got.map(|e| (e.t_bits(), e.kind())),
                    want.map(|(t, _, k)| (t, k))
                );
            }
        }
        model.sort_by_key(|&(t, s, _)| std::cmp::Reverse((t, s)));
        while let Some((t, _, k)) = model.pop() {
            let e = heap.pop().expect("heap as long as the model");
            assert_eq!((e.t_bits(), e.kind()), (t, k));
        }
        assert!(heap.pop().is_none());
    }
}
