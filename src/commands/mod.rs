pub mod check;
pub mod source;
pub mod stdlib;
