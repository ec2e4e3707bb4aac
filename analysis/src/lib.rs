//! camc analysis: scoring programs on caches (evaluation, metrics), the program search, the HTML
//! report and overlays. It sits above the execution engine (`camc-runtime`) and is shared by the
//! command line and the Python package; the engine never depends on it.

pub mod evaluate;
mod metric_data;
pub mod metrics;
pub mod overlay;
pub mod report;
pub mod search;
