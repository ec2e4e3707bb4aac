//! Named axes and sets of them: the types of the language (docs/language.md).

use std::fmt;

/// One named axis of a per-image tensor. The batch axis is implicit and never an `Axis`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Axis {
    /// The classes of the model's head (programs that read `head.weight`, Recipro-CAM).
    C,
    K,
    D,
    H,
    W,
}

impl Axis {
    /// Canonical order: classes, channels, then the spatial axes outermost to innermost (the
    /// cache layout: `head.weight` is `[c,k]`, `A` is `[k,h,w]`).
    pub const ALL: [Axis; 5] = [Axis::C, Axis::K, Axis::D, Axis::H, Axis::W];

    pub fn from_name(name: &str) -> Option<Axis> {
        match name {
            "c" => Some(Axis::C),
            "k" => Some(Axis::K),
            "d" => Some(Axis::D),
            "h" => Some(Axis::H),
            "w" => Some(Axis::W),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Axis::C => "c",
            Axis::K => "k",
            Axis::D => "d",
            Axis::H => "h",
            Axis::W => "w",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of axes: the type of a value. `[]` is a scalar.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AxisSet(u8);

impl AxisSet {
    pub const SCALAR: AxisSet = AxisSet(0);

    pub fn of(axes: &[Axis]) -> AxisSet {
        axes.iter().fold(AxisSet::SCALAR, |set, &a| set.with(a))
    }

    pub fn with(self, axis: Axis) -> AxisSet {
        AxisSet(self.0 | axis.bit())
    }

    pub fn contains(self, axis: Axis) -> bool {
        self.0 & axis.bit() != 0
    }

    pub fn union(self, other: AxisSet) -> AxisSet {
        AxisSet(self.0 | other.0)
    }

    pub fn minus(self, other: AxisSet) -> AxisSet {
        AxisSet(self.0 & !other.0)
    }

    pub fn is_subset_of(self, other: AxisSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn is_scalar(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The axes in canonical order (c, k, d, h, w).
    pub fn iter(self) -> impl Iterator<Item = Axis> {
        Axis::ALL.into_iter().filter(move |&a| self.contains(a))
    }

    /// The spatial part of the set (`d`, `h`, `w`).
    pub fn spatial(self) -> AxisSet {
        self.minus(AxisSet::of(&[Axis::C, Axis::K]))
    }
}

impl fmt::Display for AxisSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, axis) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(axis.name())?;
        }
        f.write_str("]")
    }
}

impl fmt::Display for Axis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
