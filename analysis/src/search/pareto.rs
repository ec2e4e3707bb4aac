//! The Pareto front of two metrics (`camc search --pareto A,B`, docs/search.md): the
//! evaluated candidates that no other candidate beats on both metrics' training values.

use super::driver::Scored;
use crate::metrics::Better;

/// Whether `a` dominates `b`: at least as good on every metric and better on one, each metric
/// in its own direction. A candidate without a value on some metric dominates nothing and is
/// dominated by everything that has all values.
pub fn dominates(a: &[f64], b: &[f64], better: &[Better]) -> bool {
    let mut strictly = false;
    for ((&x, &y), direction) in a.iter().zip(b).zip(better) {
        let (x, y) = match direction {
            Better::Higher => (x, y),
            Better::Lower => (-x, -y),
        };
        if x < y {
            return false;
        }
        strictly |= x > y;
    }
    strictly
}

/// The training values of a candidate's Pareto metrics, when it has them all.
fn train_values(s: &Scored, metrics: usize) -> Option<Vec<f64>> {
    let values: Vec<f64> = s.pareto.iter().filter_map(|(train, _)| *train).collect();
    (values.len() == metrics && metrics > 0).then_some(values)
}

/// The non-dominated candidates of `scored`, best first on the first metric (ties: smaller,
/// then earlier). Of candidates with equal values only the first (smallest, earliest) is
/// kept: equal values are almost always the same map.
pub fn front(scored: &[Scored], better: &[Better]) -> Vec<Scored> {
    let with_values: Vec<(&Scored, Vec<f64>)> = scored
        .iter()
        .filter_map(|s| train_values(s, better.len()).map(|v| (s, v)))
        .collect();
    let mut front: Vec<(&Scored, &Vec<f64>)> = Vec::new();
    for (i, (s, v)) in with_values.iter().enumerate() {
        let beaten = with_values.iter().any(|(_, w)| dominates(w, v, better));
        let repeated = with_values[..i]
            .iter()
            .any(|(earlier, w)| w == v && (earlier.size, 0) <= (s.size, 1))
            || with_values[i + 1..]
                .iter()
                .any(|(later, w)| w == v && later.size < s.size);
        if !beaten && !repeated {
            front.push((s, v));
        }
    }
    front.sort_by(|(a, va), (b, vb)| {
        let key = |v: &Vec<f64>| match better[0] {
            Better::Higher => -v[0],
            Better::Lower => v[0],
        };
        key(va).total_cmp(&key(vb)).then(a.size.cmp(&b.size))
    });
    front.into_iter().map(|(s, _)| s.clone()).collect()
}
