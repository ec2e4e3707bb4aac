//! Sizes of the named axes for a dataset, and the layout of per-image tensors: canonical axis
//! order (c, k, d, h, w), row-major, absent axes omitted.

use crate::axes::{Axis, AxisSet};

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dims {
    /// Classes of the model's head; 1 when no tensor of the dataset has the class axis.
    pub c: usize,
    pub k: usize,
    /// 1 for 2-D layers.
    pub d: usize,
    pub h: usize,
    pub w: usize,
}

impl Dims {
    /// Sizes without a class axis (`c` = 1).
    #[inline]
    pub const fn new(k: usize, d: usize, h: usize, w: usize) -> Dims {
        Dims { c: 1, k, d, h, w }
    }

    /// The same sizes with `c` classes.
    #[inline]
    pub const fn with_classes(self, c: usize) -> Dims {
        Dims { c, ..self }
    }

    #[inline]
    pub fn size(&self, axis: Axis) -> usize {
        match axis {
            Axis::C => self.c,
            Axis::K => self.k,
            Axis::D => self.d,
            Axis::H => self.h,
            Axis::W => self.w,
        }
    }

    /// The sizes in `Axis::ALL` order.
    #[inline]
    pub const fn array(&self) -> [usize; 5] {
        [self.c, self.k, self.d, self.h, self.w]
    }

    /// Number of elements of a per-image tensor of type `ty`.
    #[inline]
    pub fn len(&self, ty: AxisSet) -> usize {
        ty.iter().map(|a| self.size(a)).product()
    }

    /// The stride of each axis (in `Axis::ALL` order) in a tensor of type `ty`; 0 for absent
    /// axes, which is how broadcasting reads a smaller operand.
    #[inline]
    pub fn strides(&self, ty: AxisSet) -> [usize; 5] {
        let mut strides = [0; 5];
        let mut stride = 1;
        for (i, axis) in Axis::ALL.iter().enumerate().rev() {
            if ty.contains(*axis) {
                strides[i] = stride;
                stride *= self.size(*axis);
            }
        }
        strides
    }

    /// The stride of `axis` in a tensor of type `ty` (elements); 0 when `ty` lacks the axis.
    #[inline]
    pub fn stride(&self, ty: AxisSet, axis: Axis) -> usize {
        self.strides(ty)[axis as usize]
    }

    /// Every multi-index (c, k, d, h, w) of a tensor of type `ty`, in layout order; absent axes
    /// stay 0.
    #[inline]
    pub fn indices(&self, ty: AxisSet) -> impl Iterator<Item = [usize; 5]> + '_ {
        let extent: [usize; 5] = Axis::ALL.map(|a| if ty.contains(a) { self.size(a) } else { 1 });
        let total: usize = extent.iter().product();
        (0..total).map(move |mut flat| {
            let mut index = [0; 5];
            for i in (0..5).rev() {
                index[i] = flat % extent[i];
                flat /= extent[i];
            }
            index
        })
    }
}

/// Offset of a multi-index in a tensor with these strides.
#[inline]
pub fn offset(strides: &[usize; 5], index: &[usize; 5]) -> usize {
    strides.iter().zip(index).map(|(s, i)| s * i).sum()
}
