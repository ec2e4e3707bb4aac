//! Scoring candidates with an external scorer instead of the cache metrics: the post-processed
//! maps go, a batch of images at a time, to a [`MapScorer`] (for camc's Python package, a
//! callback that re-runs a PyTorch model, e.g. for Average Drop), and its per-image values are
//! averaged over train and holdout as a metric's would be.

use camc_runtime::exec::Executor;
use camc_runtime::run::{Run, RunError};

/// Scores a batch of post-processed maps: `maps` holds images `first..first + count`
/// image-major, each `size` = `[H,W]` values in `[0,1]`. One value per image, `None` for an
/// image it cannot score; an error stops the search.
pub trait MapScorer {
    fn score(&self, first: usize, maps: &[f32]) -> Result<Vec<Option<f64>>, String>;
}

/// Why scoring a program failed: the external scorer (which stops the whole search, stdlib
/// baselines included), or the program's own run (a stdlib baseline that cannot run is
/// skipped).
#[derive(Debug, Clone, PartialEq)]
pub enum ScoreError {
    Scorer(String),
    Program(String),
}

impl From<ScoreError> for String {
    fn from(error: ScoreError) -> String {
        match error {
            ScoreError::Scorer(message) | ScoreError::Program(message) => message,
        }
    }
}

/// Per-image values averaged over train (0) and holdout (1) the way the metrics' means are:
/// skipped images do not count, and a mean that is not finite is no value.
#[derive(Default)]
struct Means {
    sums: [f64; 2],
    counts: [usize; 2],
}

impl Means {
    fn add(&mut self, train: bool, value: Option<f64>) {
        if let Some(value) = value {
            let group = usize::from(!train);
            self.sums[group] += value;
            self.counts[group] += 1;
        }
    }

    fn finish(&self) -> (Option<f64>, Option<f64>) {
        let mean = |g: usize| {
            (self.counts[g] > 0)
                .then(|| self.sums[g] / self.counts[g] as f64)
                .filter(|v| v.is_finite())
        };
        (mean(0), mean(1))
    }
}

/// Maps gathered for the scorer: consecutive images from `first`, at most `capacity` of them,
/// so that memory holds one batch of maps and never the whole dataset's.
struct Pending<'s> {
    scorer: &'s dyn MapScorer,
    is_train: &'s [bool],
    map_len: usize,
    capacity: usize,
    first: usize,
    maps: Vec<f32>,
    means: Means,
}

impl Pending<'_> {
    fn images(&self) -> usize {
        self.maps.len() / self.map_len
    }

    fn push(&mut self, image: usize, map: &[f32]) -> Result<(), String> {
        // The run hands images in order; a gap would break the scorer's `first..first+count`.
        if !self.maps.is_empty() && image != self.first + self.images() {
            self.flush()?;
        }
        if self.maps.is_empty() {
            self.first = image;
        }
        self.maps.extend_from_slice(map);
        if self.images() >= self.capacity {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        let count = self.images();
        if count == 0 {
            return Ok(());
        }
        let values = self.scorer.score(self.first, &self.maps)?;
        if values.len() != count {
            return Err(format!(
                "the scorer returned {} values for the {count} maps of images {}..{}; it must return one per image",
                values.len(),
                self.first,
                self.first + count
            ));
        }
        for (i, value) in values.into_iter().enumerate() {
            let train = self.is_train.get(self.first + i).copied().unwrap_or(true);
            self.means.add(train, value);
        }
        self.maps.clear();
        Ok(())
    }
}

/// Runs `job` on `executor` (built for post-processed maps of `map_len` values) and scores the
/// maps with `scorer`, `job.batch` images per call: the mean value on train and on holdout
/// (`is_train`), `None` where no image could be scored.
pub(crate) fn score_maps(
    scorer: &dyn MapScorer,
    job: &Run,
    executor: &mut dyn Executor,
    map_len: usize,
    is_train: &[bool],
) -> Result<(Option<f64>, Option<f64>), ScoreError> {
    let map_len = map_len.max(1);
    let mut pending = Pending {
        scorer,
        is_train,
        map_len,
        capacity: job.batch.max(1),
        first: 0,
        maps: Vec::with_capacity(job.batch.max(1) * map_len),
        means: Means::default(),
    };
    // `execute_in_order` calls this on the calling thread (its loop over batches runs the
    // executor and then the consumer, batch after batch), so the scorer runs on the thread
    // that called `Search::run`; Python's callback re-acquires the GIL there.
    let run = job.execute_in_order(
        executor,
        |first, _raw, processed| {
            for (i, map) in processed.chunks(map_len).enumerate() {
                pending.push(first + i, map)?;
            }
            Ok(())
        },
        |_| {},
    );
    match run {
        // Only the consumer above fails with a sink error: the scorer's.
        Err(RunError::Sink(message)) => Err(ScoreError::Scorer(message)),
        Err(other) => Err(ScoreError::Program(other.to_string())),
        Ok(_) => {
            pending.flush().map_err(ScoreError::Scorer)?;
            Ok(pending.means.finish())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::MetricData;
    use crate::metrics::{metric_by_name, Better};
    use crate::search::checkpoint::Start;
    use crate::search::driver::{Outcome, Scored, Search};
    use crate::search::space::SpaceFile;
    use camc_compiler::dims::Dims;
    use camc_compiler::ir::Kernel;
    use camc_runtime::cache::Cache;
    use camc_runtime::exec::interp::InterpExecutor;
    use camc_runtime::exec::{Executor, Outputs};
    use std::cell::RefCell;
    use std::path::Path;

    /// Each map's mean: what the `complexity` metric scores per image. Records the calls.
    #[derive(Default)]
    struct MeanOfMap {
        calls: RefCell<Vec<(usize, usize)>>,
    }

    impl MapScorer for MeanOfMap {
        fn score(&self, first: usize, maps: &[f32]) -> Result<Vec<Option<f64>>, String> {
            let per_map = 64 * 64;
            self.calls.borrow_mut().push((first, maps.len() / per_map));
            Ok(maps
                .chunks(per_map)
                .map(|m| Some(m.iter().map(|&v| f64::from(v)).sum::<f64>() / m.len() as f64))
                .collect())
        }
    }

    struct Failing;

    impl MapScorer for Failing {
        fn score(&self, first: usize, _maps: &[f32]) -> Result<Vec<Option<f64>>, String> {
            Err(format!("no model for image {first}"))
        }
    }

    fn demo() -> Cache {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/demo.safetensors");
        Cache::open(path.to_str().expect("utf-8 path")).expect("the demo cache")
    }

    fn interp(kernel: &Kernel, dims: Dims, outputs: Outputs) -> Result<Box<dyn Executor>, String> {
        InterpExecutor::new(kernel, dims, outputs)
            .map(|e| Box::new(e) as Box<dyn Executor>)
            .map_err(|e| e.to_string())
    }

    fn run_search(
        cache: &Cache,
        data: &MetricData,
        out: &Path,
        scorer: Option<&dyn MapScorer>,
    ) -> Result<Outcome, String> {
        let space = SpaceFile {
            max_size: 5,
            ..SpaceFile::default()
        };
        let search = Search {
            cache,
            space: space.resolve().expect("space"),
            objective: if scorer.is_some() {
                vec![]
            } else {
                vec![("complexity", 1.0)]
            },
            metric: "complexity".into(),
            better: Better::Lower,
            budget: 8,
            holdout: 0.3,
            seed: 3,
            out: out.to_path_buf(),
            batch: 48,
            reference: None,
            data,
            scorer,
            batched: true,
            keep: 5,
            pareto: vec![],
        };
        search.run(&interp, Start::Fresh, |_, _, _| {})
    }

    fn demo_data(cache: &Cache) -> MetricData {
        let metrics = [metric_by_name("complexity").expect("metric")];
        MetricData::load(cache, &metrics, vec![64, 64], false).expect("metric data")
    }

    #[test]
    fn a_scorer_of_map_means_equals_the_complexity_metric() {
        let cache = demo();
        let data = demo_data(&cache);
        let dir = tempfile::tempdir().expect("temp dir");
        let by_metric = run_search(&cache, &data, &dir.path().join("metric"), None).expect("search");
        let scorer = MeanOfMap::default();
        let by_scorer = run_search(&cache, &data, &dir.path().join("scorer"), Some(&scorer)).expect("search");
        let shown = |s: &[Scored]| s.iter().map(|s| s.weights.clone()).collect::<Vec<_>>();
        assert_eq!(shown(&by_scorer.ranked), shown(&by_metric.ranked));
        for (a, b) in by_scorer.ranked.iter().zip(&by_metric.ranked) {
            for (x, y) in [(a.train, b.train), (a.holdout, b.holdout)] {
                let (x, y) = (x.expect("a value"), y.expect("a value"));
                assert!((x - y).abs() < 1e-12, "{}: {x} vs {y}", a.weights);
            }
        }
        // 256 images in calls of at most 48 consecutive images, from 0.
        let calls = scorer.calls.borrow();
        let per_candidate: Vec<(usize, usize)> = calls.iter().copied().take(6).collect();
        assert_eq!(
            per_candidate,
            vec![(0, 48), (48, 48), (96, 48), (144, 48), (192, 48), (240, 16)]
        );
        assert_eq!(calls.len(), 8 * 6);
    }

    #[test]
    fn a_scorer_error_is_the_search_error_and_keeps_the_checkpoint() {
        let cache = demo();
        let data = demo_data(&cache);
        let dir = tempfile::tempdir().expect("temp dir");
        let error = run_search(&cache, &data, dir.path(), Some(&Failing)).expect_err("fails");
        assert_eq!(error, "no model for image 0");
        assert!(dir.path().join("checkpoint.jsonl").exists());
    }

    #[test]
    fn means_skip_unscored_images_and_drop_non_finite_means() {
        let mut means = Means::default();
        means.add(true, Some(1.0));
        means.add(true, None);
        means.add(true, Some(2.0));
        means.add(false, Some(f64::NAN));
        assert_eq!(means.finish(), (Some(1.5), None));
        assert_eq!(Means::default().finish(), (None, None));
    }
}
