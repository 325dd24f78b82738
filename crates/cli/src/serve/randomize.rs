//! Domain randomisation: each episode's scenario scaled by factors drawn
//! from the episode seed, so a seed reproduces the randomised scenario.

use farm_model::scenario::{Arrivals, Dist, Scenario, stream_rng};
use rand::Rng;

/// Random stream of the domain randomisation ("randomiz").
const RANDOMIZE_STREAM: u64 = 0x7261_6e64_6f6d_697a;

/// A closed range of multipliers drawn uniformly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

impl Range {
    const fn new(lo: f64, hi: f64) -> Range {
        Range { lo, hi }
    }

    fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        if self.hi > self.lo {
            rng.random_range(self.lo..=self.hi)
        } else {
            self.lo
        }
    }
}

/// Ranges of the domain randomisation (see `serve`'s module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Randomization {
    /// Arrival-rate multiplier.
    pub rate: Range,
    /// Service-time mean multiplier.
    pub service: Range,
    /// Service-time shape multiplier (variability; mean kept).
    pub shape: Range,
    /// Start-up delay multiplier.
    pub startup: Range,
}

impl Default for Randomization {
    fn default() -> Self {
        Randomization {
            rate: Range::new(0.7, 1.5),
            service: Range::new(0.7, 1.4),
            shape: Range::new(0.5, 2.0),
            startup: Range::new(0.5, 2.0),
        }
    }
}

/// Apply domain randomisation to a scenario, seeded by the episode seed.
pub fn randomize(s: &mut Scenario, r: &Randomization, seed: u64) {
    let mut rng = stream_rng(seed, RANDOMIZE_STREAM);
    // Draw every factor whatever the scenario's kinds, so a factor's value
    // for a seed does not depend on which others apply.
    let rate = r.rate.draw(&mut rng);
    let service = r.service.draw(&mut rng);
    let shape = r.shape.draw(&mut rng);
    let startup = r.startup.draw(&mut rng);
    match &mut s.arrivals {
        Arrivals::Phases { base_rate, .. } => *base_rate *= rate,
        Arrivals::Mmpp { rates, .. } => {
            rates[0] *= rate;
            rates[1] *= rate;
        }
        Arrivals::Trace { counts } => {
            // Scale the recorded counts, carrying the fractional part so the
            // total follows the factor.
            let mut carry = 0.0;
            for c in counts.iter_mut() {
                let x = f64::from(*c) * rate + carry;
                let whole = x.floor();
                carry = x - whole;
                *c = whole.min(f64::from(u32::MAX)) as u32;
            }
        }
    }
    s.service.dist = reshape(&scale(&s.service.dist, service), shape);
    if let Some(c) = s.service.clip.as_mut() {
        c.min *= service;
        c.max *= service;
    }
    s.platform.startup_delay = scale(&s.platform.startup_delay, startup);
}

/// The distribution of `f * X`.
fn scale(d: &Dist, f: f64) -> Dist {
    match d {
        Dist::Constant(v) => Dist::Constant(v * f),
        Dist::Uniform { min, max } => Dist::Uniform {
            min: min * f,
            max: max * f,
        },
        Dist::Exponential { mean } => Dist::Exponential { mean: mean * f },
        Dist::Gamma { shape, scale } => Dist::Gamma {
            shape: *shape,
            scale: scale * f,
        },
        Dist::LogNormal { mu, sigma } => Dist::LogNormal {
            mu: mu + f.ln(),
            sigma: *sigma,
        },
        Dist::Empirical { values } => Dist::Empirical {
            values: values.iter().map(|v| v * f).collect(),
        },
    }
}

/// Change the variability of a gamma or log-normal distribution by `g`
/// (gamma: shape * g; log-normal: sigma / sqrt(g)), keeping its mean; other
/// kinds are returned unchanged.
fn reshape(d: &Dist, g: f64) -> Dist {
    match d {
        Dist::Gamma { shape, scale } => Dist::Gamma {
            shape: shape * g,
            scale: scale / g,
        },
        Dist::LogNormal { mu, sigma } => {
            let s2 = sigma / g.sqrt();
            Dist::LogNormal {
                mu: mu + (sigma * sigma - s2 * s2) / 2.0,
                sigma: s2,
            }
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_keeps_the_mean() {
        for d in [
            Dist::Gamma {
                shape: 4.0,
                scale: 0.375,
            },
            Dist::LogNormal {
                mu: -0.4,
                sigma: 1.2,
            },
        ] {
            for g in [0.5, 1.3, 2.0] {
                let r = reshape(&d, g);
                assert!((r.mean() - d.mean()).abs() < 1e-9, "{d:?} {g}");
                assert!(r.cv2() != d.cv2());
            }
        }
    }
}
