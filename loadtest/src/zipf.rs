//! Key choice: uniform, or zipfian with the YCSB generator (Gray et al., "Quickly Generating
//! Billion-Record Synthetic Databases", SIGMOD 1994).
//!
//! The zipfian generator draws rank `i` (0 = most popular) with probability proportional to
//! `1 / (i + 1)^theta`. It needs `zeta(n, theta) = sum_{i=1..n} i^-theta` once per run; that sum is
//! computed exactly for the first [`EXACT_ZETA_TERMS`] terms and by Euler–Maclaurin beyond, so a
//! billion-key space costs milliseconds, not seconds. Ranks are not scrambled: the cluster hashes
//! keys onto the ring, so the popular keys land on arbitrary nodes anyway.

use rand::Rng;

/// Terms of `zeta(n, theta)` summed exactly; the rest is approximated (relative error < 1e-12).
const EXACT_ZETA_TERMS: u64 = 1_000_000;

/// Draws key indexes in `0..keys`.
#[derive(Clone, Debug)]
pub enum KeyChooser {
    /// Every key equally likely.
    Uniform {
        /// Size of the key space.
        keys: u64,
    },
    /// Zipfian popularity; index 0 is the hottest key.
    Zipfian(Zipfian),
}

impl KeyChooser {
    /// The share of draws the most popular key gets.
    pub fn hottest_share(&self) -> f64 {
        match self {
            KeyChooser::Uniform { keys } => 1.0 / *keys as f64,
            KeyChooser::Zipfian(z) => z.probability(0),
        }
    }

    /// The next key index.
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        match self {
            KeyChooser::Uniform { keys } => rng.random_range(0..*keys),
            KeyChooser::Zipfian(z) => z.next(rng),
        }
    }
}

/// The YCSB zipfian generator over `0..n`, with its constants computed once.
#[derive(Clone, Debug)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    zeta_n: f64,
    alpha: f64,
    eta: f64,
    /// `1 + 0.5^theta`: below it (in units of `zeta_n`) the draw is rank 1.
    rank1_bound: f64,
}

impl Zipfian {
    /// A generator over `0..n` with skew `theta`; `n >= 2` and `0 < theta < 1` (the closed form
    /// divides by `1 - theta`; YCSB's default is 0.99).
    pub fn new(n: u64, theta: f64) -> Zipfian {
        assert!(n >= 2, "zipfian needs at least two keys");
        assert!(theta > 0.0 && theta < 1.0, "zipfian theta must be in (0, 1)");
        let zeta_n = zeta(n, theta);
        let zeta_2 = 1.0 + 0.5f64.powf(theta);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n);
        Zipfian { n, theta, zeta_n, alpha: 1.0 / (1.0 - theta), eta, rank1_bound: zeta_2 }
    }

    /// The probability of rank `i` under the exact zipfian law (what `next` approximates).
    pub fn probability(&self, i: u64) -> f64 {
        ((i + 1) as f64).powf(-self.theta) / self.zeta_n
    }

    /// The next rank in `0..n`.
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let u: f64 = rng.random();
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < self.rank1_bound {
            return 1;
        }
        let rank = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        // u close to 1 maps to n itself; clamp into the key space.
        rank.min(self.n - 1)
    }
}

/// `sum_{i=1..n} i^-theta`.
pub fn zeta(n: u64, theta: f64) -> f64 {
    let exact = n.min(EXACT_ZETA_TERMS);
    let mut sum = 0.0;
    // Smallest terms first keeps the float sum accurate.
    for i in (1..=exact).rev() {
        sum += (i as f64).powf(-theta);
    }
    if n > exact {
        // Euler–Maclaurin for sum_{i=m+1..n} f(i), f(x) = x^-theta:
        // integral + (f(n) - f(m)) / 2 + (f'(n) - f'(m)) / 12.
        let (m, n) = (exact as f64, n as f64);
        let f = |x: f64| x.powf(-theta);
        let df = |x: f64| -theta * x.powf(-theta - 1.0);
        let integral = (n.powf(1.0 - theta) - m.powf(1.0 - theta)) / (1.0 - theta);
        sum += integral + (f(n) - f(m)) / 2.0 + (df(n) - df(m)) / 12.0;
    }
    sum
}

#[cfg(test)]
mod tests {
    use rand::{rngs::SmallRng, SeedableRng};

    use super::*;

    const SAMPLES: usize = 400_000;

    fn histogram(z: &Zipfian, n: u64, seed: u64) -> Vec<u64> {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut counts = vec![0u64; n as usize];
        for _ in 0..SAMPLES {
            counts[z.next(&mut rng) as usize] += 1;
        }
        counts
    }

    #[test]
    fn hottest_keys_get_their_expected_share() {
        //   keys   theta
        for (n, theta) in [(1_000, 0.99), (100_000, 0.99), (10_000, 0.5)] {
            let z = Zipfian::new(n, theta);
            let counts = histogram(&z, n, 7);
            for rank in [0, 1] {
                let share = counts[rank as usize] as f64 / SAMPLES as f64;
                let expected = z.probability(rank);
                assert!(
                    (share - expected).abs() < 0.05 * expected,
                    "n={n} theta={theta} rank {rank}: share {share:.4}, expected {expected:.4}"
                );
            }
            // Popularity falls with rank, and the top 1% of keys draw roughly their share.
            assert!(counts[0] > counts[1] && counts[1] > counts[9] && counts[9] > counts[99]);
            let top = n / 100;
            let drawn = counts[..top as usize].iter().sum::<u64>() as f64 / SAMPLES as f64;
            let expected: f64 = (0..top).map(|i| z.probability(i)).sum();
            assert!(
                (drawn - expected).abs() < 0.1 * expected,
                "n={n} theta={theta}: top 1% drew {drawn:.4}, expected {expected:.4}"
            );
        }
    }

    #[test]
    fn draws_stay_in_the_key_space() {
        let z = Zipfian::new(2, 0.99);
        let counts = histogram(&z, 2, 1);
        assert_eq!(counts.iter().sum::<u64>(), SAMPLES as u64);
        let z = Zipfian::new(10, 0.2);
        let mut rng = SmallRng::seed_from_u64(3);
        assert!((0..SAMPLES).all(|_| z.next(&mut rng) < 10));
    }

    #[test]
    fn approximate_zeta_matches_the_exact_sum() {
        let n = 3 * EXACT_ZETA_TERMS;
        for theta in [0.2, 0.5, 0.99] {
            let exact: f64 = (1..=n).rev().map(|i| (i as f64).powf(-theta)).sum();
            let approx = zeta(n, theta);
            assert!((approx - exact).abs() / exact < 1e-9, "theta {theta}: {approx} vs {exact}");
        }
    }

    #[test]
    fn uniform_covers_the_key_space() {
        let chooser = KeyChooser::Uniform { keys: 100 };
        let mut rng = SmallRng::seed_from_u64(5);
        let mut counts = [0u32; 100];
        for _ in 0..100_000 {
            counts[chooser.next(&mut rng) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }
}
