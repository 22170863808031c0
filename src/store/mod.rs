//! The series store: everything Vigil sees, as samples in memory, for the rule
//! evaluator.
//!
//! - A series is a label set (with `__name__`) and a ring buffer of
//!   `(timestamp ms, value)` pairs; appending reuses the buffer's room, so a sample
//!   costs 16 bytes and no allocation once a series has reached its steady size.
//! - Bounded twice: samples older than the retention window are dropped
//!   ([`Store::trim`]), and past `max_series` new series are refused and counted
//!   ([`Store::dropped_series`]).
//! - Staleness as in Prometheus: a stale marker (a special NaN) ends a series, and an
//!   instant selector looks back at most 5 minutes for a sample.

pub mod labels;

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;

pub use labels::Labels;

/// Prometheus's stale marker: a NaN with a payload that no computation produces.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The stale marker as a value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is the stale marker (not any NaN).
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One stored series.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its labels, `__name__` included.
    pub labels: Labels,
    /// Its labels without `__name__`, made once: most functions drop the name, and
    /// sharing this copy spares an allocation per series and evaluation.
    pub plain: Labels,
    /// Samples in time order.
    pub samples: VecDeque<(i64, f64)>,
}

impl Series {
    /// The samples with `mint <= t <= maxt` (both ends included, as Prometheus 2.x),
    /// as at most two slices of the ring buffer; none when `maxt < mint`.
    pub fn range(&self, mint: i64, maxt: i64) -> impl ExactSizeIterator<Item = (i64, f64)> + '_ {
        let start = self.position(|t| t < mint);
        let end = self.position(|t| t <= maxt).max(start);
        self.samples.range(start..end).copied()
    }

    /// The index of the first sample whose time fails `before`, searching the ring
    /// buffer's two halves as slices (faster than indexing through the wrap).
    fn position(&self, before: impl Fn(i64) -> bool) -> usize {
        let (a, b) = self.samples.as_slices();
        if a.last().is_some_and(|&(t, _)| before(t)) {
            a.len() + b.partition_point(|&(t, _)| before(t))
        } else {
            a.partition_point(|&(t, _)| before(t))
        }
    }

    /// The newest sample with `t <= at`.
    pub fn latest(&self, at: i64) -> Option<(i64, f64)> {
        let end = self.position(|t| t <= at);
        end.checked_sub(1)
            .and_then(|i| self.samples.get(i))
            .copied()
    }
}

/// What went wrong appending a sample.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The store is full and this series is new.
    #[error("the store holds its maximum of {0} series; new series are dropped")]
    TooManySeries(usize),
    /// A sample must be newer than the series' last one.
    #[error("sample at {0} ms is not newer than the series' last sample")]
    OutOfOrder(i64),
}

/// The store.
#[derive(Debug)]
pub struct Store {
    /// Series by position; a trimmed-away series leaves a `None`, reused later.
    series: Vec<Option<Series>>,
    /// Position of each label set.
    by_labels: HashMap<Labels, usize>,
    /// Postings: the positions of the series holding each label pair (the metric
    /// name included), so a selector's equality matchers pick their candidates
    /// without scanning every series of the name.
    /// Each list is kept in label order, so a selection comes out sorted as
    /// Prometheus's storage returns series, with no sort per query.
    postings: HashMap<Box<str>, HashMap<Box<str>, Vec<usize>>>,
    /// Free positions.
    free: Vec<usize>,
    /// Most series held at once.
    max_series: usize,
    /// Samples older than `newest - retention_ms` are dropped by `trim`.
    retention_ms: i64,
    /// New series refused because the store was full.
    dropped: u64,
}

impl Store {
    /// An empty store.
    pub fn new(max_series: usize, retention_ms: i64) -> Store {
        Store {
            series: Vec::new(),
            by_labels: HashMap::default(),
            postings: HashMap::default(),
            free: Vec::new(),
            max_series,
            retention_ms,
            dropped: 0,
        }
    }

    /// Number of series held.
    pub fn len(&self) -> usize {
        self.by_labels.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.by_labels.is_empty()
    }

    /// How long samples are kept, in ms.
    pub fn retention_ms(&self) -> i64 {
        self.retention_ms
    }

    /// Most series the store holds.
    pub fn max_series(&self) -> usize {
        self.max_series
    }

    /// New series refused since the start because the store was full.
    pub fn dropped_series(&self) -> u64 {
        self.dropped
    }

    /// Appends a sample. A sample at the same timestamp as the series' last one
    /// replaces it (a rule evaluated twice at one instant); an older one is refused.
    pub fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<(), AppendError> {
        let index = match self.by_labels.get(labels) {
            Some(&i) => i,
            None => {
                if self.by_labels.len() >= self.max_series {
                    self.dropped += 1;
                    return Err(AppendError::TooManySeries(self.max_series));
                }
                let series = Series {
                    labels: labels.clone(),
                    plain: labels.without_name(),
                    samples: VecDeque::new(),
                };
                let i = match self.free.pop() {
                    Some(i) => {
                        self.series[i] = Some(series);
                        i
                    }
                    None => {
                        self.series.push(Some(series));
                        self.series.len() - 1
                    }
                };
                self.by_labels.insert(labels.clone(), i);
                for (k, v) in labels.iter() {
                    let list = self
                        .postings
                        .entry(k.into())
                        .or_default()
                        .entry(v.into())
                        .or_default();
                    let at = list.partition_point(|&j| {
                        self.series[j].as_ref().is_some_and(|s| s.labels < *labels)
                    });
                    list.insert(at, i);
                }
                i
            }
        };
        let series = self.series[index].as_mut().expect("indexed series exist");
        match series.samples.back_mut() {
            Some(last) if last.0 == t => last.1 = v,
            Some(last) if last.0 > t => return Err(AppendError::OutOfOrder(t)),
            _ => series.samples.push_back((t, v)),
        }
        Ok(())
    }

    /// Forgets every sample after `t`: the wall clock stepped back to `t`, and samples
    /// stamped in what is now the future would make every new one out of order (and
    /// blind the rules) for as long as the step.
    pub fn rewind(&mut self, t: i64) -> usize {
        let mut dropped = 0;
        for s in self.series.iter_mut().flatten() {
            while s.samples.back().is_some_and(|&(st, _)| st > t) {
                s.samples.pop_back();
                dropped += 1;
            }
        }
        dropped
    }

    /// Marks a series stale at `t` (it vanished from its source), if it exists and
    /// is not already stale.
    pub fn mark_stale(&mut self, labels: &Labels, t: i64) {
        if let Some(&i) = self.by_labels.get(labels)
            && let Some(s) = self.series[i].as_ref()
            && s.samples.back().is_some_and(|&(_, v)| !is_stale(v))
        {
            let _ = self.append(labels, t, stale_nan());
        }
    }

    /// Whether a series with these labels exists and its last sample is not stale.
    pub fn is_live(&self, labels: &Labels) -> bool {
        self.by_labels
            .get(labels)
            .and_then(|&i| self.series[i].as_ref())
            .and_then(|s| s.samples.back())
            .is_some_and(|&(_, v)| !is_stale(v))
    }

    /// Drops samples older than `now - retention`, and series left empty.
    pub fn trim(&mut self, now: i64) {
        let mint = now - self.retention_ms;
        let mut emptied = Vec::new();
        for (i, slot) in self.series.iter_mut().enumerate() {
            if let Some(s) = slot {
                while s.samples.front().is_some_and(|&(t, _)| t < mint) {
                    s.samples.pop_front();
                }
                if s.samples.is_empty() {
                    emptied.push(i);
                } else if s.samples.capacity() > 2 * s.samples.len() + 16 {
                    s.samples.shrink_to_fit();
                }
            }
        }
        for i in emptied {
            if let Some(s) = self.series[i].take() {
                self.by_labels.remove(&s.labels);
                for (k, v) in s.labels.iter() {
                    if let Some(values) = self.postings.get_mut(k) {
                        if let Some(list) = values.get_mut(v) {
                            list.retain(|&j| j != i);
                            if list.is_empty() {
                                values.remove(v);
                            }
                        }
                        if values.is_empty() {
                            self.postings.remove(k);
                        }
                    }
                }
                self.free.push(i);
            }
        }
    }

    /// Series holding every label pair of `equal` (the metric name among them, as
    /// `__name__`) and accepted by `keep`, sorted by labels. The candidates are the
    /// shortest posting list of `equal`, checked against the other pairs, so `keep`
    /// only has to check the other matchers; with no pairs every series is a
    /// candidate.
    pub fn select<'a>(
        &'a self,
        equal: &[(&str, &str)],
        mut keep: impl FnMut(&Labels) -> bool + 'a,
    ) -> Vec<&'a Series> {
        let mut shortest: Option<(usize, &Vec<usize>)> = None;
        for (n, (k, v)) in equal.iter().enumerate() {
            match self.postings.get(*k).and_then(|values| values.get(*v)) {
                None => return Vec::new(),
                Some(list) if shortest.is_none_or(|(_, s)| list.len() < s.len()) => {
                    shortest = Some((n, list))
                }
                Some(_) => {}
            }
        }
        match shortest {
            // Posting lists are in label order: the result needs no sort.
            Some((used, list)) => list
                .iter()
                .filter_map(|&i| self.series[i].as_ref())
                .filter(|s| {
                    equal
                        .iter()
                        .enumerate()
                        .all(|(n, (k, v))| n == used || s.labels.get(k) == *v)
                })
                .filter(|s| keep(&s.labels))
                .collect(),
            None => {
                let mut out: Vec<&Series> = self
                    .series
                    .iter()
                    .flatten()
                    .filter(|s| keep(&s.labels))
                    .collect();
                // Sorted by labels, as Prometheus's storage returns series: sums then
                // add in the same order and agree with Prometheus to the last bit.
                out.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
                out
            }
        }
    }

    /// Total samples held (for `/status` and benchmarks).
    pub fn samples(&self) -> usize {
        self.series.iter().flatten().map(|s| s.samples.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(name: &str, pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(name, pairs)
    }

    #[test]
    fn appends_selects_and_ranges_inclusively() {
        let mut s = Store::new(10, 60_000);
        let a = l("up", &[("job", "app")]);
        for t in 0..5 {
            s.append(&a, t * 1000, t as f64).unwrap();
        }
        assert_eq!(s.append(&a, 1000, 9.0), Err(AppendError::OutOfOrder(1000)));
        let got = s.select(&[("__name__", "up")], |_| true);
        assert_eq!(got.len(), 1);
        let r: Vec<_> = got[0].range(1000, 3000).collect();
        assert_eq!(r, vec![(1000, 1.0), (2000, 2.0), (3000, 3.0)]);
        assert_eq!(got[0].latest(2500), Some((2000, 2.0)));
        assert_eq!(got[0].latest(-1), None);
        assert!(s.select(&[("__name__", "down")], |_| true).is_empty());
        assert_eq!(s.select(&[("job", "app")], |_| true).len(), 1);
        assert!(
            s.select(&[("__name__", "up"), ("job", "web")], |_| true)
                .is_empty()
        );
    }

    /// `range` agrees with a plain filter of every sample.
    fn assert_range(series: &Series, mint: i64, maxt: i64) -> Vec<(i64, f64)> {
        let naive: Vec<_> = series
            .samples
            .iter()
            .copied()
            .filter(|&(t, _)| t >= mint && t <= maxt)
            .collect();
        assert_eq!(
            series.range(mint, maxt).collect::<Vec<_>>(),
            naive,
            "{mint}..{maxt}"
        );
        naive
    }

    #[test]
    fn ranges_are_right_when_the_ring_buffer_wraps() {
        let mut s = Store::new(10, 50_000);
        let a = l("x", &[]);
        // Appending while trimming makes the buffer wrap around its end.
        let mut wrapped = false;
        for t in 0..200i64 {
            s.append(&a, t * 1000, t as f64).unwrap();
            s.trim(t * 1000);
            let series = s.select(&[("__name__", "x")], |_| true)[0];
            if series.samples.as_slices().1.is_empty() {
                continue;
            }
            wrapped = true;
            let now = t * 1000;
            for (mint, maxt) in [
                (now - 30_000, now - 10_000),
                (now - 49_500, now),
                (0, now - 20_000),
            ] {
                let naive = assert_range(series, mint, maxt);
                let newest = naive.last().copied();
                assert_eq!(series.latest(maxt), newest);
            }
        }
        assert!(wrapped, "the test never made the buffer wrap");
        let series = s.select(&[("__name__", "x")], |_| true)[0];
        for (mint, maxt) in [
            (150_000, 160_000),
            (150_500, 199_000),
            (0, 151_000),
            (199_000, 300_000),
        ] {
            assert_range(series, mint, maxt);
        }
        assert_eq!(series.latest(170_500), Some((170_000, 170.0)));
        assert_eq!(series.latest(1_000), None, "trimmed away");
    }

    #[test]
    fn bounded_by_series_and_retention() {
        let mut s = Store::new(2, 10_000);
        s.append(&l("a", &[]), 0, 1.0).unwrap();
        s.append(&l("b", &[]), 0, 1.0).unwrap();
        assert_eq!(
            s.append(&l("c", &[]), 0, 1.0),
            Err(AppendError::TooManySeries(2))
        );
        assert_eq!(s.dropped_series(), 1);
        s.append(&l("a", &[]), 20_000, 2.0).unwrap();
        s.trim(20_000);
        assert_eq!(s.len(), 1, "b had only old samples");
        assert_eq!(s.samples(), 1);
        s.append(&l("c", &[]), 20_000, 1.0).unwrap();
        assert_eq!(s.len(), 2, "room was freed");
    }

    #[test]
    fn stale_markers_end_a_series() {
        let mut s = Store::new(10, 60_000);
        let a = l("up", &[]);
        s.append(&a, 0, 1.0).unwrap();
        assert!(s.is_live(&a));
        s.mark_stale(&a, 1000);
        s.mark_stale(&a, 2000);
        assert!(!s.is_live(&a));
        let series = s.select(&[("__name__", "up")], |_| true);
        assert_eq!(series[0].samples.len(), 2, "one marker only");
        assert!(is_stale(series[0].samples[1].1));
        assert!(!is_stale(f64::NAN));
    }
}
