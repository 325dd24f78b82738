//! The clairvoyant oracle: how few replica-seconds a workload needs at a QoS
//! target.
//!
//! Two results, and only the first is a theorem:
//!
//! - [`lower_bound`]: a **provable lower bound** on the replica-seconds of
//!   *every* run of this simulator on this workload that meets at least
//!   `target_qos` of its deadlines, whatever the policy (even one that knows
//!   the future and the platform's random delays). "No policy beats the
//!   oracle" is therefore a theorem, checked by the tests for every built-in
//!   policy, at the QoS level each policy actually reached.
//! - [`plan`]: an **achievable** clairvoyant schedule: a per-tick replica plan
//!   found by searching with the simulator itself (same seed, so it also
//!   knows the realised platform delays) and replayed as a policy
//!   ([`PlanPolicy`]). Its cost is an upper bound on the optimum; the gap
//!   between plan and bound brackets the true optimum. It is a heuristic
//!   (greedy repair then greedy trimming), not proven optimal.
//!
//! # The lower bound and its proof
//!
//! Notation: tasks `i` with arrival `a_i`, service `s_i`, absolute deadline
//! `D_i = a_i + d_i`; `T0` the arrival window; `sigma` and `delta` the
//! smallest possible start-up and scale-down delays (support minima of the
//! platform distributions); `k` the number of tasks allowed to miss:
//! `k = n - ceil(target * n)`. Tasks with `s_i > d_i` can never be on time and
//! use up `k` first.
//!
//! Accounting facts of the simulator used by the proof (see
//! [`crate::engine`]): a run lasts `[0, T_end]` with `T_end >= T0`; the cost is
//! `R = integral of N(t)`, `N` = replicas that exist; every existing replica
//! is in exactly one phase: starting, serving (`U(t)`: idle-ready or busy,
//! including a draining replica finishing its task), or leaving. `U` only
//! increases through a *ready event*, each preceded by a starting phase of
//! at least `sigma` (initial replicas are ready at 0 without one); a
//! decrease of `U` by a scale-down is followed by a leaving phase of at least
//! `delta`; `N >= min_replicas` at all times.
//!
//! Level decomposition: let `T_j = {t : U(t) >= j}`. Then
//! `integral U = sum_j |T_j|` and the number of ready events is at least the
//! total number of up-crossings of all levels. Hence
//! `R >= sum_j (|T_j| + sigma * up_j + delta * down_j)` where `down_j` counts
//! down-crossings completed early enough to pay their leaving phase inside
//! `[0, T0]` (when failures are possible, a failure can replace a scale-down,
//! so `delta` is taken as 0).
//!
//! Two more facts sharpen it. (1) Without failures `U(t) >= min_replicas`
//! at every moment (scale-downs cancel starting replicas first and keep
//! ready + starting = desired >= min), so those levels are present
//! throughout. (2) A run meeting the target completes at least one of the
//! `k+1` possible tasks with the latest `a_i + s_i`, so `T_end` is at least
//! `T0' = max(T0, the (k+1)-th largest a_i + s_i)`; `T0'` replaces `T0` below.
//!
//! Blocks: cut `[0, T0]` into blocks `B` (length `L`, offset `o`) plus a final
//! block `[last cut, inf)`. Each task is charged to the block of its arrival
//! only, as a pseudo-task with window `[a_i, min(D_i, end B)]` and work
//! `s_i - max(0, D_i - end B)` (what must be done inside `B` if it is on
//! time). So a task that misses removes at most one pseudo-task.
//! For a block `B` with the `j` largest pseudo-tasks dropped:
//! - busy time inside `B` is at least `A_j = A - top_j` (its remaining work),
//!   and busy time is at most `sum_l |T_l cap B|`;
//! - for any sub-interval `I` of `B`, `integral_I U >= W(I) - top_j`, so `U`
//!   reaches `K_j = max_I ceil((W(I) - top_j) / |I|)` somewhere in `B`.
//!
//! With `h_in`, `h_out` the levels of `U` at the block's ends, every level in
//! `(h_in, max(K_j, h_out)]` crosses up inside `B` (`sigma` each), every
//! level in `(h_out, max(h_in, K_j)]` crosses down (`delta` each), and every
//! level `<= min(h_in, h_out)` is either present throughout `B` or dips and
//! returns (`min(L, sigma + delta)` each). These level sets are disjoint, and
//! the dips share the presence term with the busy time, so the block costs
//! at least
//! `sigma*(max(K_j,h_out)-h_in)+ + delta*(max(h_in,K_j)-h_out)+ + max(A_j, min(h_in,h_out)*min(L, sigma+delta))`.
//! The final block ends with the run (level 0 after `T_end`, nothing paid
//! after it), so it costs at least `sigma*(K_j - h_in)+ + A_j`.
//! A dynamic programme over blocks with state (boundary level, misses used)
//! minimises the sum over every boundary-level sequence and every split of
//! the `k` misses among blocks, starting from `U(0) = initial replicas`;
//! every actual run is one of those sequences, so the minimum is a lower
//! bound on `R`. So is `min_replicas * T0`. The oracle reports the largest of
//! these bounds over several block lengths and offsets.
//!
//! What the bound ignores (why it is not tight): integrality inside a block
//! (a task needs one replica for `s_i` without preemption), FIFO order, work
//! of tasks straddling two blocks beyond their mandatory part, and idle time
//! forced by random arrivals.

use farm_model::scenario::{Dist, Platform, TaskSpec, Workload};
use farm_model::signals::Signals;
use farm_policy::{Decision, Policy};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, SimOptions};
use crate::metrics::RunMetrics;
use crate::run::{SimError, drive, validate};

/// Default QoS target of the oracle.
pub const DEFAULT_TARGET_QOS: f64 = 0.99;

/// Smallest and a planning value of a delay distribution: `(support
/// minimum, value to plan with)`. The plan uses the support maximum when it
/// is bounded and the mean otherwise.
pub fn delay_support(d: &Dist) -> (f64, f64) {
    match d {
        Dist::Constant(v) => (v.max(0.0), v.max(0.0)),
        Dist::Uniform { min, max } => (min.max(0.0), max.max(*min).max(0.0)),
        Dist::Empirical { values } => {
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(0.0, f64::max);
            (if lo.is_finite() { lo.max(0.0) } else { 0.0 }, hi)
        }
        Dist::Exponential { .. } | Dist::Gamma { .. } | Dist::LogNormal { .. } => {
            (0.0, d.mean().max(0.0))
        }
    }
}

/// Number of tasks allowed to miss their deadline at `target_qos`.
pub fn allowed_misses(n: usize, target_qos: f64) -> usize {
    let need = (target_qos.clamp(0.0, 1.0) * n as f64 - 1e-9)
        .ceil()
        .max(0.0) as usize;
    n - need.min(n)
}

/// A lower bound on replica-seconds (see the module docs for the proof).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LowerBound {
    /// The bound, replica-seconds.
    pub replica_seconds: f64,
    /// QoS target it holds for.
    pub target_qos: f64,
    /// Tasks allowed to miss at that target.
    pub allowed_misses: usize,
    /// Tasks that cannot meet their deadline at all (service > deadline).
    pub impossible_tasks: usize,
    /// `false` when no run can reach the target (too many impossible tasks).
    pub feasible: bool,
    /// Block length of the best bound, seconds (0 when `min_replicas * T0` won).
    pub block_s: f64,
    /// Offset of the best bound's first cut, seconds.
    pub offset_s: f64,
    /// Largest level `K` some block requires with no miss.
    pub peak_level: u32,
}

struct Block {
    len: f64,
    delta: f64,
    /// `area[j]`: remaining work with the j largest pseudo-tasks dropped.
    area: Vec<f64>,
    /// `level[j]`: required peak level with j dropped.
    level: Vec<u32>,
    final_block: bool,
}

/// Lower bound on replica-seconds of any run of `workload` on `platform`
/// (shards automatic, [`crate::engine::shards_for`]) reaching `target_qos` (fraction of all tasks on time).
pub fn lower_bound(workload: &Workload, platform: &Platform, target_qos: f64) -> LowerBound {
    lower_bound_sharded(workload, platform, target_qos, 0)
}

/// [`lower_bound`] for a farm spread over `shards` functions (this only
/// changes the initial replica count when the per-function cap clamps it).
pub fn lower_bound_sharded(
    workload: &Workload,
    platform: &Platform,
    target_qos: f64,
    shards: u32,
) -> LowerBound {
    let tasks = &workload.tasks;
    let n = tasks.len();
    let k_total = allowed_misses(n, target_qos);
    let possible: Vec<TaskSpec> = tasks
        .iter()
        .copied()
        .filter(|t| t.service_s <= t.deadline_s * (1.0 + 1e-12))
        .collect();
    let impossible = n - possible.len();
    let feasible = impossible <= k_total;
    let k = k_total.saturating_sub(impossible);
    // Every run meeting the target lasts at least until the arrival window
    // ends and until one of the k+1 latest-finishing possible tasks is done.
    let mut earliest_ends: Vec<f64> = possible.iter().map(|t| t.arrival_s + t.service_s).collect();
    earliest_ends.sort_unstable_by(|a, b| b.total_cmp(a));
    let t0 = earliest_ends
        .get(k)
        .copied()
        .unwrap_or(0.0)
        .max(workload.duration_s)
        .max(0.0);
    let floor = f64::from(platform.min_replicas) * t0;
    let mut best = LowerBound {
        replica_seconds: floor,
        target_qos,
        allowed_misses: k_total,
        impossible_tasks: impossible,
        feasible,
        block_s: 0.0,
        offset_s: 0.0,
        peak_level: 0,
    };
    let (sigma, _) = delay_support(&platform.startup_delay);
    let (delta_min, _) = delay_support(&platform.scale_down_delay);
    let delta = if platform.failure_rate_per_hour > 0.0 {
        0.0
    } else {
        delta_min
    };
    let cap = platform.per_function_cap.map_or(u32::MAX, |c| {
        c.saturating_mul(crate::engine::shards_for(platform, shards))
    });
    let initial = platform.initial_replicas.clamp(
        platform.min_replicas,
        platform.max_replicas.min(cap).max(platform.min_replicas),
    );
    // Without failures the serving level never drops below min_replicas
    // (scale-downs remove starting replicas first and keep ready + starting
    // = desired >= min), so those levels are present throughout.
    let always = if platform.failure_rate_per_hour > 0.0 {
        0
    } else {
        platform.min_replicas
    };
    // Block lengths scale with the typical deadline: much shorter blocks
    // contain almost no whole task window, much longer ones lose the
    // time structure.
    let mut deadlines: Vec<f64> = possible.iter().map(|t| t.deadline_s).collect();
    deadlines.sort_unstable_by(f64::total_cmp);
    let typical = deadlines
        .get(deadlines.len() / 2)
        .copied()
        .unwrap_or(1.0)
        .max(0.5);
    for factor in [0.5, 1.0, 2.0, 8.0, 48.0] {
        let len = typical * factor;
        if len > t0.max(1.0) {
            break;
        }
        for &frac in &[0.0, 0.5] {
            let offset = len * frac;
            let blocks = make_blocks(&possible, t0, len, offset, k, delta);
            let peak = blocks.iter().map(|b| b.level[0]).max().unwrap_or(0);
            let hmax = peak.max(initial) as usize + 1;
            let exact_cost =
                blocks.len() as f64 * (hmax * hmax) as f64 * ((k + 1) * (k + 1)) as f64 / 2.0;
            let value = if exact_cost <= 3.0e7 {
                dp(&blocks, initial, always, k, sigma)
            } else {
                lagrangian(&blocks, initial, always, k, sigma)
            };
            best.peak_level = best.peak_level.max(peak);
            if value > best.replica_seconds {
                best.replica_seconds = value;
                best.block_s = len;
                best.offset_s = offset;
            }
        }
    }
    best
}

fn make_blocks(
    tasks: &[TaskSpec],
    t0: f64,
    len: f64,
    offset: f64,
    k: usize,
    delta: f64,
) -> Vec<Block> {
    let mut cuts = vec![0.0];
    let mut c = if offset > 0.0 { offset } else { len };
    while c <= t0 + 1e-9 {
        cuts.push(c);
        c += len;
    }
    let mut blocks = Vec::with_capacity(cuts.len());
    let mut it = 0usize;
    for (bi, &start) in cuts.iter().enumerate() {
        let end = cuts.get(bi + 1).copied().unwrap_or(f64::INFINITY);
        // pseudo-tasks: (window start, window end, work)
        let mut pseudo: Vec<(f64, f64, f64)> = Vec::new();
        while it < tasks.len() && tasks[it].arrival_s < end {
            let t = tasks[it];
            it += 1;
            if t.arrival_s < start {
                continue;
            }
            let due = t.arrival_s + t.deadline_s;
            let work = t.service_s - (due - end).max(0.0);
            if work > 0.0 {
                pseudo.push((t.arrival_s, due.min(end), work));
            }
        }
        let final_block = !end.is_finite();
        // The final block's length is the part the run surely covers.
        let block_len = if final_block {
            (t0 - start).max(0.0)
        } else {
            end - start
        };
        let eligible = !final_block && end + delta <= t0 + 1e-9;
        blocks.push(block_requirements(
            &pseudo,
            k,
            block_len,
            if eligible { delta } else { 0.0 },
            final_block,
        ));
    }
    blocks
}

fn block_requirements(
    pseudo: &[(f64, f64, f64)],
    k: usize,
    len: f64,
    delta: f64,
    final_block: bool,
) -> Block {
    let m = pseudo.len();
    let jmax = k.min(m);
    let mut works: Vec<f64> = pseudo.iter().map(|p| p.2).collect();
    works.sort_unstable_by(|a, b| b.total_cmp(a));
    let total: f64 = works.iter().sum();
    let mut top = vec![0.0; jmax + 1];
    for j in 1..=jmax {
        top[j] = top[j - 1] + works[j - 1];
    }
    let area: Vec<f64> = top.iter().map(|t| (total - t).max(0.0)).collect();
    let mut level = vec![0u32; jmax + 1];
    if m > 0 {
        // Candidate intervals [start of p, end of q]: work of pseudo-tasks
        // whose windows lie inside. Starts sorted ascending, walk ends.
        let mut by_start: Vec<usize> = (0..m).collect();
        by_start.sort_unstable_by(|&a, &b| pseudo[a].0.total_cmp(&pseudo[b].0));
        let mut by_end: Vec<usize> = (0..m).collect();
        by_end.sort_unstable_by(|&a, &b| pseudo[a].1.total_cmp(&pseudo[b].1));
        // Keep the cost bounded on huge blocks: use every start only when
        // m^2 * (jmax+1) is small, else every `stride`-th start (a subset of
        // intervals still gives a valid, weaker, bound).
        let budget = 1.0e6;
        let per_start = (m * (jmax + 1)) as f64;
        let stride = ((m as f64 * per_start / budget).ceil() as usize).max(1);
        for si in (0..m).step_by(stride) {
            let s0 = pseudo[by_start[si]].0;
            let mut w = 0.0;
            for &q in &by_end {
                let (a, e, p) = pseudo[q];
                if a < s0 {
                    continue;
                }
                w += p;
                let width = e - s0;
                if width <= 0.0 {
                    continue;
                }
                for j in 0..=jmax {
                    let need = (w - top[j]) / width;
                    if need <= 0.0 {
                        break;
                    }
                    let lvl = (need - 1e-9).ceil() as u32;
                    if lvl > level[j] {
                        level[j] = lvl;
                    }
                }
            }
        }
    }
    Block {
        len,
        delta,
        area,
        level,
        final_block,
    }
}

/// Minimise the block costs over boundary levels and miss splits (exactly:
/// state = boundary level and misses used so far). Levels `<= always` are
/// present at every moment.
fn dp(blocks: &[Block], initial: u32, always: u32, k: usize, sigma: f64) -> f64 {
    let peak = blocks.iter().map(|b| b.level[0]).max().unwrap_or(0);
    let hmax = peak.max(initial) as usize;
    let hmin = (always as usize).min(hmax);
    let inf = f64::INFINITY;
    let width = k + 1;
    let mut f = vec![inf; (hmax + 1) * width];
    f[initial as usize * width] = 0.0;
    let mut g = vec![inf; (hmax + 1) * width];
    let mut result = inf;
    for b in blocks {
        let jmax = b.area.len() - 1;
        if b.final_block {
            // Levels <= always are present until the run's end.
            let floor = hmin as f64 * b.len;
            for h_in in hmin..=hmax {
                for d in 0..width {
                    let base = f[h_in * width + d];
                    if !base.is_finite() {
                        continue;
                    }
                    for j in 0..=jmax.min(k - d) {
                        let up = (b.level[j] as f64 - h_in as f64).max(0.0);
                        result = result.min(base + sigma * up + b.area[j].max(floor));
                    }
                }
            }
            break;
        }
        g.iter_mut().for_each(|x| *x = inf);
        for h_in in hmin..=hmax {
            for d in 0..width {
                let base = f[h_in * width + d];
                if !base.is_finite() {
                    continue;
                }
                for j in 0..=jmax.min(k - d) {
                    for h_out in hmin..=hmax {
                        let cost = base + block_cost(b, h_in, h_out, j, hmin, sigma);
                        let slot = &mut g[h_out * width + d + j];
                        if cost < *slot {
                            *slot = cost;
                        }
                    }
                }
            }
        }
        std::mem::swap(&mut f, &mut g);
    }
    if result.is_finite() { result } else { 0.0 }
}

/// The cost of one block between boundary levels with `j` misses.
#[inline]
fn block_cost(b: &Block, h_in: usize, h_out: usize, j: usize, hmin: usize, sigma: f64) -> f64 {
    let kl = b.level[j] as usize;
    let ups = (kl.max(h_out) as f64 - h_in as f64).max(0.0);
    let downs = (h_in.max(kl) as f64 - h_out as f64).max(0.0);
    let m = h_in.min(h_out);
    let held = hmin as f64 * b.len + (m - hmin) as f64 * b.len.min(sigma + b.delta);
    sigma * ups + b.delta * downs + b.area[j].max(held)
}

/// For many allowed misses the exact programme is too large: relax the
/// budget with a price `lambda` per miss. For every `lambda >= 0`,
/// `min over runs (cost + lambda * (misses - k)) <= min over runs with at
/// most k misses of cost` (weak duality), and the left side is a programme
/// over boundary levels only. The bound is maximised over `lambda` by
/// ternary search (the dual function is concave).
#[allow(clippy::needless_range_loop)] // f and g are indexed by level on purpose
fn lagrangian(blocks: &[Block], initial: u32, always: u32, k: usize, sigma: f64) -> f64 {
    let peak = blocks.iter().map(|b| b.level[0]).max().unwrap_or(0);
    let hmax = peak.max(initial) as usize;
    let hmin = (always as usize).min(hmax);
    let max_work = blocks
        .iter()
        .filter_map(|b| b.area.windows(2).map(|w| w[0] - w[1]).reduce(f64::max))
        .fold(0.0, f64::max);
    let max_len = blocks.iter().map(|b| b.len).fold(0.0, f64::max);
    let dual = |lambda: f64| -> f64 {
        let inf = f64::INFINITY;
        let mut f = vec![inf; hmax + 1];
        f[initial as usize] = 0.0;
        let mut g = vec![inf; hmax + 1];
        let mut result = inf;
        for b in blocks {
            let jmax = b.area.len() - 1;
            if b.final_block {
                let floor = hmin as f64 * b.len;
                for (h_in, &base) in f.iter().enumerate().skip(hmin) {
                    if !base.is_finite() {
                        continue;
                    }
                    for j in 0..=jmax {
                        let up = (b.level[j] as f64 - h_in as f64).max(0.0);
                        result = result
                            .min(base + sigma * up + b.area[j].max(floor) + lambda * j as f64);
                    }
                }
                break;
            }
            // Group the miss counts by the level they leave (K_j is
            // non-increasing in j), and for each group and each held level
            // m precompute min_j max(A_j, held(m)) + lambda * j.
            let mut groups: Vec<(usize, Vec<f64>)> = Vec::new();
            let mut j = 0;
            while j <= jmax {
                let kappa = b.level[j] as usize;
                let mut best_m = vec![inf; hmax + 1];
                while j <= jmax && b.level[j] as usize == kappa {
                    for (m, slot) in best_m.iter_mut().enumerate().skip(hmin) {
                        let held =
                            hmin as f64 * b.len + (m - hmin) as f64 * b.len.min(sigma + b.delta);
                        let c = b.area[j].max(held) + lambda * j as f64;
                        if c < *slot {
                            *slot = c;
                        }
                    }
                    j += 1;
                }
                groups.push((kappa, best_m));
            }
            g.iter_mut().for_each(|x| *x = inf);
            for h_in in hmin..=hmax {
                let base = f[h_in];
                if !base.is_finite() {
                    continue;
                }
                for h_out in hmin..=hmax {
                    let m = h_in.min(h_out);
                    let mut best = inf;
                    for (kappa, best_m) in &groups {
                        let ups = ((*kappa).max(h_out) as f64 - h_in as f64).max(0.0);
                        let downs = (h_in.max(*kappa) as f64 - h_out as f64).max(0.0);
                        best = best.min(sigma * ups + b.delta * downs + best_m[m]);
                    }
                    let c = base + best;
                    if c < g[h_out] {
                        g[h_out] = c;
                    }
                }
            }
            std::mem::swap(&mut f, &mut g);
        }
        if result.is_finite() {
            result - lambda * k as f64
        } else {
            0.0
        }
    };
    let (mut lo, mut hi) = (0.0, max_work + 2.0 * sigma + max_len + 1.0);
    let mut best = dual(0.0).max(dual(hi));
    for _ in 0..20 {
        let a = lo + (hi - lo) / 3.0;
        let b = hi - (hi - lo) / 3.0;
        let (fa, fb) = (dual(a), dual(b));
        best = best.max(fa).max(fb);
        if fa < fb {
            lo = a;
        } else {
            hi = b;
        }
    }
    best.max(0.0)
}

/// Replays a per-tick replica plan: at tick `i` (time `(i+1) * interval`) it
/// asks for `plan[i]`, and for `min_replicas` after the plan ends.
#[derive(Debug, Clone)]
pub struct PlanPolicy {
    plan: Vec<u32>,
    interval_s: f64,
    after: u32,
}

impl PlanPolicy {
    /// A policy replaying `plan` on a platform with this control interval.
    pub fn new(plan: Vec<u32>, interval_s: f64, after: u32) -> PlanPolicy {
        PlanPolicy {
            plan,
            interval_s,
            after,
        }
    }
}

impl Policy for PlanPolicy {
    fn name(&self) -> &str {
        "oracle"
    }

    fn decide(&mut self, now_s: f64, _signals: &Signals) -> Decision {
        let i = ((now_s / self.interval_s).round() as usize).saturating_sub(1);
        Decision {
            desired: self.plan.get(i).copied().unwrap_or(self.after),
            action: None,
        }
    }
}

/// An achievable clairvoyant schedule and its simulated run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OraclePlan {
    /// Desired replicas at each control tick (tick `i` at `(i+1) * interval`).
    pub plan: Vec<u32>,
    /// The simulated run of the plan (same seed).
    pub metrics: RunMetrics,
    /// Whether the plan met the target (it may not when the platform's
    /// bounds make the target unreachable).
    pub meets_target: bool,
    /// The QoS the search aimed at: the target, or less when even the
    /// plan with every tick at the maximum does not reach it.
    pub goal_qos: f64,
    /// Simulations the search ran.
    pub simulations: u32,
}

/// Both oracle results for one workload and seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OracleResult {
    /// The provable lower bound.
    pub bound: LowerBound,
    /// The achievable plan.
    pub plan: OraclePlan,
}

/// Lower bound and achievable plan for `workload` run with `seed`.
pub fn solve(
    workload: &Workload,
    platform: &Platform,
    seed: u64,
    target_qos: f64,
) -> Result<OracleResult, SimError> {
    let bound = lower_bound(workload, platform, target_qos);
    let plan = plan(workload, platform, seed, target_qos, &SimOptions::default())?;
    Ok(OracleResult { bound, plan })
}

struct Planner<'a> {
    workload: &'a Workload,
    platform: &'a Platform,
    seed: u64,
    opts: SimOptions,
    after: u32,
    simulations: u32,
}

impl Planner<'_> {
    fn run(&mut self, plan: &[u32]) -> (RunMetrics, Vec<Option<f64>>) {
        self.simulations += 1;
        let mut engine = Engine::new(
            self.workload.tasks.clone(),
            self.workload.duration_s,
            self.platform,
            self.seed,
            self.opts.clone(),
        );
        let mut policy =
            PlanPolicy::new(plan.to_vec(), self.platform.control_interval_s, self.after);
        drive(&mut engine, &mut policy);
        let done = engine.completion_times().collect();
        (engine.metrics(), done)
    }
}

/// Search a per-tick plan that meets `target_qos` with few replica-seconds.
///
/// Start: for each tick, the work arriving in the interval its new replicas
/// would serve (`lead` = API latency + planning start-up delay later),
/// divided by the interval. Repair: while QoS is below target, add a replica
/// at every tick from the one whose replicas are ready by a missed task's
/// arrival to the one before its deadline.
/// Trim: try removing one replica at each tick, keep it if the run still
/// meets the goal and is cheaper; repeat while something improves (at most
/// a few passes). The goal is the target, or the QoS of the plan asking for
/// the maximum at every tick when that is lower (some misses cannot be
/// avoided by any plan); repair falls back to that plan if it gets stuck.
pub fn plan(
    workload: &Workload,
    platform: &Platform,
    seed: u64,
    target_qos: f64,
    opts: &SimOptions,
) -> Result<OraclePlan, SimError> {
    validate(workload, platform)?;
    let dt = platform.control_interval_s;
    let cap = platform.per_function_cap.map_or(u32::MAX, |c| {
        c.saturating_mul(crate::engine::shards_for(platform, opts.shards))
    });
    let hi = platform.max_replicas.min(cap).max(platform.min_replicas);
    let lo = platform.min_replicas;
    let (_, startup_plan) = delay_support(&platform.startup_delay);
    let lead = platform.scale_api_latency_s + startup_plan;
    let last_due = workload
        .tasks
        .iter()
        .map(|t| t.arrival_s + t.deadline_s)
        .fold(workload.duration_s, f64::max);
    let ticks = ((last_due / dt).ceil() as usize).max(1);
    // Tick i decides at (i+1)*dt; its replicas serve from (i+1)*dt + lead.
    let serve_index = |t: f64| -> usize {
        let x = ((t - lead) / dt).floor() - 1.0;
        if x < 0.0 {
            0
        } else {
            (x as usize).min(ticks - 1)
        }
    };
    let mut work = vec![0.0; ticks];
    for t in &workload.tasks {
        work[serve_index(t.arrival_s)] += t.service_s;
    }
    let mut p: Vec<u32> = work
        .iter()
        .map(|w| ((w / dt).ceil() as u32).clamp(lo, hi))
        .collect();
    let mut planner = Planner {
        workload,
        platform,
        seed,
        opts: SimOptions {
            alerts: false,
            timeline: false,
            // The plan is one decision per tick: no early ones.
            events: None,
            ..opts.clone()
        },
        after: lo,
        simulations: 0,
    };
    let mut timeline_opts = opts.clone();
    timeline_opts.alerts = false;
    timeline_opts.events = None;
    // Some misses are unavoidable (before the first replicas can start, or
    // above a platform cap): aim at what the most generous plan reaches.
    let all_hi = vec![hi; ticks];
    let (generous, _) = planner.run(&all_hi);
    let goal = target_qos.min(generous.qos);
    let (mut best, mut done) = planner.run(&p);
    // Repair.
    for _ in 0..200 {
        if best.qos + 1e-12 >= goal {
            break;
        }
        let mut bump = vec![false; ticks];
        for (t, c) in workload.tasks.iter().zip(&done) {
            let late = c.is_none_or(|c| c - t.arrival_s > t.deadline_s * (1.0 + 1e-12));
            if late {
                // Replicas serving it must be asked for by serve_index and
                // kept (not cancelled while starting, not drained) by every
                // tick until its deadline.
                let first = serve_index(t.arrival_s);
                let due = t.arrival_s + t.deadline_s;
                let last =
                    (((due / dt).floor() as usize).saturating_sub(1)).clamp(first, ticks - 1);
                for b in &mut bump[first..=last] {
                    *b = true;
                }
            }
        }
        let mut changed = false;
        for (v, b) in p.iter_mut().zip(&bump) {
            if *b && *v < hi {
                *v += 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
        (best, done) = planner.run(&p);
    }
    if best.qos + 1e-12 < goal {
        p = all_hi;
        best = generous;
    }
    {
        // Trim.
        for _ in 0..3 {
            let mut improved = false;
            for i in 0..ticks {
                while p[i] > lo {
                    p[i] -= 1;
                    let (m, _) = planner.run(&p);
                    if m.qos + 1e-12 >= goal && m.replica_seconds < best.replica_seconds {
                        best = m;
                        improved = true;
                    } else {
                        p[i] += 1;
                        break;
                    }
                }
            }
            if !improved {
                break;
            }
        }
    }
    // Final run with the caller's options (timeline) for reporting.
    planner.opts = timeline_opts;
    let (metrics, _) = planner.run(&p);
    Ok(OraclePlan {
        plan: p,
        meets_target: metrics.qos + 1e-12 >= target_qos,
        goal_qos: goal,
        metrics,
        simulations: planner.simulations,
    })
}
