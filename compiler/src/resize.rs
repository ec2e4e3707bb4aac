//! The bilinear taps of the post-processing resize (docs/run.md): which two source positions each
//! output position reads, and with what weight. The runtime's host resize and the CPU backend's
//! fused epilogue both read them from here, so the two compute the same values.

/// Source indices and weight of one output position: the value is
/// `src[low] * (1 - t) + src[high] * t`.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Tap {
    pub low: usize,
    pub high: usize,
    pub t: f32,
}

/// The taps of resizing an axis of `from` positions to `to`: the half-pixel mapping
/// `src = (dst + 0.5) * from / to - 0.5` (OpenCV `INTER_LINEAR`, torch `align_corners=False`),
/// clamped at both edges as OpenCV does. `from` must be at least 1.
pub fn taps(from: usize, to: usize) -> Vec<Tap> {
    let scale = from as f64 / to as f64;
    (0..to)
        .map(|dst| {
            let position = ((dst as f64 + 0.5) * scale - 0.5) as f32;
            let floor = position.floor();
            if floor < 0.0 {
                return Tap {
                    low: 0,
                    high: 0,
                    t: 0.0,
                };
            }
            let low = floor as usize;
            if low >= from - 1 {
                return Tap {
                    low: from - 1,
                    high: from - 1,
                    t: 0.0,
                };
            }
            Tap {
                low,
                high: low + 1,
                t: position - floor,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_reads_quarter_and_three_quarter_points() {
        // Output centres of 2 -> 4 sit at source -0.25, 0.25, 0.75, 1.25.
        let got = taps(2, 4);
        assert_eq!(
            got[0],
            Tap {
                low: 0,
                high: 0,
                t: 0.0
            }
        );
        assert_eq!(
            got[1],
            Tap {
                low: 0,
                high: 1,
                t: 0.25
            }
        );
        assert_eq!(
            got[2],
            Tap {
                low: 0,
                high: 1,
                t: 0.75
            }
        );
        assert_eq!(
            got[3],
            Tap {
                low: 1,
                high: 1,
                t: 0.0
            }
        );
    }

    #[test]
    fn same_size_is_the_identity() {
        for (i, tap) in taps(5, 5).into_iter().enumerate() {
            assert_eq!((tap.low, tap.t), (i.min(4), 0.0));
        }
    }
}
