//! The operations of the language and their float32 semantics. The interpreter and constant
//! folding evaluate through these functions, so the meaning of an operation is written once.
//! They are generic over [`Real`] so that the interpreter can also run a kernel in f64, the
//! reference that finite differences of gradients are taken on.

use std::ops::{Add, Div, Mul, Neg, Sub};

/// A float type the operations are defined on: f32 (the language's) and f64.
pub trait Real:
    Copy
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    const NAN: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn abs(self) -> Self;
    fn powf(self, e: Self) -> Self;
    fn is_nan(self) -> bool;
    /// The smaller of two non-NaN values; of two equal values (±0) the first, as `f32::min`.
    fn min(self, other: Self) -> Self;
    fn max(self, other: Self) -> Self;
}

macro_rules! real {
    ($t:ty) => {
        impl Real for $t {
            const ZERO: $t = 0.0;
            const ONE: $t = 1.0;
            const NAN: $t = <$t>::NAN;
            fn from_f64(v: f64) -> $t {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> $t {
                <$t>::exp(self)
            }
            fn ln(self) -> $t {
                <$t>::ln(self)
            }
            fn sqrt(self) -> $t {
                <$t>::sqrt(self)
            }
            fn tanh(self) -> $t {
                <$t>::tanh(self)
            }
            fn abs(self) -> $t {
                <$t>::abs(self)
            }
            fn powf(self, e: $t) -> $t {
                <$t>::powf(self, e)
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            fn min(self, other: $t) -> $t {
                <$t>::min(self, other)
            }
            fn max(self, other: $t) -> $t {
                <$t>::max(self, other)
            }
        }
    };
}

real!(f32);
real!(f64);

/// Elementwise functions of one value.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Relu,
    Abs,
    /// -1, 0 or 1 (`sign(0) = 0`).
    Sign,
    Exp,
    Log,
    Sqrt,
    Sigmoid,
    Tanh,
}

/// Elementwise functions of two values, broadcast by axis name.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Min,
    Max,
    /// Comparisons and logic give 1.0 or 0.0; logic treats any non-zero value as true.
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

/// Reductions over a set of axes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
    Min,
    /// L2 norm: `sqrt(sum(x^2))`.
    Norm,
    /// Population standard deviation (numpy's default, ddof = 0).
    Std,
}

/// The epsilon of min-max normalization, as pytorch-grad-cam's `scale_cam_image` uses.
pub const NORMALIZE_EPS: f32 = 1e-7;

impl UnaryOp {
    pub const ALL: [UnaryOp; 9] = [
        UnaryOp::Neg,
        UnaryOp::Relu,
        UnaryOp::Abs,
        UnaryOp::Sign,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Relu => "relu",
            UnaryOp::Abs => "abs",
            UnaryOp::Sign => "sign",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Tanh => "tanh",
        }
    }

    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        self.eval(x)
    }

    /// [`UnaryOp::apply`] in any [`Real`] type.
    pub fn eval<T: Real>(self, x: T) -> T {
        match self {
            UnaryOp::Neg => -x,
            // NaN stays NaN, as with numpy's `maximum(x, 0)` and `torch.relu`.
            UnaryOp::Relu => {
                if x < T::ZERO {
                    T::ZERO
                } else {
                    x
                }
            }
            UnaryOp::Abs => x.abs(),
            UnaryOp::Sign => {
                if x > T::ZERO {
                    T::ONE
                } else if x < T::ZERO {
                    -T::ONE
                } else {
                    x * T::ZERO
                }
            }
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Sigmoid => T::ONE / (T::ONE + (-x).exp()),
            UnaryOp::Tanh => x.tanh(),
        }
    }
}

fn truth<T: Real>(b: bool) -> T {
    if b {
        T::ONE
    } else {
        T::ZERO
    }
}

impl BinaryOp {
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Pow => "pow",
            BinaryOp::Min => "min",
            BinaryOp::Max => "max",
            BinaryOp::Eq => "eq",
            BinaryOp::Ne => "ne",
            BinaryOp::Lt => "lt",
            BinaryOp::Le => "le",
            BinaryOp::Gt => "gt",
            BinaryOp::Ge => "ge",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
        }
    }

    /// `min`/`max` propagate NaN like numpy's `minimum`/`maximum`.
    #[inline]
    pub fn apply(self, a: f32, b: f32) -> f32 {
        self.eval(a, b)
    }

    /// [`BinaryOp::apply`] in any [`Real`] type.
    pub fn eval<T: Real>(self, a: T, b: T) -> T {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Pow => a.powf(b),
            BinaryOp::Min => {
                if a.is_nan() || b.is_nan() {
                    T::NAN
                } else {
                    a.min(b)
                }
            }
            BinaryOp::Max => {
                if a.is_nan() || b.is_nan() {
                    T::NAN
                } else {
                    a.max(b)
                }
            }
            BinaryOp::Eq => truth(a == b),
            BinaryOp::Ne => truth(a != b),
            BinaryOp::Lt => truth(a < b),
            BinaryOp::Le => truth(a <= b),
            BinaryOp::Gt => truth(a > b),
            BinaryOp::Ge => truth(a >= b),
            BinaryOp::And => truth(a != T::ZERO && b != T::ZERO),
            BinaryOp::Or => truth(a != T::ZERO || b != T::ZERO),
        }
    }

    pub fn is_commutative(self) -> bool {
        matches!(
            self,
            BinaryOp::Add
                | BinaryOp::Mul
                | BinaryOp::Min
                | BinaryOp::Max
                | BinaryOp::Eq
                | BinaryOp::Ne
                | BinaryOp::And
                | BinaryOp::Or
        )
    }
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
            ReduceOp::Norm => "norm",
            ReduceOp::Std => "std",
        }
    }
}

/// A constant as a person would write it: `2`, `0.5`, `1e-7`; round-trips through parsing.
pub fn format_number(x: f32) -> String {
    let magnitude = x.abs();
    if x == 0.0 || (1e-4..1e7).contains(&magnitude) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}
