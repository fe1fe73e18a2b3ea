//! The spread `ladder compare` reports: each number's mean, minimum and maximum over seeds, and
//! a 95% bootstrap interval that resamples seeds and, within each seed, test pages; and the
//! paired difference of two models over the seeds they share, with whether it is larger than
//! that spread. Page-level resampling matters because a test set of 60 pages moves a rate by
//! 1.7 points per page: three seeds alone would understate the noise.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// One metric's per-page values in one seed's evaluation; `None` where a page does not count
/// (a score of a prediction that did not parse, degeneration without a finish reason).
pub type Pages = Vec<Option<f64>>;

/// Per seed, a model's value of one metric and its pages.
pub type SeedValues = Vec<(f64, Pages)>;

/// Bootstrap draws per interval.
pub const DRAWS: usize = 2000;

/// A number over seeds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Spread {
    /// Mean of the per-seed values.
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// How many seeds gave a value.
    pub seeds: usize,
    /// 95% bootstrap interval of the mean over seeds and pages, when page values are known.
    pub interval: Option<[f64; 2]>,
}

impl Spread {
    /// The spread of `values` (one per seed); `pages` (one per seed, same order) adds the
    /// bootstrap interval. `None` when no seed gave a value.
    pub fn of(values: &[f64], pages: &[Pages]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        Some(Spread {
            mean: mean(values),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            seeds: values.len(),
            interval: interval(pages, None),
        })
    }
}

/// A − B over the seeds both have.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Difference {
    /// A − B per shared seed.
    pub per_seed: Vec<f64>,
    pub mean: f64,
    /// Standard deviation of the per-seed differences (0 with one seed).
    pub sd: f64,
    /// 95% bootstrap interval of the mean difference (seeds and pages resampled, pages paired
    /// when both sides scored the same pages).
    pub interval: Option<[f64; 2]>,
    /// Same sign on every seed and an interval that excludes zero.
    pub beyond_noise: bool,
}

impl Difference {
    /// `a` and `b`: per shared seed, the aggregate value and its pages.
    pub fn of(a: &[(f64, Pages)], b: &[(f64, Pages)]) -> Option<Difference> {
        if a.is_empty() || a.len() != b.len() {
            return None;
        }
        let per_seed: Vec<f64> = a.iter().zip(b).map(|(x, y)| x.0 - y.0).collect();
        let m = mean(&per_seed);
        let sd = if per_seed.len() > 1 {
            (per_seed.iter().map(|d| (d - m).powi(2)).sum::<f64>() / (per_seed.len() - 1) as f64).sqrt()
        } else {
            0.0
        };
        let pa: Vec<Pages> = a.iter().map(|x| x.1.clone()).collect();
        let pb: Vec<Pages> = b.iter().map(|x| x.1.clone()).collect();
        let interval = interval(&pa, Some(&pb));
        let same_sign = per_seed.iter().all(|d| *d > 0.0) || per_seed.iter().all(|d| *d < 0.0);
        let excludes_zero = interval.is_some_and(|[lo, hi]| lo > 0.0 || hi < 0.0);
        Some(Difference { per_seed, mean: m, sd, interval, beyond_noise: same_sign && excludes_zero })
    }

    /// Seeds on which A is above B.
    pub fn higher_on(&self) -> usize {
        self.per_seed.iter().filter(|d| **d > 0.0).count()
    }

    pub fn lower_on(&self) -> usize {
        self.per_seed.iter().filter(|d| **d < 0.0).count()
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn mean_at(pages: &[Option<f64>], idx: &[usize]) -> Option<f64> {
    let (s, n) = idx.iter().filter_map(|&i| pages[i]).fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| s / n as f64)
}

/// 95% percentile interval of the mean over seeds of each seed's page mean (of A − B when `b`
/// is given), resampling seeds, then pages within each seed. Fixed generator seed: the same
/// run folders give the same report. `None` without page values.
fn interval(a: &[Pages], b: Option<&[Pages]>) -> Option<[f64; 2]> {
    if a.is_empty() || a.iter().all(|p| p.is_empty()) || b.is_some_and(|b| b.iter().all(|p| p.is_empty())) {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let draw = |rng: &mut StdRng, n: usize| -> Vec<usize> { (0..n).map(|_| rng.random_range(0..n)).collect() };
    let mut stats = Vec::with_capacity(DRAWS);
    for _ in 0..DRAWS {
        let (mut sum, mut k) = (0.0, 0usize);
        for _ in 0..a.len() {
            let s = rng.random_range(0..a.len());
            if a[s].is_empty() {
                continue;
            }
            let idx = draw(&mut rng, a[s].len());
            let v = match b {
                None => mean_at(&a[s], &idx),
                Some(b) if b[s].is_empty() => None,
                Some(b) => {
                    let idx_b = if b[s].len() == a[s].len() { idx.clone() } else { draw(&mut rng, b[s].len()) };
                    mean_at(&a[s], &idx).zip(mean_at(&b[s], &idx_b)).map(|(x, y)| x - y)
                }
            };
            if let Some(v) = v {
                sum += v;
                k += 1;
            }
        }
        if k > 0 {
            stats.push(sum / k as f64);
        }
    }
    if stats.is_empty() {
        return None;
    }
    stats.sort_by(f64::total_cmp);
    let q = |p: f64| stats[((stats.len() - 1) as f64 * p).round() as usize];
    Some([q(0.025), q(0.975)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(v: &[f64]) -> Pages {
        v.iter().map(|x| Some(*x)).collect()
    }

    #[test]
    fn spread_is_mean_min_max_and_an_interval_around_the_mean() {
        let p = [pages(&[0.0, 1.0, 1.0, 0.0]), pages(&[1.0, 1.0, 1.0, 0.0])];
        let s = Spread::of(&[0.5, 0.75], &p).unwrap();
        assert_eq!((s.mean, s.min, s.max, s.seeds), (0.625, 0.5, 0.75, 2));
        let [lo, hi] = s.interval.unwrap();
        assert!(lo < 0.625 && hi > 0.625 && lo >= 0.0 && hi <= 1.0, "{lo} {hi}");
        assert_eq!(Spread::of(&[0.3], &[]).unwrap().interval, None, "no pages, no interval");
        assert_eq!(Spread::of(&[], &[]), None);
    }

    #[test]
    fn pages_that_do_not_count_are_left_out() {
        let s = Spread::of(&[1.0], &[vec![Some(1.0), None, Some(1.0)]]).unwrap();
        assert_eq!(s.interval, Some([1.0, 1.0]));
    }

    /// B is A minus 0.2 on every page of every seed: a paired difference with no noise at all.
    #[test]
    fn a_consistent_difference_is_beyond_noise() {
        let a: Vec<(f64, Pages)> = (0..3).map(|s| (0.5 + s as f64 * 0.1, pages(&[0.4 + s as f64 * 0.1, 0.6 + s as f64 * 0.1]))).collect();
        let b: Vec<(f64, Pages)> = a.iter().map(|(v, p)| (v - 0.2, p.iter().map(|x| x.map(|x| x - 0.2)).collect())).collect();
        let d = Difference::of(&a, &b).unwrap();
        assert!((d.mean - 0.2).abs() < 1e-12 && d.sd < 1e-12, "{d:?}");
        let [lo, hi] = d.interval.unwrap();
        assert!((lo - 0.2).abs() < 1e-9 && (hi - 0.2).abs() < 1e-9, "paired pages: {lo} {hi}");
        assert!(d.beyond_noise);
        assert_eq!((d.higher_on(), d.lower_on()), (3, 0));
    }

    /// Two seeds disagree in sign: within noise, whatever the mean says.
    #[test]
    fn a_difference_that_changes_sign_is_within_noise() {
        let a = vec![(0.6, pages(&[0.6, 0.6])), (0.3, pages(&[0.3, 0.3]))];
        let b = vec![(0.4, pages(&[0.4, 0.4])), (0.4, pages(&[0.4, 0.4]))];
        let d = Difference::of(&a, &b).unwrap();
        assert!(!d.beyond_noise, "{d:?}");
        assert_eq!((d.higher_on(), d.lower_on()), (1, 1));
    }

    /// One page of sixty differs on the one seed: the sign is clear, but the interval over
    /// pages includes zero (a resample misses that page about a third of the time).
    #[test]
    fn a_one_page_difference_is_within_noise() {
        let base: Vec<f64> = (0..60).map(|i| if i % 2 == 0 { 1.0 } else { 0.0 }).collect();
        let mut more = base.clone();
        more[1] = 1.0;
        let d = Difference::of(&[(31.0 / 60.0, pages(&more))], &[(0.5, pages(&base))]).unwrap();
        assert_eq!(d.higher_on(), 1);
        assert_eq!(d.interval.unwrap()[0], 0.0);
        assert!(!d.beyond_noise, "{d:?}");
    }
}
