//! camc runtime: caches, executors, post-processing, metrics and search. It depends on the
//! compiler, never the reverse.

pub mod cache;
pub mod dims;
pub mod evaluate;
pub mod exec;
pub mod heatmap_file;
pub mod interp;
pub mod metrics;
pub mod overlay;
mod pc1;
pub mod postprocess;
pub mod report;
pub mod run;
pub mod search;

pub use dims::Dims;
