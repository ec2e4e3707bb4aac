//! camc runtime: caches, executors, post-processing, metrics and search. It depends on the
//! compiler, never the reverse.

pub mod dims;
pub mod exec;
pub mod interp;
pub mod metrics;
pub mod overlay;
mod pc1;
pub mod report;

pub use dims::Dims;
