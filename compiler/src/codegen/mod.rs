//! Code generators: each lowers a [`crate::ir::Kernel`] to one target and nothing else.

pub mod clif;
pub mod cuda;
