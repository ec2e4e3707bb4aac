//! The search engine (docs/search.md): enumerate programs `relu(sum[k](WEIGHTS * A))` by size, prune
//! equivalent ones on a probe set, evaluate the rest on a metric, keep the best.

pub mod batch;
pub mod checkpoint;
pub mod driver;
pub mod enumerate;
pub mod pareto;
pub mod probe;
pub mod probe_set;
pub mod results;
pub mod scorer;
pub mod simplify;
pub mod space;
pub mod term;
pub mod vet;
