pub mod check;
pub mod emit;
pub mod program;
pub mod source;
pub mod stdlib;
