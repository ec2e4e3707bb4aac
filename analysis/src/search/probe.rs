//! Values of terms on a probe set of images: how the enumerator tells equivalent terms apart
//! without compiling them. A term of type `[]`, `[k]`, `[h,w]` or `[k,h,w]` holds, per probe
//! image, 1, `channels`, `spatial` or `channels·spatial` values. Reductions are the interpreter's
//! ([`reduce_group`]: f64 accumulation, NaN-propagating max/min, population std).

use super::term::{Term, TermId, TermOp, SAFE_DIV_EPS};
use camc_compiler::axes::{Axis, AxisSet};
use camc_compiler::dims::{offset, Dims};
use camc_compiler::ops::{BinaryOp, ReduceOp};
use camc_runtime::interp::reduce_group;

/// Terminal tensors on some images and channels.
pub struct Probe {
    pub images: usize,
    pub channels: usize,
    pub spatial: usize,
    /// Per terminal: its type and values (laid out as described above).
    pub terminals: Vec<(AxisSet, Vec<f32>)>,
}

impl Probe {
    /// The probe's sizes: its channels, and its positions as one `w` axis (`h` = 1).
    fn dims(&self) -> Dims {
        Dims::new(self.channels, 1, 1, self.spatial)
    }

    /// Values per image of a term of type `ty`.
    pub fn len(&self, ty: AxisSet) -> usize {
        self.dims().len(ty)
    }

    /// Where image `p`, channel `c`, position `s` of a value of type `ty` lies: `at(p, c, s)`.
    fn indexer(&self, ty: AxisSet) -> impl Fn(usize, usize, usize) -> usize {
        let dims = self.dims();
        let (per_image, strides) = (dims.len(ty), dims.strides(ty));
        move |p, c, s| p * per_image + offset(&strides, &[0, c, 0, 0, s])
    }

    pub fn binary(&self, op: BinaryOp, ta: AxisSet, a: &[f32], tb: AxisSet, b: &[f32]) -> Vec<f32> {
        let ty = ta.union(tb);
        let channels = if ty.contains(Axis::K) { self.channels } else { 1 };
        let spatial = if ty.contains(Axis::H) { self.spatial } else { 1 };
        let mut out = Vec::with_capacity(self.images * channels * spatial);
        let (at_a, at_b) = (self.indexer(ta), self.indexer(tb));
        for p in 0..self.images {
            for c in 0..channels {
                for s in 0..spatial {
                    out.push(op.apply(a[at_a(p, c, s)], b[at_b(p, c, s)]));
                }
            }
        }
        out
    }

    /// A `[k,h,w]` value reduced over `[h,w]`.
    pub fn reduce(&self, op: ReduceOp, x: &[f32]) -> Vec<f32> {
        let mut widened = Vec::with_capacity(self.spatial);
        x.chunks(self.spatial)
            .map(|group| {
                widened.clear();
                widened.extend(group.iter().map(|&v| v as f64));
                reduce_group(&widened, op)
            })
            .collect()
    }

    /// A term's values, computed from its operands' (`values` holds them by id).
    pub fn eval(&self, term: &Term, terms: &[Term], values: &dyn Fn(TermId) -> Vec<f32>) -> Vec<f32> {
        match term.op {
            TermOp::Tensor(i) => self.terminals[i as usize].1.clone(),
            TermOp::Const(c) => vec![c; self.images],
            TermOp::Unary(op, x) => values(x).into_iter().map(|v| op.apply(v)).collect(),
            TermOp::Binary(op, a, b) => {
                let (ta, tb) = (terms[a as usize].ty, terms[b as usize].ty);
                self.binary(op, ta, &values(a), tb, &values(b))
            }
            TermOp::Reduce(op, x) => self.reduce(op, &values(x)),
            TermOp::SafeDiv(a, b) => {
                let (ta, tb) = (terms[a as usize].ty, terms[b as usize].ty);
                let guarded: Vec<f32> = values(b).iter().map(|v| v + SAFE_DIV_EPS).collect();
                self.binary(BinaryOp::Div, ta, &values(a), tb, &guarded)
            }
        }
    }

    /// A term's values computed from scratch (for a probe that keeps no table of terms).
    pub fn eval_tree(&self, terms: &[Term], id: TermId) -> Vec<f32> {
        self.eval(&terms[id as usize], terms, &|child| self.eval_tree(terms, child))
    }

    /// `relu(sum[k](weights * A))` per probe image, `A` being terminal `a`: the map a
    /// candidate produces, `images × spatial` values.
    pub fn map(&self, weights_ty: AxisSet, weights: &[f32], a: usize) -> Vec<f32> {
        let (ta, values) = &self.terminals[a];
        let (at_weights, at_a) = (self.indexer(weights_ty), self.indexer(*ta));
        let mut out = vec![0.0f64; self.images * self.spatial];
        for p in 0..self.images {
            for c in 0..self.channels {
                for s in 0..self.spatial {
                    let w = weights[at_weights(p, c, s)] as f64;
                    out[p * self.spatial + s] += w * values[at_a(p, c, s)] as f64;
                }
            }
        }
        out.into_iter().map(|v| (v as f32).max(0.0)).collect()
    }
}

/// A fingerprint of values that ignores differences below ~1e-4 relative: terms with the same
/// fingerprint are taken to be the same function.
pub fn fingerprint(values: &[f32]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for &v in values {
        let bits = if v.is_nan() {
            u32::MAX
        } else if v == 0.0 {
            0
        } else {
            // Keep sign, exponent and the top 10 mantissa bits (rounded).
            (v.to_bits().wrapping_add(1 << 12)) & !((1 << 13) - 1)
        };
        bits.hash(&mut hasher);
    }
    values.len().hash(&mut hasher);
    hasher.finish()
}

/// The fingerprint of a map up to a positive scale and shift: min-max normalized first, as
/// post-processing does.
pub fn map_fingerprint(map: &[f32], spatial: usize) -> u64 {
    let mut normalized = Vec::with_capacity(map.len());
    for image in map.chunks(spatial) {
        let min = image.iter().copied().fold(f32::INFINITY, f32::min);
        let max = image.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let range = max - min;
        normalized.extend(
            image
                .iter()
                .map(|v| if range > 0.0 { (v - min) / range } else { 0.0 }),
        );
    }
    fingerprint(&normalized)
}
