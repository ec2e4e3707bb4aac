pub mod backend;
pub mod check;
pub mod emit;
pub mod program;
pub mod run;
pub mod source;
pub mod stdlib;
