//! Bottom-up, type-directed enumeration of WEIGHTS terms by size, with pruning: constants are
//! leaves only (no constant expressions), commutative operands in one order, terms whose probe
//! values are not finite anywhere dropped, and terms equal on the probe set to an earlier
//! (smaller) term dropped (observational equivalence). A term of type `[k]`, `[h,w]` or `[k,h,w]` is a
//! candidate unless its map `relu(sum[k](WEIGHTS * A))` equals an earlier candidate's on the
//! full-channel probe images up to a positive scale.

use super::probe::{fingerprint, map_fingerprint, Probe};
use super::space::Space;
use super::term::{hw, khw, Term, TermId, TermOp};
use camc_compiler::axes::{Axis, AxisSet};
use std::borrow::Cow;
use std::collections::HashSet;

/// How many terms each pruning stage removed.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PruneStats {
    /// Terms built (well-typed by construction).
    pub built: u64,
    /// Dropped by syntactic rules before evaluation (constant subterms, operand order).
    pub syntactic: u64,
    /// Dropped because the probe values were all non-finite, or not finite anywhere.
    pub non_finite: u64,
    /// Dropped as equal to an earlier term on the probe set.
    pub equivalent: u64,
    /// Candidates dropped as giving the same map as an earlier one, up to positive scale.
    pub same_map: u64,
    /// Candidates kept, in order.
    pub candidates: u64,
}

pub struct Enumerator<'p> {
    pub space: Space,
    /// Few channels, for pruning terms.
    small: &'p Probe,
    /// Every channel of a few images, for comparing candidates' maps.
    full: &'p Probe,
    /// Index of the terminal `A` (the activations the weights multiply).
    a: usize,
    pub terms: Vec<Term>,
    values: Vec<Vec<f32>>,
    by_size: Vec<Vec<TermId>>,
    seen: HashSet<u64>,
    seen_maps: HashSet<u64>,
    pub stats: PruneStats,
    /// Candidates in enumeration order.
    pub candidates: Vec<TermId>,
    /// Seconds spent comparing candidates' maps (the "same map" pruning).
    pub same_map_seconds: f64,
}

/// The types a term may have: `[]`, `[k]`, `[h,w]` (a per-position terminal such as Recipro-CAM's
/// cached scores, and what it combines with scalars) and `[k,h,w]`.
fn allowed(ty: AxisSet) -> bool {
    ty.is_scalar() || ty == AxisSet::of(&[Axis::K]) || ty == hw() || ty == khw()
}

impl<'p> Enumerator<'p> {
    pub fn new(space: Space, small: &'p Probe, full: &'p Probe, a: usize) -> Enumerator<'p> {
        Enumerator {
            space,
            small,
            full,
            a,
            terms: Vec::new(),
            values: Vec::new(),
            by_size: vec![Vec::new()],
            seen: HashSet::new(),
            seen_maps: HashSet::new(),
            stats: PruneStats::default(),
            candidates: Vec::new(),
            same_map_seconds: 0.0,
        }
    }

    fn is_constant(&self, id: TermId) -> bool {
        matches!(self.terms[id as usize].op, TermOp::Const(_))
    }

    /// Evaluates a new term on the probe and keeps it unless pruned.
    fn offer(&mut self, op: TermOp, ty: AxisSet, size: u32) {
        self.stats.built += 1;
        let term = Term { op, ty, size };
        let values = {
            let values = &self.values;
            self.small
                .eval(&term, &self.terms, &|id| Cow::Borrowed(&values[id as usize]))
        };
        let constant = matches!(op, TermOp::Const(_));
        if !constant && !values.iter().any(|v| v.is_finite()) {
            self.stats.non_finite += 1;
            return;
        }
        if !self.seen.insert(fingerprint(&values) ^ (ty_code(ty) << 60)) {
            self.stats.equivalent += 1;
            return;
        }
        let id = self.terms.len() as TermId;
        self.terms.push(term);
        self.values.push(values);
        self.by_size[size as usize].push(id);
        if !constant && !ty.is_scalar() {
            self.consider_candidate(id);
        }
    }

    /// The fingerprint of a WEIGHTS term's map on the full probe (up to positive scale).
    pub fn map_of(&self, terms: &[Term], id: TermId) -> Option<u64> {
        let weights = self.full.eval_tree(terms, id);
        let map = self.full.map(terms[id as usize].ty, &weights, self.a);
        map.iter()
            .all(|v| v.is_finite())
            .then(|| map_fingerprint(&map, self.full.spatial))
    }

    /// The position among the candidates of one whose map equals `fingerprint`'s.
    pub fn position_of_map(&self, fingerprint: u64) -> Option<usize> {
        self.candidates
            .iter()
            .position(|&c| self.map_of(&self.terms, c) == Some(fingerprint))
    }

    fn consider_candidate(&mut self, id: TermId) {
        let began = std::time::Instant::now();
        self.compare_map(id);
        self.same_map_seconds += began.elapsed().as_secs_f64();
    }

    fn compare_map(&mut self, id: TermId) {
        let ty = self.terms[id as usize].ty;
        let weights = self.full.eval_tree(&self.terms, id);
        let map = self.full.map(ty, &weights, self.a);
        if !map.iter().all(|v| v.is_finite())
            || !self.seen_maps.insert(map_fingerprint(&map, self.full.spatial))
        {
            self.stats.same_map += 1;
            return;
        }
        self.stats.candidates += 1;
        self.candidates.push(id);
    }

    /// Builds every term of `size` (all smaller sizes must be done).
    pub fn grow(&mut self, size: usize) {
        self.by_size.resize(size + 1, Vec::new());
        if size == 1 {
            for (i, (ty, _)) in self.small.terminals.iter().enumerate() {
                if allowed(*ty) {
                    self.offer(TermOp::Tensor(i as u32), *ty, 1);
                }
            }
            for c in self.space.constants.clone() {
                self.offer(TermOp::Const(c), AxisSet::SCALAR, 1);
            }
            return;
        }
        let space = self.space.clone();
        for x in self.by_size[size - 1].clone() {
            if self.is_constant(x) {
                self.stats.syntactic += 1;
                continue;
            }
            let ty = self.terms[x as usize].ty;
            for &op in &space.unary {
                self.offer(TermOp::Unary(op, x), ty, size as u32);
            }
            if ty == khw() {
                for &op in &space.reductions {
                    self.offer(TermOp::Reduce(op, x), AxisSet::of(&[Axis::K]), size as u32);
                }
            }
        }
        for left in 1..size - 1 {
            let right = size - 1 - left;
            for a in self.by_size[left].clone() {
                for b in self.by_size[right].clone() {
                    self.combine(a, b, &space, size);
                }
            }
        }
    }

    fn combine(&mut self, a: TermId, b: TermId, space: &Space, size: usize) {
        if self.is_constant(a) && self.is_constant(b) {
            self.stats.syntactic += space.binary.len() as u64;
            return;
        }
        let ty = self.terms[a as usize].ty.union(self.terms[b as usize].ty);
        if !allowed(ty) {
            return;
        }
        let (size_a, size_b) = (self.terms[a as usize].size, self.terms[b as usize].size);
        for &op in &space.binary {
            // One order for commutative operators: smaller size first, then smaller id.
            if op.is_commutative() && (size_a, a) > (size_b, b) {
                self.stats.syntactic += 1;
                continue;
            }
            self.offer(TermOp::Binary(op, a, b), ty, size as u32);
        }
        if space.safe_div {
            self.offer(TermOp::SafeDiv(a, b), ty, size as u32);
        }
    }
}

fn ty_code(ty: AxisSet) -> u64 {
    (ty.contains(Axis::K) as u64) | ((ty.contains(Axis::H) as u64) << 1)
}
