//! camc runtime: caches, executors, post-processing, metrics and search.
//! Built up by the issues after the front end; it depends on the compiler, never the reverse.
