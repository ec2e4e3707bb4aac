//! Values of terms on a set of images: how the enumerator tells equivalent terms apart
//! without compiling them, and how the batched evaluation computes every candidate's map. A
//! term of type `[]`, `[k]`, `[h,w]` or `[k,h,w]` holds, per image, 1, `channels`, `spatial` or
//! `channels·spatial` values. The arithmetic is the interpreter's: elementwise operations in
//! f32 ([`BinaryOp::apply`]), reductions by [`reduce_group`] (f64 accumulation, NaN-propagating
//! max/min, population std).

use super::term::{Term, TermId, TermOp, SAFE_DIV_EPS};
use camc_compiler::axes::{Axis, AxisSet};
use camc_compiler::ops::{BinaryOp, ReduceOp, UnaryOp};
use camc_runtime::interp::reduce_group;
use multiversion::multiversion;
use std::borrow::Cow;

/// Terminal tensors on some images and channels.
pub struct Probe {
    pub images: usize,
    pub channels: usize,
    pub spatial: usize,
    /// Per terminal: its type and values (laid out as described above).
    pub terminals: Vec<(AxisSet, Vec<f32>)>,
    /// The constant `/+` adds to its divisor: [`SAFE_DIV_EPS`], or a multiple of it when the
    /// search checks how much a map depends on it.
    pub guard: f32,
}

/// The operands of a term's evaluation, by id: borrowed from a table, or computed.
pub type Operands<'v> = &'v dyn Fn(TermId) -> Cow<'v, [f32]>;

impl Probe {
    pub fn new(images: usize, channels: usize, spatial: usize, terminals: Vec<(AxisSet, Vec<f32>)>) -> Probe {
        Probe {
            images,
            channels,
            spatial,
            terminals,
            guard: SAFE_DIV_EPS,
        }
    }

    /// Image `p` alone, as a probe of one image.
    pub fn image(&self, p: usize) -> Probe {
        let terminals = self
            .terminals
            .iter()
            .map(|(ty, values)| {
                let len = self.len(*ty);
                (*ty, values[p * len..(p + 1) * len].to_vec())
            })
            .collect();
        Probe {
            guard: self.guard,
            ..Probe::new(1, self.channels, self.spatial, terminals)
        }
    }

    /// Values per image of a term of type `ty`.
    pub fn len(&self, ty: AxisSet) -> usize {
        self.channels_of(ty) * self.spatial_of(ty)
    }

    fn channels_of(&self, ty: AxisSet) -> usize {
        if ty.contains(Axis::K) {
            self.channels
        } else {
            1
        }
    }

    fn spatial_of(&self, ty: AxisSet) -> usize {
        if ty.contains(Axis::H) {
            self.spatial
        } else {
            1
        }
    }

    /// The values of image `p`, channel `c` of a value of type `ty`: `spatial` of them, or one
    /// when the type has no positions.
    fn row<'x>(&self, ty: AxisSet, x: &'x [f32], p: usize, c: usize) -> &'x [f32] {
        let (channels, spatial) = (self.channels_of(ty), self.spatial_of(ty));
        let c = if channels == 1 { 0 } else { c };
        &x[(p * channels + c) * spatial..][..spatial]
    }

    /// `op` elementwise over `a` and `b` (broadcast to the union of their types), into `out`.
    fn binary(
        &self,
        op: BinaryOp,
        (ta, a): (AxisSet, &[f32]),
        (tb, b): (AxisSet, &[f32]),
        out: &mut Vec<f32>,
    ) {
        // One loop per common operator, so that the operator's `match` leaves the inner loop.
        match op {
            BinaryOp::Add => self.broadcast((ta, a), (tb, b), out, |x, y| BinaryOp::Add.apply(x, y)),
            BinaryOp::Sub => self.broadcast((ta, a), (tb, b), out, |x, y| BinaryOp::Sub.apply(x, y)),
            BinaryOp::Mul => self.broadcast((ta, a), (tb, b), out, |x, y| BinaryOp::Mul.apply(x, y)),
            BinaryOp::Div => self.broadcast((ta, a), (tb, b), out, |x, y| BinaryOp::Div.apply(x, y)),
            other => self.broadcast((ta, a), (tb, b), out, |x, y| other.apply(x, y)),
        }
    }

    /// `f` elementwise over `a` and `b`, each broadcast to the union of their types, appended
    /// to `out`.
    fn broadcast(
        &self,
        (ta, a): (AxisSet, &[f32]),
        (tb, b): (AxisSet, &[f32]),
        out: &mut Vec<f32>,
        f: impl Fn(f32, f32) -> f32,
    ) {
        let ty = ta.union(tb);
        let (channels, spatial) = (self.channels_of(ty), self.spatial_of(ty));
        let start = out.len();
        out.resize(start + self.images * channels * spatial, 0.0);
        // Written in place rather than pushed, so that the loops vectorize.
        let mut rows = out[start..].chunks_mut(spatial);
        for p in 0..self.images {
            for c in 0..channels {
                let Some(target) = rows.next() else {
                    return;
                };
                match (self.row(ta, a, p, c), self.row(tb, b, p, c)) {
                    (&[x], ys) if ys.len() == spatial => {
                        target.iter_mut().zip(ys).for_each(|(t, &y)| *t = f(x, y))
                    }
                    (xs, &[y]) => target.iter_mut().zip(xs).for_each(|(t, &x)| *t = f(x, y)),
                    (xs, ys) => target
                        .iter_mut()
                        .zip(xs.iter().zip(ys))
                        .for_each(|(t, (&x, &y))| *t = f(x, y)),
                }
            }
        }
    }

    /// A `[k,h,w]` value reduced over `[h,w]`, appended to `out`.
    fn reduce(&self, op: ReduceOp, x: &[f32], out: &mut Vec<f32>) {
        let mut widened = Vec::with_capacity(self.spatial);
        out.extend(x.chunks(self.spatial).map(|group| {
            widened.clear();
            widened.extend(group.iter().map(|&v| v as f64));
            reduce_group(&widened, op)
        }));
    }

    /// A term's values, computed from its operands' (`values` gives them by id).
    pub fn eval<'v>(&self, term: &Term, terms: &[Term], values: Operands<'v>) -> Vec<f32> {
        let mut out = Vec::new();
        self.eval_into(term, terms, values, &mut out);
        out
    }

    /// [`Probe::eval`] into `out` (cleared first), so that a caller can reuse buffers.
    pub fn eval_into<'v>(&self, term: &Term, terms: &[Term], values: Operands<'v>, out: &mut Vec<f32>) {
        out.clear();
        let typed = |id: TermId| (terms[id as usize].ty, values(id));
        match term.op {
            TermOp::Tensor(i) => out.extend_from_slice(&self.terminals[i as usize].1),
            TermOp::Const(c) => out.resize(self.images, c),
            TermOp::Unary(op, x) => unary(op, &values(x), out),
            TermOp::Binary(op, a, b) => {
                let ((ta, a), (tb, b)) = (typed(a), typed(b));
                self.binary(op, (ta, &a), (tb, &b), out)
            }
            TermOp::Reduce(op, x) => self.reduce(op, &values(x), out),
            TermOp::SafeDiv(a, b) => {
                let ((ta, a), (tb, b)) = (typed(a), typed(b));
                // `b + guard` rounded to f32, then the division: as `a / (b + guard)` computes.
                let guard = self.guard;
                self.broadcast((ta, &a), (tb, &b), out, |x, y| BinaryOp::Div.apply(x, y + guard))
            }
        }
    }

    /// A term's values computed from scratch (for a probe that keeps no table of terms).
    pub fn eval_tree(&self, terms: &[Term], id: TermId) -> Vec<f32> {
        self.eval(&terms[id as usize], terms, &|child| {
            Cow::Owned(self.eval_tree(terms, child))
        })
    }

    /// `relu(sum[k](weights * A))` per image, `A` being terminal `a`: the map a candidate
    /// produces, `images × spatial` values, computed as the interpreter does (the product in
    /// f32, the sum over channels in f64, in channel order).
    pub fn map(&self, weights_ty: AxisSet, weights: &[f32], a: usize) -> Vec<f32> {
        let (ta, values) = &self.terminals[a];
        let mut out = Vec::with_capacity(self.images * self.spatial);
        let mut sums = vec![0.0f64; self.spatial];
        for p in 0..self.images {
            sums.fill(0.0);
            for c in 0..self.channels {
                let (w, x) = (self.row(weights_ty, weights, p, c), self.row(*ta, values, p, c));
                accumulate_products(&mut sums, w, x);
            }
            out.extend(sums.iter().map(|&s| UnaryOp::Relu.apply(s as f32)));
        }
        out
    }
}

/// `op` on each of `x`, into `out`: one loop per operator, so that the operator's `match`
/// leaves the loop (and the cheap ones vectorize).
fn unary(op: UnaryOp, x: &[f32], out: &mut Vec<f32>) {
    fn each(x: &[f32], out: &mut Vec<f32>, f: impl Fn(f32) -> f32) {
        out.resize(x.len(), 0.0);
        out.iter_mut().zip(x).for_each(|(o, &v)| *o = f(v));
    }
    match op {
        UnaryOp::Neg => each(x, out, |v| UnaryOp::Neg.apply(v)),
        UnaryOp::Relu => each(x, out, |v| UnaryOp::Relu.apply(v)),
        UnaryOp::Abs => each(x, out, |v| UnaryOp::Abs.apply(v)),
        UnaryOp::Sign => each(x, out, |v| UnaryOp::Sign.apply(v)),
        UnaryOp::Exp => each(x, out, |v| UnaryOp::Exp.apply(v)),
        UnaryOp::Log => each(x, out, |v| UnaryOp::Log.apply(v)),
        UnaryOp::Sqrt => each(x, out, |v| UnaryOp::Sqrt.apply(v)),
        UnaryOp::Sigmoid => each(x, out, |v| UnaryOp::Sigmoid.apply(v)),
        UnaryOp::Tanh => each(x, out, |v| UnaryOp::Tanh.apply(v)),
    }
}

/// `sums[s] += w[s] · x[s]` (a single `w` for every `s`), the product in f32 and the sum in
/// f64 as the interpreter computes them. Compiled for AVX-512 and AVX2 too, chosen at run
/// time: the batched search spends a tenth of its time here; every version gives the same bits.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx512dq+avx2+avx+sse4.2+sse4.1+ssse3+sse3",
    "x86_64+avx2+avx+sse4.2+sse4.1+ssse3+sse3"
))]
fn accumulate_products(sums: &mut [f64], w: &[f32], x: &[f32]) {
    match w {
        &[w] => sums.iter_mut().zip(x).for_each(|(s, &x)| *s += f64::from(w * x)),
        _ => sums
            .iter_mut()
            .zip(w.iter().zip(x))
            .for_each(|(s, (&w, &x))| *s += f64::from(w * x)),
    }
}

/// A fingerprint of values that ignores differences below ~1e-4 relative: terms with the same
/// fingerprint are taken to be the same function.
pub fn fingerprint(values: &[f32]) -> u64 {
    // A multiply-rotate hash over the rounded bits: collisions are as rare as with SipHash for
    // this use (no adversary), at a fraction of the cost (the enumerator hashes every term).
    let mut hash = (values.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for &v in values {
        let bits = if v.is_nan() {
            u32::MAX
        } else if v == 0.0 {
            0
        } else {
            // Keep sign, exponent and the top 10 mantissa bits (rounded).
            (v.to_bits().wrapping_add(1 << 12)) & !((1 << 13) - 1)
        };
        hash = (hash ^ u64::from(bits))
            .wrapping_mul(0xBF58_476D_1CE4_E5B9)
            .rotate_left(29);
    }
    hash ^ (hash >> 31)
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
