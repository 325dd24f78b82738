//! Queueing formulas for sizing a farm: Erlang C, the M/G/c waiting-time tail
//! with the Allen-Cunneen `(1 + Cs^2) / 2` correction, staffing for a
//! deadline, and backlog drain.
//!
//! Notation: arrival rate `lambda` (tasks/s), mean service time `mean_s`
//! (seconds), squared coefficient of variation of service `cs2`, servers
//! (replicas) `c`, offered load `a = lambda * mean_s` (in replicas).
//!
//! The M/G/c tail used throughout is the standard approximation
//!
//! ```text
//! P(W > t) ~= C(c, a) * exp(-(c / S - lambda) * t / k),   k = (1 + Cs^2) / 2
//! ```
//!
//! exact for M/M/c (`Cs^2 = 1`, `k = 1`) and scaled for other service laws
//! the way Allen-Cunneen scales the mean wait.

/// Most servers any search here will consider; keeps loops bounded.
pub const MAX_SERVERS: u32 = 100_000;

/// Offered load in servers, `lambda * mean_s`.
pub fn offered_load(lambda: f64, mean_s: f64) -> f64 {
    (lambda * mean_s).max(0.0)
}

/// Erlang B blocking probability `B(c, a)` by the stable recursion
/// `B(0) = 1, B(k) = a B(k-1) / (k + a B(k-1))`.
pub fn erlang_b(c: u32, a: f64) -> f64 {
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (f64::from(k) + a * b);
    }
    b
}

/// Erlang C: probability that an arrival waits in M/M/c with load `a`.
/// 1 when the system is unstable (`c <= a`).
pub fn erlang_c(c: u32, a: f64) -> f64 {
    if a <= 0.0 {
        return 0.0;
    }
    let cf = f64::from(c);
    if cf <= a {
        return 1.0;
    }
    let b = erlang_b(c, a);
    (cf * b / (cf - a * (1.0 - b))).clamp(0.0, 1.0)
}

/// Allen-Cunneen factor `(1 + Cs^2) / 2` (Cs^2 of the arrivals taken as 1).
pub fn variability_factor(cs2: f64) -> f64 {
    (1.0 + cs2.max(0.0)) / 2.0
}

/// Decay rate `theta` of the waiting-time tail, 1/s: `(c / S - lambda) / k`.
fn tail_rate(lambda: f64, mean_s: f64, cs2: f64, c: u32) -> f64 {
    (f64::from(c) / mean_s - lambda) / variability_factor(cs2)
}

/// Approximate `P(W > t)` for M/G/c. 1 for an unstable system.
pub fn mgc_wait_tail(lambda: f64, mean_s: f64, cs2: f64, c: u32, t: f64) -> f64 {
    if lambda <= 0.0 || mean_s <= 0.0 {
        return 0.0;
    }
    let a = offered_load(lambda, mean_s);
    if f64::from(c) <= a {
        return 1.0;
    }
    erlang_c(c, a) * (-tail_rate(lambda, mean_s, cs2, c) * t.max(0.0)).exp()
}

/// Approximate mean wait in queue for M/G/c (Allen-Cunneen), seconds.
/// Infinite for an unstable system.
pub fn mgc_mean_wait(lambda: f64, mean_s: f64, cs2: f64, c: u32) -> f64 {
    if lambda <= 0.0 || mean_s <= 0.0 {
        return 0.0;
    }
    let a = offered_load(lambda, mean_s);
    if f64::from(c) <= a {
        return f64::INFINITY;
    }
    erlang_c(c, a) * mean_s / (f64::from(c) - a) * variability_factor(cs2)
}

/// Approximate `P(response > D)` treating the service time as its mean:
/// `P(W > D - S)`; 1 when `D < S` (the mean task cannot make it).
pub fn mgc_response_tail(lambda: f64, mean_s: f64, cs2: f64, c: u32, deadline_s: f64) -> f64 {
    if deadline_s < mean_s {
        return 1.0;
    }
    mgc_wait_tail(lambda, mean_s, cs2, c, deadline_s - mean_s)
}

/// Smallest `c > lambda * S` with `P(response > D) <= eps` (the queueing
/// floor of a fixed deadline). When `D <= S` no `c` can meet that, and the
/// answer is the smallest `c` with `P(W > 0) = C(c, a) <= eps` (no waiting),
/// the best staffing can do. 0 when there is no load.
pub fn min_servers_for_deadline(
    lambda: f64,
    mean_s: f64,
    cs2: f64,
    deadline_s: f64,
    eps: f64,
) -> u32 {
    let slack = (deadline_s - mean_s).max(0.0);
    smallest_c(lambda, mean_s, eps, |c| {
        mgc_wait_tail(lambda, mean_s, cs2, c, slack)
    })
}

/// Smallest `c > lambda * S` whose miss probability is `<= eps` when each
/// task's waiting budget (deadline minus its own service time) varies with
/// mean `slack_mean_s`, modelled as exponential:
///
/// ```text
/// P(miss) = E[P(W > b)] = C(c, a) / (1 + theta * slack_mean_s)
/// ```
///
/// For deadlines proportional to service time (the reference's `2 x`
/// service) the budget is proportional to a Gamma/log-normal service time and
/// this is close (and on the safe side: Jensen) to the truth; for a fixed
/// deadline it is conservative compared with [`min_servers_for_deadline`].
pub fn min_servers_for_slack(
    lambda: f64,
    mean_s: f64,
    cs2: f64,
    slack_mean_s: f64,
    eps: f64,
) -> u32 {
    let b = slack_mean_s.max(0.0);
    smallest_c(lambda, mean_s, eps, |c| {
        let a = offered_load(lambda, mean_s);
        if f64::from(c) <= a {
            1.0
        } else {
            erlang_c(c, a) / (1.0 + tail_rate(lambda, mean_s, cs2, c) * b)
        }
    })
}

/// Search `c` upwards from the stability bound until `miss(c) <= eps`
/// (bounded by [`MAX_SERVERS`]).
fn smallest_c(lambda: f64, mean_s: f64, eps: f64, miss: impl Fn(u32) -> f64) -> u32 {
    if lambda <= 0.0 || mean_s <= 0.0 || !lambda.is_finite() || !mean_s.is_finite() {
        return 0;
    }
    let a = offered_load(lambda, mean_s);
    if a >= f64::from(MAX_SERVERS) {
        return MAX_SERVERS;
    }
    // Smallest integer strictly greater than a.
    let mut c = (a.floor() as u32).saturating_add(1).max(1);
    while c < MAX_SERVERS && miss(c) > eps {
        c += 1;
    }
    c
}

/// Servers that drain a backlog of `backlog` tasks within a horizon:
/// `c >= B * S / H` with `H = D - S` (the time a queued task has left once
/// its own service is accounted for). When `D - S` is smaller than one mean
/// service time the horizon is floored at `S`: a backlog cannot drain faster
/// than one task per server per service time anyway.
pub fn backlog_drain_servers(backlog: f64, mean_s: f64, deadline_s: f64) -> u32 {
    if backlog <= 0.0 || mean_s <= 0.0 {
        return 0;
    }
    let horizon = (deadline_s - mean_s).max(mean_s);
    let c = (backlog * mean_s / horizon).ceil();
    if c >= f64::from(MAX_SERVERS) {
        MAX_SERVERS
    } else {
        c as u32
    }
}

/// Squared coefficient of variation implied by a mean and a 95th percentile,
/// assuming a log-normal shape: solve `p95 / mean = exp(1.645 s - s^2 / 2)`
/// for the smaller root `s` and return `exp(s^2) - 1`. Ratios at or below 1
/// give 0; ratios beyond the log-normal maximum (about 3.87) give the
/// largest value, `exp(1.645^2) - 1` (about 14).
pub fn cs2_from_p95(mean_s: f64, p95_s: f64) -> f64 {
    const Z95: f64 = 1.644_853_626_951_472_2;
    if mean_s <= 0.0 || p95_s <= mean_s {
        return 0.0;
    }
    let ln_r = (p95_s / mean_s).ln();
    let disc = Z95 * Z95 - 2.0 * ln_r;
    let s = if disc > 0.0 { Z95 - disc.sqrt() } else { Z95 };
    (s * s).exp() - 1.0
}

/// Default miss probability the staffing estimate aims at (99 % QoS).
pub const DEFAULT_EPS: f64 = 0.01;

/// The replicas a farm needs right now according to the queueing model, from
/// one interval's signals alone (no history): the larger of
///
/// - the M/G/c staffing for the mean waiting budget
///   ([`min_servers_for_slack`] with the measured arrival rate, service mean
///   and the `Cs^2` implied by the service p95), and
/// - the arrivals' load plus draining the backlog within
///   `H = max(mean slack, decision step)`: `ceil(lambda S + B S / H)`.
///
/// `None` when no service time has been measured in the interval. Used by
/// the observation (as a hint), by [`crate::action::Action::ScaleToEstimate`]
/// and as the starting point of the `queueing` policy.
pub fn staffing_estimate(s: &crate::signals::Signals, eps: f64) -> Option<f64> {
    let mean = s.service_mean_s.filter(|m| *m > 0.0)?;
    let cs2 = s.service_p95_s.map_or(1.0, |p| cs2_from_p95(mean, p));
    let slack = s.slack_mean_s().unwrap_or(mean);
    let lambda = s.arrival_rate();
    let c_q = f64::from(min_servers_for_slack(lambda, mean, cs2, slack, eps));
    let horizon = slack.max(s.step()).max(mean);
    let c_d = (lambda * mean + s.backlog.max(0.0) * mean / horizon).ceil();
    Some(c_q.max(c_d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn erlang_b_by_hand() {
        // B(1, 2) = 2 / 3; B(2, 2) = 2 * (2/3) / (2 + 4/3) = 0.4;
        // B(3, 2) = 0.8 / 3.8 = 0.210526...
        assert!(close(erlang_b(1, 2.0), 2.0 / 3.0, 1e-12));
        assert!(close(erlang_b(2, 2.0), 0.4, 1e-12));
        assert!(close(erlang_b(3, 2.0), 0.8 / 3.8, 1e-12));
    }

    #[test]
    fn erlang_c_by_hand() {
        // M/M/1: C = rho.
        assert!(close(erlang_c(1, 0.7), 0.7, 1e-12));
        // M/M/2, a = 1: C = 1/3.
        assert!(close(erlang_c(2, 1.0), 1.0 / 3.0, 1e-12));
        // M/M/3, a = 2: C = 3 B / (3 - 2 (1 - B)) with B = 0.8/3.8 -> 4/9.
        assert!(close(erlang_c(3, 2.0), 4.0 / 9.0, 1e-12));
        // Unstable and empty systems.
        assert_eq!(erlang_c(2, 2.0), 1.0);
        assert_eq!(erlang_c(2, 0.0), 0.0);
    }

    #[test]
    fn mmc_tail_is_exact_for_exponential_service() {
        // M/M/2, lambda = 1, S = 1: P(W > t) = C e^{-(2 - 1) t} = e^{-t} / 3.
        let p = mgc_wait_tail(1.0, 1.0, 1.0, 2, 1.5);
        assert!(close(p, (-1.5f64).exp() / 3.0, 1e-12));
        // Deterministic service halves the decay time: k = 1/2 -> e^{-2t}/3.
        let p = mgc_wait_tail(1.0, 1.0, 0.0, 2, 1.5);
        assert!(close(p, (-3.0f64).exp() / 3.0, 1e-12));
        // Mean wait M/M/2: C S / (c - a) = (1/3) / 1.
        assert!(close(mgc_mean_wait(1.0, 1.0, 1.0, 2), 1.0 / 3.0, 1e-12));
    }

    #[test]
    fn staffing_for_a_deadline_by_hand() {
        // lambda = 1, S = 1, Cs^2 = 1, D = 2 (slack 1), eps = 0.05.
        // c = 2: C = 1/3, P = e^{-1}/3 = 0.1226 > 0.05.
        // c = 3: a = 1, B(3,1) = 1/16, C = 3/16 / (3 - 15/16) = 1/11;
        //        P = (1/11) e^{-2} = 0.0123 <= 0.05 -> 3.
        assert!(close(erlang_c(3, 1.0), 1.0 / 11.0, 1e-12));
        assert_eq!(min_servers_for_deadline(1.0, 1.0, 1.0, 2.0, 0.05), 3);
        // With eps = 0.2, c = 2 suffices (0.1226 <= 0.2).
        assert_eq!(min_servers_for_deadline(1.0, 1.0, 1.0, 2.0, 0.2), 2);
        // No load, no servers.
        assert_eq!(min_servers_for_deadline(0.0, 1.0, 1.0, 2.0, 0.01), 0);
        // D <= S: fall back to C(c, a) <= eps. a = 1: C(2) = 1/3, C(3) = 1/11
        // = 0.0909, C(4) = ? B(4,1) = (1/16)/(4 + 1/16) = 1/65,
        // C = 4/65 / (4 - 64/65) = 4/196 = 0.0204 -> eps 0.05 gives 4.
        assert_eq!(min_servers_for_deadline(1.0, 1.0, 1.0, 0.5, 0.05), 4);
    }

    #[test]
    fn staffing_for_a_proportional_slack_by_hand() {
        // lambda = 1, S = 1, Cs^2 = 1, mean slack 1, eps = 0.1.
        // c = 2: theta = 1, P = (1/3) / 2 = 0.1667 > 0.1.
        // c = 3: theta = 2, P = (1/11) / 3 = 0.0303 <= 0.1 -> 3.
        assert_eq!(min_servers_for_slack(1.0, 1.0, 1.0, 1.0, 0.1), 3);
        // eps = 0.2: c = 2 -> 0.1667 <= 0.2.
        assert_eq!(min_servers_for_slack(1.0, 1.0, 1.0, 1.0, 0.2), 2);
        // Conservative against a fixed budget of the same mean.
        for c in 2..6 {
            let fixed = mgc_wait_tail(1.0, 1.0, 1.0, c, 1.0);
            let prop = erlang_c(c, 1.0) / (1.0 + (f64::from(c) - 1.0));
            assert!(prop >= fixed);
        }
    }

    #[test]
    fn paper_phase_two_staffing_is_plausible() {
        // 7.5 tasks/s, S = 1.47 s, Cs^2 = 0.25, slack = S (deadline 2 x S),
        // 99 %: a = 11.0; the floor must exceed a and stay below the 32 cap.
        let c = min_servers_for_slack(7.5, 1.47, 0.25, 1.47, 0.01);
        assert!((12..=20).contains(&c), "{c}");
    }

    #[test]
    fn drain_by_hand() {
        // B = 40, S = 1.5, D = 6.5: c >= 40 * 1.5 / 5 = 12.
        assert_eq!(backlog_drain_servers(40.0, 1.5, 6.5), 12);
        // D - S below S: horizon floored at S -> c = B.
        assert_eq!(backlog_drain_servers(10.0, 1.5, 2.0), 10);
        assert_eq!(backlog_drain_servers(0.0, 1.5, 2.0), 0);
    }

    #[test]
    fn cs2_from_p95_inverts_lognormal() {
        // sigma = 0.5: mean m, p95 = m * exp(1.645 * 0.5 - 0.125);
        // Cs^2 = exp(0.25) - 1.
        let ratio = (1.644_853_626_951_472_2 * 0.5 - 0.125f64).exp();
        assert!(close(
            cs2_from_p95(2.0, 2.0 * ratio),
            0.25f64.exp() - 1.0,
            1e-9
        ));
        assert_eq!(cs2_from_p95(1.0, 0.9), 0.0);
    }
}
