//! Code generators: lower a kernel's IR to a backend's form.

pub mod clif;
