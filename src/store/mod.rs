//! The series store: everything Vigil sees, as samples in memory, for the rule
//! evaluator.
//!
//! - A series is a label set (with `__name__`) and a ring buffer of
//!   `(timestamp ms, value)` pairs; appending reuses the buffer's room, so a sample
//!   costs 16 bytes and no allocation once a series has reached its steady size.
//! - Bounded three times: samples older than the retention window are dropped
//!   ([`Store::trim`]); past `max_series` new series are refused and counted
//!   ([`Store::dropped_series`]), and scraped series may take no more than
//!   [`SCRAPED_SHARE_PERCENT`] of it ([`Store::append_scraped`]), so that a target
//!   whose label values churn cannot starve Vigil's own series (probes, rule outputs,
//!   `ALERTS`, the store's own count); and the store's bytes (every series' labels, index
//!   entries and sample buffers, [`Store::bytes`]) stay within `max_bytes`. Near the
//!   byte budget the oldest samples go first: the retention in effect shrinks
//!   ([`Store::effective_retention_ms`]) so that new series (a recording rule's
//!   output, `ALERTS`, a renamed probe) still find room; only when even the shortest
//!   retention does not make room is a new series refused.
//! - Staleness as in Prometheus: a stale marker (a special NaN) ends a series, and an
//!   instant selector looks back at most 5 minutes for a sample.

pub mod labels;

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;

pub use labels::Labels;

/// Prometheus's stale marker: a NaN with a payload that no computation produces.
pub(crate) const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The stale marker as a value.
pub(crate) fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is the stale marker (not any NaN).
pub(crate) fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The share of `max_series` that scraped series may take, in percent; the rest is
/// kept for the series Vigil makes itself.
pub const SCRAPED_SHARE_PERCENT: usize = 90;

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
    /// The store holds its byte budget and this series is new.
    #[error("the store holds its budget of {0} bytes; new series are dropped")]
    Full(usize),
}

/// The byte budget without a container memory limit.
pub(crate) const DEFAULT_MAX_BYTES: usize = 128 << 20;

/// The byte budget when the config sets none: half the container's memory limit
/// (cgroup v2 `memory.max`, or v1 `memory.limit_in_bytes`), leaving the other half
/// to the rest of the process (the binary's pages, a scrape's body being parsed,
/// the HTTP clients), and at least 16 MiB; [`DEFAULT_MAX_BYTES`] without a limit.
pub(crate) fn default_max_bytes() -> usize {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let limit = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|t| t.trim().parse::<u64>().ok())
        // v1 writes a huge number for "no limit".
        .filter(|&l| l < 1 << 50);
    budget_for_limit(limit)
}

/// [`default_max_bytes`] for a container limit of `limit` bytes (`None`: no limit).
pub fn budget_for_limit(limit: Option<u64>) -> usize {
    match limit {
        Some(l) => usize::try_from(l / 2).unwrap_or(usize::MAX).max(16 << 20),
        None => DEFAULT_MAX_BYTES,
    }
}

/// Bytes a sample takes in a series' ring buffer.
pub(crate) const SAMPLE_BYTES: usize = std::mem::size_of::<(i64, f64)>();

/// The retention in effect never shrinks below this for the byte budget: the
/// Retention when the config does not say.
pub const DEFAULT_RETENTION: std::time::Duration = std::time::Duration::from_secs(3600);

/// Most series the store holds when the config does not say.
pub(crate) const DEFAULT_MAX_SERIES: usize = 50_000;

/// lookback of an instant selector, so every live series keeps its latest value.
pub const MIN_RETENTION_MS: i64 = 5 * 60 * 1000;

/// What a new series costs besides its samples, as measured by `bench/store-bytes`:
/// its label strings (each an `Arc<str>`, 16 bytes of header), the two label slices
/// (with and without the name, 32 bytes a pair), an entry in a posting list per
/// label and a share of the lists' and maps' own overhead, the map entry and slot.
fn series_cost(labels: &Labels) -> usize {
    let n = labels.len();
    let strings: usize = labels.iter().map(|(k, v)| k.len() + v.len() + 48).sum();
    strings + 2 * (16 + n * 32) + n * 64 + 192
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
    /// Most bytes the store may hold ([`Store::bytes`]).
    max_bytes: usize,
    /// Bytes of every live series besides its samples.
    overhead_bytes: usize,
    /// Room of every ring buffer, in samples (what their memory holds).
    sample_room: usize,
    /// The retention in effect: `retention_ms`, or less while the byte budget is
    /// tight.
    effective_retention_ms: i64,
    /// Samples dropped before their retention to keep within the byte budget.
    evicted: u64,
}

/// One series' samples in a window, for publishing.
#[derive(Debug, Clone)]
pub struct SeriesWindow {
    /// The series' labels.
    pub labels: Labels,
    /// Its newest sample at or before the window's start (a counter's baseline).
    pub before: Option<f64>,
    /// Its samples in the window, oldest first, stale markers left out.
    pub points: Vec<(i64, f64)>,
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
            max_bytes: usize::MAX,
            overhead_bytes: 0,
            sample_room: 0,
            effective_retention_ms: retention_ms,
            evicted: 0,
        }
    }

    /// The same store held to `max_bytes` ([`Store::bytes`]).
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Store {
        self.max_bytes = max_bytes;
        self
    }

    /// Holds the store to `max_bytes` from now on.
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
    }

    /// What the store holds in memory, estimated from what it allocated: each
    /// series' labels and index entries, and the room of its sample buffer.
    pub fn bytes(&self) -> usize {
        self.overhead_bytes + self.sample_room * SAMPLE_BYTES
    }

    /// The byte budget.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The retention in effect, in ms: the configured one, or less while the byte
    /// budget is tight.
    pub fn effective_retention_ms(&self) -> i64 {
        self.effective_retention_ms
    }

    /// Samples dropped before their retention to keep within the byte budget.
    pub fn evicted_samples(&self) -> u64 {
        self.evicted
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

    /// Most series scraped samples may make: [`SCRAPED_SHARE_PERCENT`] of
    /// `max_series` (all of a store of fewer than ten series).
    pub fn max_scraped_series(&self) -> usize {
        if self.max_series < 10 {
            return self.max_series;
        }
        self.max_series / 100 * SCRAPED_SHARE_PERCENT
            + self.max_series % 100 * SCRAPED_SHARE_PERCENT / 100
    }

    /// Appends a sample. A sample at the same timestamp as the series' last one
    /// replaces it (a rule evaluated twice at one instant); an older one is refused.
    pub fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<(), AppendError> {
        self.append_within(labels, t, v, self.max_series)
    }

    /// [`Store::append`] for a scraped sample: a new series is refused once the
    /// store holds [`Store::max_scraped_series`].
    pub fn append_scraped(&mut self, labels: &Labels, t: i64, v: f64) -> Result<(), AppendError> {
        self.append_within(labels, t, v, self.max_scraped_series())
    }

    /// [`Store::append`], a new series refused once the store holds `limit`.
    fn append_within(
        &mut self,
        labels: &Labels,
        t: i64,
        v: f64,
        limit: usize,
    ) -> Result<(), AppendError> {
        let index = match self.by_labels.get(labels) {
            Some(&i) => i,
            None => {
                if self.by_labels.len() >= limit {
                    self.dropped += 1;
                    return Err(AppendError::TooManySeries(limit));
                }
                let cost = series_cost(labels);
                if self.bytes().saturating_add(cost + SAMPLE_BYTES) > self.max_bytes {
                    self.dropped += 1;
                    return Err(AppendError::Full(self.max_bytes));
                }
                self.overhead_bytes += cost;
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
        let bytes = self.bytes();
        // Near the budget a buffer grows by an eighth, not twice its size.
        let near = bytes as f64 >= 0.7 * self.max_bytes as f64;
        let series = self.series[index].as_mut().expect("indexed series exist");
        match series.samples.back_mut() {
            Some(last) if last.0 == t => last.1 = v,
            Some(last) if last.0 > t => return Err(AppendError::OutOfOrder(t)),
            _ => {
                let before = series.samples.capacity();
                if series.samples.len() == before {
                    let grow = if near {
                        (before / 8).max(1)
                    } else {
                        before.max(4)
                    };
                    if bytes + grow * SAMPLE_BYTES > self.max_bytes && !series.samples.is_empty() {
                        // At the budget a series that would grow its buffer gives
                        // up its oldest sample instead: the store stops growing
                        // between trims.
                        series.samples.pop_front();
                        self.evicted += 1;
                    } else {
                        series.samples.reserve_exact(grow);
                    }
                }
                series.samples.push_back((t, v));
                self.sample_room += series.samples.capacity() - before;
            }
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

    /// Drops samples older than `now - retention`, and series left empty. Past 90 %
    /// of the byte budget the retention in effect shrinks (to no less than
    /// [`MIN_RETENTION_MS`]) until the store is back under 80 %; with room again it
    /// grows back, a quarter at a trim, to the configured one.
    pub fn trim(&mut self, now: i64) {
        let budget = self.max_bytes as f64;
        if (self.bytes() as f64) < 0.7 * budget {
            self.effective_retention_ms = self
                .effective_retention_ms
                .saturating_add(self.effective_retention_ms / 4)
                .clamp(MIN_RETENTION_MS.min(self.retention_ms), self.retention_ms);
        }
        self.trim_to(now.saturating_sub(self.effective_retention_ms), false);
        for _ in 0..4 {
            let bytes = self.bytes() as f64;
            if bytes <= 0.9 * budget || self.effective_retention_ms <= MIN_RETENTION_MS {
                break;
            }
            // Samples are about evenly spread in time: keep the share of the
            // window that brings the samples' part of the bytes to 80 %.
            let samples = (self.samples() * SAMPLE_BYTES) as f64;
            let room = (0.8 * budget - self.overhead_bytes as f64).max(0.0);
            let share = if samples > 0.0 {
                (room / samples).min(1.0)
            } else {
                1.0
            };
            let shorter = (self.effective_retention_ms as f64 * share) as i64;
            self.effective_retention_ms =
                shorter.clamp(MIN_RETENTION_MS.min(self.retention_ms), self.retention_ms);
            let before = self.samples();
            self.trim_to(now.saturating_sub(self.effective_retention_ms), true);
            self.evicted += (before - self.samples()) as u64;
        }
    }

    /// Drops samples older than `mint`, and series left empty; buffers with much
    /// unused room (all of it with `tight`) give it back.
    fn trim_to(&mut self, mint: i64, tight: bool) {
        let mut emptied = Vec::new();
        for (i, slot) in self.series.iter_mut().enumerate() {
            if let Some(s) = slot {
                while s.samples.front().is_some_and(|&(t, _)| t < mint) {
                    s.samples.pop_front();
                }
                if s.samples.is_empty() {
                    emptied.push(i);
                } else if s.samples.capacity() > 2 * s.samples.len() + 16
                    || (tight && s.samples.capacity() > s.samples.len())
                {
                    let before = s.samples.capacity();
                    s.samples.shrink_to_fit();
                    self.sample_room -= before - s.samples.capacity();
                }
            }
        }
        for i in emptied {
            if let Some(s) = self.series[i].take() {
                self.sample_room -= s.samples.capacity();
                self.overhead_bytes = self.overhead_bytes.saturating_sub(series_cost(&s.labels));
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

    /// The samples in `(from, to]` of every series [`Store::select`] picks, each
    /// with its newest sample in the `lookback` before `from` (a counter's
    /// baseline); stale markers are left out, and so are series without a sample
    /// in the window.
    pub fn windows(
        &self,
        equal: &[(&str, &str)],
        keep: impl FnMut(&Labels) -> bool,
        from: i64,
        to: i64,
        lookback: i64,
    ) -> Vec<SeriesWindow> {
        if to <= from {
            return Vec::new();
        }
        self.select(equal, keep)
            .into_iter()
            .filter_map(|s| {
                let points: Vec<(i64, f64)> = s
                    .range(from.saturating_add(1), to)
                    .filter(|(_, v)| !is_stale(*v))
                    .collect();
                if points.is_empty() {
                    return None;
                }
                let before = s
                    .range(from.saturating_sub(lookback), from)
                    .filter(|(_, v)| !is_stale(*v))
                    .last()
                    .map(|(_, v)| v);
                Some(SeriesWindow {
                    labels: s.labels.clone(),
                    before,
                    points,
                })
            })
            .collect()
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
    fn scraped_series_leave_a_tenth_of_the_store_to_vigils_own() {
        let mut s = Store::new(100, 10_000);
        assert_eq!(s.max_scraped_series(), 90);
        for i in 0..95 {
            let _ = s.append_scraped(&l("churn", &[("id", &i.to_string())]), 0, 1.0);
        }
        assert_eq!((s.len(), s.dropped_series()), (90, 5));
        // A scraped series already held takes its samples.
        s.append_scraped(&l("churn", &[("id", "0")]), 1000, 2.0)
            .unwrap();
        // A new scraped one is refused; Vigil's own still find room, up to the whole.
        assert_eq!(
            s.append_scraped(&l("http_requests_total", &[("status", "500")]), 1000, 1.0),
            Err(AppendError::TooManySeries(90))
        );
        for i in 0..10 {
            s.append(&l("ALERTS", &[("n", &i.to_string())]), 1000, 1.0)
                .unwrap();
        }
        assert_eq!(
            s.append(&l("ALERTS", &[("n", "10")]), 1000, 1.0),
            Err(AppendError::TooManySeries(100))
        );
        assert_eq!(Store::new(7, 1).max_scraped_series(), 7);
        assert_eq!(Store::new(50_000, 1).max_scraped_series(), 45_000);
        assert_eq!(
            Store::new(usize::MAX, 1).max_scraped_series(),
            usize::MAX / 100 * 90 + 13
        );
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

    /// The incremental byte count equals one made from scratch.
    fn recount(s: &Store) -> usize {
        s.series
            .iter()
            .flatten()
            .map(|x| series_cost(&x.labels) + x.samples.capacity() * SAMPLE_BYTES)
            .sum()
    }

    #[test]
    fn the_byte_budget_shortens_retention_before_it_refuses_a_series() {
        let budget = 400_000;
        let mut s = Store::new(usize::MAX, 3_600_000).with_max_bytes(budget);
        let names: Vec<Labels> = (0..50).map(|i| l("m", &[("i", &i.to_string())])).collect();
        let mut t = 0;
        while t <= 3_600_000 {
            for n in &names {
                s.append(n, t, 1.0).unwrap();
            }
            assert_eq!(s.bytes(), recount(&s), "at {t}");
            if t % 10_000 == 0 {
                s.trim(t);
                assert!(s.bytes() <= budget, "{} at {t}", s.bytes());
            }
            t += 1000;
        }
        assert!(s.effective_retention_ms() < 3_600_000);
        assert!(s.evicted_samples() > 0);
        assert_eq!(s.dropped_series(), 0);
        // A new series finds room: only the oldest samples paid for it.
        s.trim(t);
        s.append(&l("ALERTS", &[("alertname", "X")]), t, 1.0)
            .unwrap();
        assert_eq!(s.dropped_series(), 0);
        assert_eq!(s.bytes(), recount(&s));
        // Every series keeps at least the lookback's worth.
        let oldest = s
            .series
            .iter()
            .flatten()
            .filter(|x| x.labels.name() == "m")
            .map(|x| x.samples.front().unwrap().0)
            .max()
            .unwrap();
        assert!(t - oldest >= MIN_RETENTION_MS - 10_000, "{}", t - oldest);
    }

    #[test]
    fn with_room_again_the_retention_grows_back() {
        let mut s = Store::new(usize::MAX, 3_600_000).with_max_bytes(300_000);
        let names: Vec<Labels> = (0..40).map(|i| l("m", &[("i", &i.to_string())])).collect();
        let mut t = 0;
        while t <= 3_600_000 {
            for n in &names {
                s.append(n, t, 1.0).unwrap();
            }
            if t % 10_000 == 0 {
                s.trim(t);
            }
            t += 1000;
        }
        let shrunk = s.effective_retention_ms();
        assert!(shrunk < 3_600_000);
        // Most series go away: the budget is no longer tight.
        for _ in 0..40 {
            t += 10_000;
            s.append(&names[0], t, 1.0).unwrap();
            s.trim(t);
        }
        assert!(
            s.effective_retention_ms() > shrunk,
            "{}",
            s.effective_retention_ms()
        );
        assert_eq!(s.bytes(), recount(&s));
    }

    #[test]
    fn a_budget_too_small_for_even_the_shortest_retention_refuses_new_series() {
        let mut s = Store::new(usize::MAX, 3_600_000).with_max_bytes(4_000);
        let mut refused = 0;
        for i in 0..100 {
            if let Err(e) = s.append(&l("m", &[("i", &i.to_string())]), 0, 1.0) {
                assert_eq!(e, AppendError::Full(4_000));
                refused += 1;
            }
        }
        assert!(refused > 0 && refused < 100, "{refused}");
        assert_eq!(s.dropped_series(), refused);
        assert!(s.bytes() <= 4_000);
        assert_eq!(
            budget_for_limit(Some(256 << 20)),
            128 << 20,
            "half a 256 MiB task"
        );
        assert_eq!(budget_for_limit(Some(8 << 20)), 16 << 20);
        assert_eq!(budget_for_limit(None), DEFAULT_MAX_BYTES);
    }

    #[test]
    fn a_retention_of_for_ever_or_under_five_minutes_trims_without_overflow() {
        for retention in [i64::MAX, 60_000, 1] {
            let mut s = Store::new(10, retention).with_max_bytes(2_000);
            for t in 0..50 {
                let _ = s.append(&l("m", &[]), t * 1000, 1.0);
                s.trim(t * 1000);
            }
            assert!(s.effective_retention_ms() <= retention);
            assert!(s.bytes() <= 2_000, "{retention}: {}", s.bytes());
        }
    }
}
