//! Winners a user can trust (docs/search.md): before the top ranks are reported, each is
//! checked, best first, against two failures a metric alone cannot see. A candidate is dropped
//! (and listed with the reason) when
//! - its maps equal a better rank's: after post-processing, no pixel of a training image
//!   differs by more than [`SAME_MAP_TOLERANCE`];
//! - it lives on the guard of `/+`: recomputed with the guard ×100 and ÷100, some pixel of a
//!   training image moves by more than [`GUARD_THRESHOLD`].
//!
//! Maps come from the batched evaluator ([`super::batch::Chunk::maps`]), whatever evaluated
//! the scores.

use super::batch::Chunk;
use super::driver::{Scored, Search};
use super::term::{Term, TermId, TermOp, SAFE_DIV_EPS};
use camc_compiler::axes::AxisSet;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Two candidates whose post-processed maps differ by at most this on every training pixel
/// draw the same map.
pub const SAME_MAP_TOLERANCE: f32 = 1e-4;

/// A candidate whose post-processed maps move by more than this on some training pixel when
/// the guard of `/+` is multiplied or divided by [`GUARD_FACTOR`] depends on the guard, not on
/// the tensors.
pub const GUARD_THRESHOLD: f32 = 0.05;

/// How far the guard is moved each way.
pub const GUARD_FACTOR: f32 = 100.0;

/// A top candidate left out of the ranking, and why.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Dropped {
    pub weights: String,
    pub train: Option<f64>,
    /// `same_map` or `guard`.
    pub reason: String,
    /// For `same_map`: the kept program it duplicates. For `guard`: how far its maps moved.
    pub detail: String,
}

/// What vetting needs about the enumeration.
pub struct Vetting<'v> {
    pub search: &'v Search<'v>,
    pub terms: &'v [Term],
    /// Each evaluated candidate's term, by its printed weights.
    pub ids: HashMap<String, TermId>,
    pub types: &'v [AxisSet],
    pub is_train: &'v [bool],
}

impl Vetting<'_> {
    /// `ranked` (best first) with the dropped candidates taken out: walks the ranking until
    /// `keep` candidates pass (those after are not checked), and returns what it dropped.
    pub fn vet(&self, ranked: Vec<Scored>, keep: usize) -> Result<(Vec<Scored>, Vec<Dropped>), String> {
        let mut kept_maps: Vec<(String, Vec<f32>)> = Vec::new();
        let mut dropped = Vec::new();
        let mut out = Vec::with_capacity(ranked.len());
        let mut ranked = ranked.into_iter();
        while kept_maps.len() < keep {
            let Some(candidate) = ranked.next() else {
                break;
            };
            let Some(&id) = self.ids.get(&candidate.weights) else {
                out.push(candidate);
                continue;
            };
            let maps = self.train_maps(id, SAFE_DIV_EPS)?;
            if let Some(moved) = self.guard_movement(id, &maps)? {
                dropped.push(Dropped {
                    weights: candidate.weights,
                    train: candidate.train,
                    reason: "guard".into(),
                    detail: format!(
                        "maps move by up to {moved:.3} with the guard ×{GUARD_FACTOR} or ÷{GUARD_FACTOR}"
                    ),
                });
                continue;
            }
            let same = kept_maps
                .iter()
                .find(|(_, other)| max_difference(other, &maps) <= SAME_MAP_TOLERANCE);
            if let Some((other, _)) = same {
                dropped.push(Dropped {
                    weights: candidate.weights,
                    train: candidate.train,
                    reason: "same_map".into(),
                    detail: other.clone(),
                });
                continue;
            }
            kept_maps.push((candidate.weights.clone(), maps));
            out.push(candidate);
        }
        out.extend(ranked);
        Ok((out, dropped))
    }

    /// How far the candidate's maps move with the guard moved each way, when that is more than
    /// [`GUARD_THRESHOLD`]; `None` for a candidate without `/+` or one that stays.
    fn guard_movement(&self, id: TermId, maps: &[f32]) -> Result<Option<f32>, String> {
        if !uses_guard(self.terms, id) {
            return Ok(None);
        }
        let mut moved = 0.0f32;
        for guard in [SAFE_DIV_EPS * GUARD_FACTOR, SAFE_DIV_EPS / GUARD_FACTOR] {
            moved = moved.max(max_difference(maps, &self.train_maps(id, guard)?));
        }
        Ok((moved > GUARD_THRESHOLD).then_some(moved))
    }

    /// The candidate's post-processed maps on the training images, with guard `guard`.
    fn train_maps(&self, id: TermId, guard: f32) -> Result<Vec<f32>, String> {
        let n = self.search.cache.images().map_err(|e| e.to_string())?;
        let chunk = Chunk {
            search: self.search,
            terms: self.terms,
            ids: &[id],
            types: self.types,
            guard,
        };
        let all = chunk.maps(0..n)?.pop().unwrap_or_default();
        let map_len = all.len() / n.max(1);
        Ok(all
            .chunks(map_len.max(1))
            .zip(self.is_train)
            .filter(|(_, &train)| train)
            .flat_map(|(map, _)| map.iter().copied())
            .collect())
    }
}

/// Whether a term divides with the guard anywhere.
fn uses_guard(terms: &[Term], id: TermId) -> bool {
    match terms[id as usize].op {
        TermOp::SafeDiv(..) => true,
        TermOp::Tensor(_) | TermOp::Const(_) => false,
        TermOp::Unary(_, x) | TermOp::Reduce(_, x) => uses_guard(terms, x),
        TermOp::Binary(_, a, b) => uses_guard(terms, a) || uses_guard(terms, b),
    }
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
