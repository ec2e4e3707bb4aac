//! Binding a kernel's inputs to cache tensors by name, with shape checks against the sizes of
//! `A`, and reading the bound tensors batch by batch.

use super::{Cache, CacheError, Shard, Values};
use crate::batch::{Batch, FileSpan};
use camc_compiler::axes::Axis;
use camc_compiler::dims::Dims;
use camc_compiler::ir::{Input, InputKind, Kernel};
use std::ops::Range;

/// A kernel's inputs found in every shard of a cache, with the dataset's axis sizes.
pub struct Binding<'c> {
    cache: &'c Cache,
    pub dims: Dims,
    /// The cache tensor of each kernel input, in the kernel's order.
    pub names: Vec<String>,
    /// Whether each input is per image or shared by all images.
    pub kinds: Vec<InputKind>,
    pub images: usize,
}

/// The bound tensors of a run of images of one shard.
pub struct BoundBatch<'a> {
    /// Index of the first image in the whole dataset.
    pub first: usize,
    pub n: usize,
    pub shard: &'a Shard,
    /// Images of the shard this batch covers.
    pub rows: Range<usize>,
    values: Vec<Values<'a>>,
    files: Vec<Option<FileSpan<'a>>>,
}

impl BoundBatch<'_> {
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            n: self.n,
            inputs: self.values.iter().map(Values::data).collect(),
            files: self.files.clone(),
        }
    }
}

/// The sizes of the named axes, from `A`'s shape `[n,k,h,w]` or `[n,k,d,h,w]`.
pub fn dims_of(shard: &Shard) -> Result<Dims, CacheError> {
    let a = shard.tensors.get("A").ok_or_else(|| {
        CacheError::tensor(&shard.path, "A", "missing: every cache needs the activations `A`")
    })?;
    let dims = match a.shape[..] {
        [_, k, h, w] => Dims::new(k, 1, h, w),
        [_, k, d, h, w] => Dims::new(k, d, h, w),
        _ => {
            return Err(CacheError::tensor(
                &shard.path,
                "A",
                format!("has shape {:?}; expected [n,k,h,w] or [n,k,d,h,w]", a.shape),
            ))
        }
    };
    if [dims.k, dims.d, dims.h, dims.w].contains(&0) {
        return Err(CacheError::tensor(
            &shard.path,
            "A",
            format!("has an empty axis in {:?}", a.shape),
        ));
    }
    if !a.dtype.is_float() {
        return Err(CacheError::tensor(
            &shard.path,
            "A",
            format!("has dtype {}; expected f32, f16 or bf16", a.dtype.name()),
        ));
    }
    Ok(dims)
}

/// The shape a tensor bound to an input of type `ty` must have: `[n]` (for a per-image input)
/// then the sizes of `ty`'s axes in canonical order. A 2-D cache has no `d` axis at all.
fn expected_shape(n: usize, dims: Dims, input: &Input, three_d: bool) -> Vec<usize> {
    let ty = input.ty;
    let mut shape = match input.kind {
        InputKind::PerImage => vec![n],
        InputKind::Shared => Vec::new(),
    };
    for axis in Axis::ALL {
        if ty.contains(axis) && (axis != Axis::D || three_d) {
            shape.push(dims.size(axis));
        }
    }
    shape
}

/// The cache tensor a parameter reads: the one of its name, else the one whose name with every
/// `.` read as `_` is its name (`head_weight` reads `head.weight`: a `.` cannot be in a name).
pub fn tensor_name(shard: &Shard, param: &str) -> String {
    if shard.tensors.contains_key(param) {
        return param.to_string();
    }
    let mut dotted = shard
        .tensors
        .keys()
        .filter(|name| name.replace('.', "_") == param);
    match (dotted.next(), dotted.next()) {
        (Some(name), None) => name.clone(),
        _ => param.to_string(),
    }
}

/// The number of classes: the `c` size of the first input over the class axis (its leading axis
/// after the image's), or 1.
fn classes_of(shard: &Shard, kernel: &Kernel, names: &[String]) -> Result<usize, CacheError> {
    let Some((input, name)) = kernel
        .inputs
        .iter()
        .zip(names)
        .find(|(i, _)| i.ty.contains(Axis::C))
    else {
        return Ok(1);
    };
    let lead = usize::from(input.kind == InputKind::PerImage);
    let shape = shard
        .tensors
        .get(name)
        .map(|t| t.shape.clone())
        .unwrap_or_default();
    match shape.get(lead) {
        Some(&c) if c > 0 => Ok(c),
        _ => Err(CacheError::tensor(
            &shard.path,
            name,
            format!(
                "has shape {shape:?}; the program reads `{}: {}{}`, whose class axis comes {}",
                input.name,
                if lead == 0 { "shared " } else { "" },
                input.ty,
                if lead == 0 {
                    "first"
                } else {
                    "after the image axis"
                }
            ),
        )
        .at(input.span)),
    }
}

impl<'c> Binding<'c> {
    pub fn new(cache: &'c Cache, kernel: &Kernel) -> Result<Binding<'c>, CacheError> {
        let first = cache
            .shards
            .first()
            .ok_or_else(|| CacheError::Other(format!("cache `{}` has no shard", cache.spec)))?;
        let names: Vec<String> = kernel
            .inputs
            .iter()
            .map(|i| tensor_name(first, &i.name))
            .collect();
        let dims = dims_of(first)?.with_classes(classes_of(first, kernel, &names)?);
        let three_d = first.tensors["A"].shape.len() == 5;
        if let Some(input) = kernel.inputs.iter().find(|i| i.ty.contains(Axis::D) && !three_d) {
            let error = CacheError::tensor(
                &first.path,
                &input.name,
                format!(
                    "the program declares `{}: {}` but the cache is 2-D (A is [n,k,h,w])",
                    input.name, input.ty
                ),
            );
            return Err(error.at(input.span));
        }
        let mut images = 0;
        for shard in &cache.shards {
            let shard_dims = dims_of(shard)?.with_classes(dims.c);
            if shard_dims != dims {
                return Err(CacheError::tensor(
                    &shard.path,
                    "A",
                    format!(
                        "has sizes {shard_dims:?}, unlike the first shard `{}` ({dims:?})",
                        first.path.display()
                    ),
                ));
            }
            let n = shard.images()?;
            for (input, name) in kernel.inputs.iter().zip(&names) {
                check_input(shard, name, expected_shape(n, dims, input, three_d), input)
                    .map_err(|e| e.at(input.span))?;
            }
            images += n;
        }
        Ok(Binding {
            cache,
            dims,
            names,
            kinds: kernel.inputs.iter().map(|i| i.kind).collect(),
            images,
        })
    }

    /// The dataset in runs of at most `batch` images; a run never crosses shards.
    pub fn batches(&self, batch: usize) -> Vec<(usize, Range<usize>)> {
        let batch = batch.max(1);
        let mut runs = Vec::new();
        for (index, shard) in self.cache.shards.iter().enumerate() {
            let n = shard.images().unwrap_or(0);
            let mut start = 0;
            while start < n {
                let end = (start + batch).min(n);
                runs.push((index, start..end));
                start = end;
            }
        }
        runs
    }

    /// Reads the bound tensors of one run of images (memory-mapped: no copy for aligned data).
    pub fn load(&self, shard_index: usize, rows: Range<usize>) -> Result<BoundBatch<'c>, CacheError> {
        let shard = &self.cache.shards[shard_index];
        let first = self.cache.shards[..shard_index]
            .iter()
            .map(|s| s.images().unwrap_or(0))
            .sum::<usize>()
            + rows.start;
        let values = self
            .names
            .iter()
            .zip(&self.kinds)
            .map(|(name, kind)| match kind {
                InputKind::PerImage => shard.rows(name, rows.clone()),
                InputKind::Shared => shard.whole(name),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let files = self
            .names
            .iter()
            .zip(&self.kinds)
            .map(|(name, kind)| match kind {
                InputKind::PerImage => shard.span(name, &rows),
                InputKind::Shared => shard.span_whole(name),
            })
            .collect();
        Ok(BoundBatch {
            first,
            n: rows.len(),
            shard,
            rows,
            values,
            files,
        })
    }
}

fn check_input(shard: &Shard, name: &str, expected: Vec<usize>, input: &Input) -> Result<(), CacheError> {
    let param = &input.name;
    let declared = match input.kind {
        InputKind::PerImage => input.ty.to_string(),
        InputKind::Shared => format!("shared {}", input.ty),
    };
    let Some(info) = shard.tensors.get(name) else {
        let present: Vec<&str> = shard.tensors.keys().map(String::as_str).collect();
        let dotted = if param.contains('_') {
            format!(" (or `{}`)", param.replace('_', "."))
        } else {
            String::new()
        };
        return Err(CacheError::tensor(
            &shard.path,
            name,
            format!(
                "missing: the program reads `{param}: {declared}`, so the cache needs a tensor `{name}`{dotted} of shape {expected:?}; it has {}",
                present.join(", ")
            ),
        ));
    };
    if info.shape != expected {
        let hint = match (input.kind, info.shape.len() + 1 == expected.len()) {
            (InputKind::PerImage, true) => format!(
                "; a tensor for every image is declared `{param}: shared {}`",
                input.ty
            ),
            _ => String::new(),
        };
        return Err(CacheError::tensor(
            &shard.path,
            name,
            format!(
                "has shape {:?}; the program reads `{param}: {declared}`, which with A's sizes needs {expected:?}{hint}",
                info.shape
            ),
        ));
    }
    Ok(())
}
