//! The post-processing of a function lowered with an output size (docs/run.md): the
//! program's `[h,w]` map, which the stages wrote to scratch, is sanitized (non-finite values set
//! to 0 and counted), min-maxed, resized bilinearly along w and then along h, and min-maxed again
//! into `out`. The values are those of the runtime's `Post::apply`: the same f32 operations on
//! the same values, four lanes at a time where the data is contiguous. One liberty is taken
//! with its order, and it does not change a bit: a min-max's maximum is taken before the
//! minimum is subtracted, as `max(x - min) = max(x) - min` in floating point too (rounding is
//! monotonic), so each min-max is one pass that finds both and one that scales, and the second
//! finds them while the resize writes. The resize taps (`crate::resize`) are constants of the
//! function, kept in a data object ([`super::DataObject`]).

use super::emit::Cx;
use super::nest::Mode;
use crate::ops::NORMALIZE_EPS;
use crate::resize::{taps, Tap};
use cranelift_codegen::ir::{condcodes::FloatCC, types, InstBuilder, MemFlagsData, Value};

/// Bytes of one tap in the table: the two source byte offsets (i32) and `t`, `1 - t` (f32).
const TAP_BYTES: usize = 16;

/// Resizing a `from` map to `to` (both `[h, w]`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Scale {
    pub from: [usize; 2],
    pub to: [usize; 2],
    /// Whether the function also writes the sanitized map at feature resolution (a second
    /// output, the fourth parameter).
    pub keep_raw: bool,
}

impl Scale {
    /// The tap table: the taps along w (source offsets in bytes within a row of the map), then
    /// the taps along h (source offsets in bytes within the buffer of rows resized along w).
    pub fn table(&self) -> Vec<u8> {
        let ([h, w], [oh, ow]) = (self.from, self.to);
        let mut bytes = Vec::with_capacity((ow + oh) * TAP_BYTES);
        let mut push = |tap: Tap, stride: usize| {
            for offset in [tap.low * stride * 4, tap.high * stride * 4] {
                let offset = i32::try_from(offset).expect("sizes are checked before lowering");
                bytes.extend_from_slice(&offset.to_le_bytes());
            }
            for weight in [tap.t, 1.0 - tap.t] {
                bytes.extend_from_slice(&weight.to_le_bytes());
            }
        };
        taps(w, ow).into_iter().for_each(|tap| push(tap, 1));
        taps(h, oh).into_iter().for_each(|tap| push(tap, ow));
        bytes
    }

    /// Scratch bytes the epilogue needs past the stages': the map, then the rows resized along w.
    pub fn scratch_bytes(&self) -> usize {
        let ([h, w], [_, ow]) = (self.from, self.to);
        (h * w * 4).next_multiple_of(16) + (h * ow * 4).next_multiple_of(16)
    }
}

/// Where the epilogue reads and writes.
pub(super) struct Buffers {
    /// The program's map (`h·w` values), sanitized in place.
    pub map: Value,
    /// `h·ow` values: the map resized along w.
    pub rows: Value,
    pub out: Value,
    /// Where the sanitized map is copied before the min-max, when the function keeps it.
    pub raw: Option<Value>,
    pub taps: Value,
}

impl Cx<'_, '_> {
    /// Emits the post-processing; returns the number of non-finite values (i64).
    pub(super) fn post_process(&mut self, scale: Scale, at: Buffers) -> Value {
        let ([h, w], [oh, ow]) = (scale.from, scale.to);
        let (extremes, bad) = self.sanitize(at.map, h * w);
        if let Some(raw) = at.raw {
            self.copy(at.map, raw, h * w);
        }
        // After sanitizing, the minimum is finite: no check needed.
        self.normalize(at.map, h * w, extremes);
        let rows = if w == ow {
            at.map
        } else {
            self.resize_rows(&at, h, w, ow);
            at.rows
        };
        let extremes = if h == oh {
            self.copy(rows, at.out, oh * ow)
        } else {
            self.resize_columns(rows, at.out, at.taps, oh, ow)
        };
        // `Post::apply` leaves a map whose minimum is not finite (all NaN) as it is.
        let magnitude = self.b.ins().fabs(extremes[0]);
        let infinity = self.b.ins().f32const(f32::INFINITY);
        let finite = self.b.ins().fcmp(FloatCC::LessThan, magnitude, infinity);
        let (scale, done) = (self.b.create_block(), self.b.create_block());
        self.b.ins().brif(finite, scale, &[], done, &[]);
        self.b.switch_to_block(scale);
        self.normalize(at.out, oh * ow, extremes);
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(done);
        bad
    }

    /// `for i in 0..len`, four lanes at a time and then a scalar tail: `body(mode, i, carried)`.
    /// The vector loop's carried values are `vector`, the tail's start from `between(vector)`.
    fn lanes(
        &mut self,
        len: usize,
        vector: Vec<Value>,
        between: impl FnOnce(&mut Self, Vec<Value>) -> Vec<Value>,
        mut body: impl FnMut(&mut Self, Mode, Value, Vec<Value>) -> Vec<Value>,
    ) -> Vec<Value> {
        let vectors = len / 4 * 4;
        let carried = self.counted(0, vectors, 4, vector, |cx, i, c| body(cx, Mode::Vector, i, c));
        let carried = between(self, carried);
        self.counted(vectors, len, 1, carried, |cx, i, c| body(cx, Mode::Scalar, i, c))
    }

    /// The starting minimum and maximum, four lanes each.
    fn no_extremes(&mut self) -> Vec<Value> {
        vec![
            self.fconst(Mode::Vector, f32::INFINITY),
            self.fconst(Mode::Vector, f32::NEG_INFINITY),
        ]
    }

    /// `[min, max]` updated with `value`, NaN ignored as Rust's `f32::min`/`max` folds in
    /// `Post::apply` ignore it.
    fn track(&mut self, mode: Mode, value: Value, extremes: &[Value]) -> Vec<Value> {
        [
            (FloatCC::LessThan, extremes[0]),
            (FloatCC::GreaterThan, extremes[1]),
        ]
        .into_iter()
        .map(|(cc, current)| {
            let better = self.b.ins().fcmp(cc, value, current);
            self.choose(mode, better, value, current)
        })
        .collect()
    }

    /// The four lanes' `[min, max]` folded into scalars.
    fn fold_extremes(&mut self, extremes: &[Value]) -> Vec<Value> {
        let mut scalars = vec![
            self.b.ins().f32const(f32::INFINITY),
            self.b.ins().f32const(f32::NEG_INFINITY),
        ];
        for lane in 0..4 {
            let [min, max] = [0, 1].map(|i| self.b.ins().extractlane(extremes[i], lane));
            let lower = self.track(Mode::Scalar, min, &scalars)[0];
            scalars = vec![lower, self.track(Mode::Scalar, max, &scalars)[1]];
        }
        scalars
    }

    /// Sets the non-finite values of `len` f32 at `map` to 0; returns the `[min, max]` of the
    /// result and how many were not finite (i64).
    fn sanitize(&mut self, map: Value, len: usize) -> (Vec<Value>, Value) {
        let zeros = self.b.ins().iconst(types::I32, 0);
        let zeros = self.b.ins().splat(types::I32X4, zeros);
        let mut start = self.no_extremes();
        start.push(zeros);
        let between = |cx: &mut Self, carried: Vec<Value>| {
            let mut bad = cx.b.ins().iconst(types::I64, 0);
            for lane in 0..4 {
                let count = cx.b.ins().extractlane(carried[2], lane);
                let count = cx.b.ins().uextend(types::I64, count);
                bad = cx.b.ins().iadd(bad, count);
            }
            let mut scalars = cx.fold_extremes(&carried[..2]);
            scalars.push(bad);
            scalars
        };
        let result = self.lanes(len, start, between, |cx, mode, i, carried| {
            let value = cx.load(mode, map, i);
            // x - x is 0 exactly when x is finite (NaN for ±inf and NaN).
            let difference = cx.b.ins().fsub(value, value);
            let zero = cx.fconst(mode, 0.0);
            let finite = cx.b.ins().fcmp(FloatCC::Equal, difference, zero);
            let clean = cx.choose(mode, finite, value, zero);
            cx.store(mode, clean, map, i, 4);
            let mut next = cx.track(mode, clean, &carried[..2]);
            next.push(match mode {
                // The mask's lanes are -1 where finite, 0 where not: count the zeros.
                Mode::Vector => {
                    let missing = cx.b.ins().bnot(finite);
                    cx.b.ins().isub(carried[2], missing)
                }
                Mode::Scalar => {
                    let (none, one) = (cx.b.ins().iconst(types::I64, 0), cx.b.ins().iconst(types::I64, 1));
                    let count = cx.b.ins().select(finite, none, one);
                    cx.b.ins().iadd(carried[2], count)
                }
            });
            next
        });
        (result[..2].to_vec(), result[2])
    }

    /// `x = (x - min) / ((max - min) + eps)` — `Post::apply`'s `x -= min`, then
    /// `x /= max(x) + eps`.
    fn normalize(&mut self, map: Value, len: usize, extremes: Vec<Value>) {
        let (min, max) = (extremes[0], extremes[1]);
        let range = self.b.ins().fsub(max, min);
        let eps = self.b.ins().f32const(NORMALIZE_EPS);
        let divisor = self.b.ins().fadd(range, eps);
        let (min4, divisor4) = (
            self.b.ins().splat(types::F32X4, min),
            self.b.ins().splat(types::F32X4, divisor),
        );
        self.lanes(
            len,
            Vec::new(),
            |_, c| c,
            |cx, mode, i, _| {
                let (min, divisor) = match mode {
                    Mode::Vector => (min4, divisor4),
                    Mode::Scalar => (min, divisor),
                };
                let value = cx.load(mode, map, i);
                let shifted = cx.b.ins().fsub(value, min);
                let scaled = cx.b.ins().fdiv(shifted, divisor);
                cx.store(mode, scaled, map, i, 4);
                Vec::new()
            },
        );
    }

    /// Copies `len` f32; returns their `[min, max]`.
    fn copy(&mut self, src: Value, dst: Value, len: usize) -> Vec<Value> {
        let start = self.no_extremes();
        self.lanes(
            len,
            start,
            |cx, c| cx.fold_extremes(&c),
            |cx, mode, i, carried| {
                let value = cx.load(mode, src, i);
                cx.store(mode, value, dst, i, 4);
                cx.track(mode, value, &carried)
            },
        )
    }

    /// One tap of the table: the two source byte offsets (i64) and `t`, `1 - t`.
    fn tap(&mut self, taps: Value, index: Value) -> [Value; 4] {
        let entry = self.address(taps, index, TAP_BYTES as i64);
        let flags = MemFlagsData::trusted().with_readonly();
        let [low, high] = [0, 4].map(|at| {
            let offset = self.b.ins().load(types::I32, flags, entry, at);
            self.b.ins().sextend(types::I64, offset)
        });
        let [t, rest] = [8, 12].map(|at| self.b.ins().load(types::F32, flags, entry, at));
        [low, high, t, rest]
    }

    /// `low * (1 - t) + high * t`, as `Post::apply` computes it.
    fn blend(&mut self, low: Value, high: Value, t: Value, rest: Value) -> Value {
        let low = self.b.ins().fmul(low, rest);
        let high = self.b.ins().fmul(high, t);
        self.b.ins().fadd(low, high)
    }

    /// Each of the `h` rows of `w` values resized to `ow` into `at.rows` (the first taps).
    fn resize_rows(&mut self, at: &Buffers, h: usize, w: usize, ow: usize) {
        let (map, rows, taps) = (at.map, at.rows, at.taps);
        self.counted(0, h, 1, Vec::new(), |cx, r, _| {
            let row = cx.address(map, r, 4 * w as i64);
            let target = cx.address(rows, r, 4 * ow as i64);
            cx.counted(0, ow, 1, Vec::new(), |cx, j, _| {
                let [low, high, t, rest] = cx.tap(taps, j);
                let flags = MemFlagsData::trusted();
                let [a, b] = [low, high].map(|offset| {
                    let addr = cx.b.ins().iadd(row, offset);
                    cx.b.ins().load(types::F32, flags, addr, 0)
                });
                let value = cx.blend(a, b, t, rest);
                cx.store(Mode::Scalar, value, target, j, 4);
                Vec::new()
            });
            Vec::new()
        });
    }

    /// The rows (`.. × ow`) resized to `oh` rows into `out` (the taps after the first `ow`);
    /// returns the result's `[min, max]`.
    fn resize_columns(&mut self, rows: Value, out: Value, taps: Value, oh: usize, ow: usize) -> Vec<Value> {
        let taps = self.b.ins().iadd_imm_s(taps, (ow * TAP_BYTES) as i64);
        let start = self.no_extremes();
        // Four lanes of extremes through every row; the tails' scalars join them per row.
        let vectors = self.counted(0, oh, 1, start, |cx, i, extremes| {
            let [low, high, t, rest] = cx.tap(taps, i);
            let (a, b) = (cx.b.ins().iadd(rows, low), cx.b.ins().iadd(rows, high));
            let (t4, rest4) = (
                cx.b.ins().splat(types::F32X4, t),
                cx.b.ins().splat(types::F32X4, rest),
            );
            let target = cx.address(out, i, 4 * ow as i64);
            let between = |cx: &mut Self, carried: Vec<Value>| {
                let scalars = [f32::INFINITY, f32::NEG_INFINITY].map(|v| cx.b.ins().f32const(v));
                carried.into_iter().chain(scalars).collect()
            };
            let carried = cx.lanes(ow, extremes, between, |cx, mode, j, carried| {
                let (x, y) = (cx.load(mode, a, j), cx.load(mode, b, j));
                let value = match mode {
                    Mode::Vector => cx.blend(x, y, t4, rest4),
                    Mode::Scalar => cx.blend(x, y, t, rest),
                };
                cx.store(mode, value, target, j, 4);
                match mode {
                    Mode::Vector => cx.track(mode, value, &carried),
                    Mode::Scalar => {
                        let scalars = cx.track(mode, value, &carried[2..]);
                        carried[..2].iter().copied().chain(scalars).collect()
                    }
                }
            });
            // Lanes of the vector extremes hold the tail's scalars too (splatted: harmless).
            let tail = carried[2..].to_vec();
            let splats: Vec<Value> = tail.iter().map(|&v| cx.b.ins().splat(types::F32X4, v)).collect();
            let lower = cx.track(Mode::Vector, splats[0], &carried[..2])[0];
            let upper = cx.track(Mode::Vector, splats[1], &carried[..2])[1];
            vec![lower, upper]
        });
        self.fold_extremes(&vectors)
    }
}
