//! Differencing: a new result's cells against every earlier result of the
//! same grant or researcher (and against each other), by the sketches of
//! the privacy units behind each ([`super::sketch`]). A result's cells are
//! its rows and its *inner cells*: the groups of aggregations inside the
//! query (scalar subqueries, CTEs, derived tables, join and UNION inputs)
//! whose values reach the output through arithmetic.
//!
//! ```text
//!  this result's sketches ──┐
//!  earlier results' sketches ┴─▶ index by units
//!       ─▶ pairs A − B whose unit counts are within T − 1 ─▶ decode
//!       ─▶ trackers A − B − C (= −(B + C − A)) whose counts combine to within T − 1 ─▶ decode
//!       ─▶ 0 < units differing < T ─▶ Pair / Tracker
//!       ─▶ DifferencingRule: the rows' cells (an inner cell: the whole result) to review
//! ```
//!
//! The unit counts prune soundly: cells whose counts combine to `d` differ
//! in at least `d` units. Decoding is bounded by [`DEFAULT_BUDGET`] pairs and
//! [`TRACKER_BUDGET`] triples; a result that needs more is reviewed as a
//! whole rather than passed unchecked.

use std::borrow::Borrow;
use std::collections::HashSet;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::sketch::Sketch;

/// Pair decodings one check may spend (each takes a few microseconds).
pub const DEFAULT_BUDGET: u64 = 1_000_000;

/// Three-term candidates one check may look at (each about 0.1 µs when the
/// bucket screen rejects it, a decoding's few µs when it does not): about
/// 2–3 s at most.
pub const TRACKER_BUDGET: u64 = 20_000_000;

/// Pairs kept for reviewers; the rule counts them all.
pub const MAX_PAIRS_KEPT: usize = 200;

/// The version of [`Stored`].
pub const FORMAT: &str = "anyu-differencing/1";

/// A cell's identity: a keyed hash of the rows it aggregates (the
/// aggregation's input plan as planned, with its dataset versions and grant
/// views, and the group's key values). Two cells with one identity are over
/// the same rows: their difference is nobody.
pub type CellId = u128;

/// The units behind one row of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowPrint {
    /// Distinct units behind the row (summed over the datasets read).
    pub units: u64,
    /// `None` until the cell is sketched (sketches are computed only when a
    /// comparison needs them).
    pub sketch: Option<Sketch>,
    /// `None` when the plan had no stable identity (volatile functions).
    pub id: Option<CellId>,
}

/// One result's rows, in order (`None` for a row without a sketch), and its
/// inner cells.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultPrints {
    pub rows: Vec<Option<RowPrint>>,
    /// Groups of aggregations inside the query, as (aggregation, print).
    pub inner: Vec<(u64, RowPrint)>,
    /// More inner cells were kept than recorded.
    pub inner_overflow: bool,
}

impl ResultPrints {
    /// Every cell with a sketch: (place, print).
    fn cells(&self) -> impl Iterator<Item = (Place, &RowPrint)> {
        let rows = self
            .rows
            .iter()
            .enumerate()
            .filter_map(|(r, p)| Some((Place::row(r as u64), p.as_ref()?)));
        let inner = self
            .inner
            .iter()
            .enumerate()
            .map(|(k, (_, p))| (Place::inner(k as u64), p));
        rows.chain(inner)
    }
}

/// An earlier result.
#[derive(Debug, Clone)]
pub struct Earlier {
    pub job_id: String,
    pub prints: ResultPrints,
}

/// A row, or an inner cell, of one result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Place {
    index: u64,
    inner: bool,
}

impl Place {
    fn row(index: u64) -> Place {
        Place {
            index,
            inner: false,
        }
    }
    fn inner(index: u64) -> Place {
        Place { index, inner: true }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A row of this result whose units differ from those of another row (of
/// an earlier result, or of this one) by fewer than the threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    /// The row of this result (an inner cell's index when `inner`).
    pub row: u64,
    /// `row` is an inner cell: a group of an aggregation inside the query.
    #[serde(default, skip_serializing_if = "is_false")]
    pub inner: bool,
    /// The other row's job (this job's own id for a pair inside the result).
    pub other_job_id: String,
    pub other_row: u64,
    /// `other_row` is an inner cell of the other job.
    #[serde(default, skip_serializing_if = "is_false")]
    pub other_inner: bool,
    /// Units whose records differ between the two rows.
    pub units_differing: u64,
    /// Records by which they differ, summed over those units.
    pub records_differing: u64,
}

/// One cell of a tracker: a row (or inner cell) of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellRef {
    pub job_id: String,
    pub row: u64,
    /// `row` is an inner cell: a group of an aggregation inside the query.
    #[serde(default, skip_serializing_if = "is_false")]
    pub inner: bool,
}

/// Three cells, at least one of this result, where the first minus the
/// other two is fewer than the threshold of persons (`A − B − C`; the same
/// as `B + C − A` up to sign): "everyone", "born on or before d" and "born
/// after d" with one person in neither.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracker {
    /// A, B and C.
    pub terms: Vec<CellRef>,
    /// Units whose records differ between A and B + C.
    pub units_differing: u64,
    pub records_differing: u64,
}

/// What the comparison found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Findings {
    /// The threshold the differences were held against.
    pub threshold: u64,
    /// Earlier results compared against.
    pub earlier_results: u64,
    /// Row pairs decoded (after pruning by unit counts).
    pub pairs_decoded: u64,
    /// Pairs that differ by fewer than `threshold` units, at most
    /// [`MAX_PAIRS_KEPT`].
    pub pairs: Vec<Pair>,
    /// Pairs found, including those not kept.
    pub pairs_found: u64,
    /// Rows of this result in a pair or a tracker.
    pub rows_flagged: Vec<u64>,
    /// Inner cells of this result in a pair or a tracker.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inner_flagged: Vec<u64>,
    /// Three-term combinations looked at (after pruning by unit counts;
    /// most are told apart by the bucket screen, the rest decoded).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trackers_decoded: u64,
    /// Trackers found, at most [`MAX_PAIRS_KEPT`] kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trackers: Vec<Tracker>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trackers_found: u64,
    /// False when a decoding budget ran out before every pair and tracker
    /// was looked at, or some inner cells were not recorded.
    pub complete: bool,
}

/// Compares `current` with itself and with `earlier`: every pair of cells
/// whose units differ in `1..threshold` units, then every three-term
/// tracker with at least one cell of `current`.
pub fn compare(
    job_id: &str,
    current: &ResultPrints,
    earlier: &[impl Borrow<Earlier>],
    threshold: u64,
    budget: u64,
) -> Findings {
    compare_with(job_id, current, earlier, threshold, budget, TRACKER_BUDGET)
}

/// [`compare`] with an explicit tracker budget.
pub fn compare_with(
    job_id: &str,
    current: &ResultPrints,
    earlier: &[impl Borrow<Earlier>],
    threshold: u64,
    budget: u64,
    tracker_budget: u64,
) -> Findings {
    search(
        job_id,
        current,
        earlier,
        threshold,
        budget,
        tracker_budget,
        None,
    )
}

/// A cell of a result: `result` is the index into the earlier results, or
/// their number for the current result; `index` a row, or an inner cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Needed {
    pub result: usize,
    pub inner: bool,
    pub index: u64,
}

/// The cells [`compare`] would decode, without decoding anything: the same
/// pruning by unit counts, the same budgets. A comparison needs sketches
/// only when this is not empty. Cells with one identity are not candidates
/// of each other (their difference is nobody).
pub fn candidates(
    job_id: &str,
    current: &ResultPrints,
    earlier: &[impl Borrow<Earlier>],
    threshold: u64,
) -> std::collections::BTreeSet<Needed> {
    let mut needed = std::collections::BTreeSet::new();
    search(
        job_id,
        current,
        earlier,
        threshold,
        DEFAULT_BUDGET,
        TRACKER_BUDGET,
        Some(&mut needed),
    );
    needed
}

/// The search behind [`compare`] and [`candidates`]: with `collect`, every
/// cell a decoding would read is recorded instead of decoded.
fn search(
    job_id: &str,
    current: &ResultPrints,
    earlier: &[impl Borrow<Earlier>],
    threshold: u64,
    budget: u64,
    tracker_budget: u64,
    mut collect: Option<&mut std::collections::BTreeSet<Needed>>,
) -> Findings {
    let reach = threshold.saturating_sub(1);
    let this = earlier.len();
    // Every cell: (units, result index — earlier.len() for this one —, place, print).
    let mut cells: Vec<(u64, usize, Place, &RowPrint)> = Vec::new();
    for (e, r) in earlier.iter().enumerate() {
        cells.extend(r.borrow().prints.cells().map(|(pl, p)| (p.units, e, pl, p)));
    }
    cells.extend(current.cells().map(|(pl, p)| (p.units, this, pl, p)));
    cells.sort_unstable_by_key(|c| (c.0, c.1, c.2.inner, c.2.index));

    let mut findings = Findings {
        threshold,
        earlier_results: earlier.len() as u64,
        pairs_decoded: 0,
        pairs: Vec::new(),
        pairs_found: 0,
        rows_flagged: Vec::new(),
        inner_flagged: Vec::new(),
        trackers_decoded: 0,
        trackers: Vec::new(),
        trackers_found: 0,
        complete: !current.inner_overflow,
    };
    if reach == 0 {
        return findings;
    }
    let job_of = |result: usize| -> String {
        if result == this {
            job_id.to_string()
        } else {
            earlier[result].borrow().job_id.clone()
        }
    };
    let mut flagged: HashSet<Place> = HashSet::new();
    let range = |lo: u64, hi: u64| -> std::ops::Range<usize> {
        cells.partition_point(|c| c.0 < lo)..cells.partition_point(|c| c.0 <= hi)
    };
    let mine: Vec<usize> = (0..cells.len()).filter(|i| cells[*i].1 == this).collect();
    let needed = |result: usize, i: usize| Needed {
        result,
        inner: cells[i].2.inner,
        index: cells[i].2.index,
    };

    'pairs: for &i in &mine {
        let (units, _, place, p) = cells[i];
        for j in range(units.saturating_sub(reach), units.saturating_add(reach)) {
            let (_, result, other, q) = cells[j];
            // Inside this result, each pair once.
            if result == this && j >= i {
                continue;
            }
            // Over the same rows: nothing between them.
            if p.id.is_some() && p.id == q.id {
                continue;
            }
            if findings.pairs_decoded >= budget {
                findings.complete = false;
                break 'pairs;
            }
            findings.pairs_decoded += 1;
            if let Some(c) = collect.as_deref_mut() {
                c.insert(needed(this, i));
                c.insert(needed(result, j));
                continue;
            }
            let (Some(ps), Some(qs)) = (&p.sketch, &q.sketch) else {
                // A candidate without its sketch is not passed as compared.
                findings.complete = false;
                continue;
            };
            let Some(diff) = ps.difference(qs) else {
                continue;
            };
            let n = diff.len() as u64;
            if n == 0 || n >= threshold {
                continue;
            }
            findings.pairs_found += 1;
            flagged.insert(place);
            if result == this {
                flagged.insert(other);
            }
            if findings.pairs.len() < MAX_PAIRS_KEPT {
                findings.pairs.push(Pair {
                    row: place.index,
                    inner: place.inner,
                    other_job_id: job_of(result),
                    other_row: other.index,
                    other_inner: other.inner,
                    units_differing: n,
                    records_differing: diff.iter().map(|d| d.records.unsigned_abs()).sum(),
                });
            }
        }
    }

    // Trackers: A − B − C with at least one of them in this result. For each
    // cell r of this result, r as A (B + C within reach of r) and r as B (A
    // − C within reach of r); each triple once.
    let mut seen: HashSet<(usize, usize, usize)> = HashSet::new();
    let mut check = |a: usize, b: usize, c: usize, findings: &mut Findings| -> bool {
        if a == b || a == c || b == c {
            return true;
        }
        // A triple with one cell of this result is reached once; with more,
        // once per such cell.
        let current = [a, b, c].iter().filter(|t| cells[**t].1 == this).count();
        if current > 1 && !seen.insert((a, b.min(c), b.max(c))) {
            return true;
        }
        if findings.trackers_decoded >= tracker_budget {
            findings.complete = false;
            return false;
        }
        findings.trackers_decoded += 1;
        if let Some(n) = collect.as_deref_mut() {
            for t in [a, b, c] {
                n.insert(needed(cells[t].1, t));
            }
            return true;
        }
        let (Some(sa), Some(sb), Some(sc)) =
            (&cells[a].3.sketch, &cells[b].3.sketch, &cells[c].3.sketch)
        else {
            findings.complete = false;
            return true;
        };
        let Some(diff) = sa.difference3(sb, sc) else {
            return true;
        };
        let n = diff.len() as u64;
        if n == 0 || n >= threshold {
            return true;
        }
        findings.trackers_found += 1;
        for t in [a, b, c] {
            if cells[t].1 == this {
                flagged.insert(cells[t].2);
            }
        }
        if findings.trackers.len() < MAX_PAIRS_KEPT {
            findings.trackers.push(Tracker {
                terms: [a, b, c]
                    .into_iter()
                    .map(|t| CellRef {
                        job_id: job_of(cells[t].1),
                        row: cells[t].2.index,
                        inner: cells[t].2.inner,
                    })
                    .collect(),
                units_differing: n,
                records_differing: diff.iter().map(|d| d.records.unsigned_abs()).sum(),
            });
        }
        true
    };
    'trackers: for &r in &mine {
        let ur = cells[r].0;
        // r as A: B ≤ C in position, u_B + u_C within reach of u_r.
        for (b, &(ub, ..)) in cells.iter().enumerate() {
            if ub > ur.saturating_add(reach) {
                break;
            }
            let lo = ur.saturating_sub(ub).saturating_sub(reach);
            let hi = (ur + reach).saturating_sub(ub);
            for c in range(lo, hi) {
                if c <= b {
                    continue;
                }
                if !check(r, b, c, &mut findings) {
                    break 'trackers;
                }
            }
        }
        // r as B (or C): u_A − u_C within reach of u_r.
        for a in range(ur.saturating_sub(reach), u64::MAX) {
            let ua = cells[a].0;
            let lo = ua.saturating_sub(ur).saturating_sub(reach);
            let hi = (ua + reach).saturating_sub(ur);
            for c in range(lo, hi) {
                if !check(a, r, c, &mut findings) {
                    break 'trackers;
                }
            }
        }
    }

    let mut rows: Vec<u64> = flagged
        .iter()
        .filter(|p| !p.inner)
        .map(|p| p.index)
        .collect();
    rows.sort_unstable();
    // Only this result's places are flagged: other results' were inserted
    // only when they were this result's too (`result == this`).
    findings.rows_flagged = rows;
    let mut inner: Vec<u64> = flagged
        .iter()
        .filter(|p| p.inner)
        .map(|p| p.index)
        .collect();
    inner.sort_unstable();
    findings.inner_flagged = inner;
    findings
}

/// A result's sketches and findings as sealed beside it (JSON; the
/// sketches as base64 of their little-endian sums, identities as hex).
/// A result whose cells were never a candidate has counts and identities
/// only; its sketches are added when a later comparison needs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub format: String,
    pub rows: Vec<Option<StoredRow>>,
    /// Inner cells (absent in records written before they were sketched).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inner: Vec<StoredInner>,
    /// Per inner aggregation, its aggregates as planned (for reviewers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inner_aggregations: Vec<String>,
    pub findings: Option<Findings>,
    /// What re-running the job's plan needs (its datasets' versions and the
    /// grant's views as they were), for sketching its cells later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<serde_json::Value>,
}

/// One row of [`Stored`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRow {
    pub units: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sketch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// One inner cell of [`Stored`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredInner {
    /// Index into [`Stored::inner_aggregations`].
    pub aggregation: u64,
    pub units: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sketch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

fn encode(p: &RowPrint) -> (Option<String>, Option<String>) {
    let b64 = base64::engine::general_purpose::STANDARD;
    (
        p.sketch.as_ref().map(|s| b64.encode(s.to_bytes())),
        p.id.map(|id| format!("{id:032x}")),
    )
}

fn decode(units: u64, sketch: &Option<String>, id: &Option<String>) -> Option<RowPrint> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let sketch = match sketch {
        Some(s) => Some(Sketch::from_bytes(&b64.decode(s).ok()?)?),
        None => None,
    };
    let id = match id {
        Some(h) => Some(u128::from_str_radix(h, 16).ok()?),
        None => None,
    };
    Some(RowPrint { units, sketch, id })
}

impl Stored {
    pub fn new(prints: &ResultPrints, findings: Option<Findings>) -> Stored {
        Stored {
            format: FORMAT.to_string(),
            rows: prints
                .rows
                .iter()
                .map(|r| {
                    r.as_ref().map(|p| {
                        let (sketch, id) = encode(p);
                        StoredRow {
                            units: p.units,
                            sketch,
                            id,
                        }
                    })
                })
                .collect(),
            inner: prints
                .inner
                .iter()
                .map(|(a, p)| {
                    let (sketch, id) = encode(p);
                    StoredInner {
                        aggregation: *a,
                        units: p.units,
                        sketch,
                        id,
                    }
                })
                .collect(),
            inner_aggregations: Vec::new(),
            findings,
            replay: None,
        }
    }

    /// The sketches again; `None` when the record is not one this version reads.
    pub fn prints(&self) -> Option<ResultPrints> {
        if self.format != FORMAT {
            return None;
        }
        let rows = self
            .rows
            .iter()
            .map(|r| match r {
                None => Some(None),
                Some(r) => decode(r.units, &r.sketch, &r.id).map(Some),
            })
            .collect::<Option<Vec<_>>>()?;
        let inner = self
            .inner
            .iter()
            .map(|c| Some((c.aggregation, decode(c.units, &c.sketch, &c.id)?)))
            .collect::<Option<Vec<_>>>()?;
        Some(ResultPrints {
            rows,
            inner,
            inner_overflow: false,
        })
    }

    /// Puts `prints`' sketches (the same cells, sketched) into this record.
    pub fn set_sketches(&mut self, prints: &ResultPrints) {
        let fresh = Stored::new(prints, None);
        for (mine, theirs) in self.rows.iter_mut().zip(fresh.rows) {
            if let (Some(m), Some(t)) = (mine, theirs) {
                m.sketch = t.sketch;
            }
        }
        for (mine, theirs) in self.inner.iter_mut().zip(fresh.inner) {
            mine.sketch = theirs.sketch;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: [Earlier; 0] = [];

    /// Units `ids` (elements 1000 + id), one record each.
    fn print(ids: impl IntoIterator<Item = u64>) -> Option<RowPrint> {
        let mut sketch = Sketch::new(4);
        let mut units = 0;
        for id in ids {
            sketch.add(1000 + id, 1);
            units += 1;
        }
        Some(RowPrint {
            units,
            sketch: Some(sketch),
            id: None,
        })
    }

    fn result(rows: Vec<Option<RowPrint>>) -> ResultPrints {
        ResultPrints {
            rows,
            ..Default::default()
        }
    }

    #[test]
    fn finds_small_differences_only() {
        let earlier = vec![Earlier {
            job_id: "a".into(),
            prints: result(vec![print(0..40), print(100..150), None]),
        }];
        // Row 0: one person fewer than a's row 0. Row 1: 30 fewer (honest).
        // Row 2: the same persons as a's row 1 (a repeat, nothing new).
        let current = result(vec![print(1..40), print(100..120), print(100..150)]);
        let f = compare("b", &current, &earlier, 5, DEFAULT_BUDGET);
        assert!(f.complete);
        assert_eq!(
            f.pairs,
            vec![Pair {
                row: 0,
                inner: false,
                other_job_id: "a".into(),
                other_row: 0,
                other_inner: false,
                units_differing: 1,
                records_differing: 1,
            }]
        );
        assert_eq!(f.rows_flagged, vec![0]);
        // The counts pruned every pair but the two of equal-ish size.
        assert_eq!(f.pairs_decoded, 2);
    }

    #[test]
    fn rows_of_one_result_are_compared_with_each_other() {
        // A total and a subtotal four persons apart (ROLLUP-like).
        let current = result(vec![print(0..30), print(0..26)]);
        let f = compare("b", &current, &NONE, 5, DEFAULT_BUDGET);
        // Both rows of the arithmetic are flagged.
        assert_eq!(f.rows_flagged, vec![0, 1]);
        assert_eq!(f.pairs[0].other_job_id, "b");
        assert_eq!(f.pairs[0].units_differing, 4);
        // Five apart is not fewer than the threshold.
        let current = result(vec![print(0..30), print(0..25)]);
        assert!(
            compare("b", &current, &NONE, 5, DEFAULT_BUDGET)
                .pairs
                .is_empty()
        );
    }

    #[test]
    fn three_term_trackers_are_found_across_results_and_within_one() {
        // Everyone (0..61); born on or before d (0..30); born after d but
        // before the last one (30..60): person 60 is in neither half.
        let earlier = vec![
            Earlier {
                job_id: "all".into(),
                prints: result(vec![print(0..61)]),
            },
            Earlier {
                job_id: "before".into(),
                prints: result(vec![print(0..30)]),
            },
        ];
        let current = result(vec![print(30..60)]);
        let f = compare("after", &current, &earlier, 5, DEFAULT_BUDGET);
        assert!(f.pairs.is_empty());
        assert_eq!(f.rows_flagged, vec![0]);
        assert_eq!(f.trackers.len(), 1);
        let t = &f.trackers[0];
        let jobs: Vec<&str> = t.terms.iter().map(|c| c.job_id.as_str()).collect();
        assert_eq!(jobs[0], "all");
        assert_eq!(t.units_differing, 1);

        // The same three inside one result.
        let one = result(vec![print(0..61), print(0..30), print(30..60)]);
        let f = compare("x", &one, &NONE, 5, DEFAULT_BUDGET);
        assert_eq!(f.trackers.len(), 1, "{f:?}");
        assert_eq!(f.rows_flagged, vec![0, 1, 2]);

        // B + C − A: the halves overlap in one person.
        let one = result(vec![print(0..60), print(0..31), print(30..60)]);
        let f = compare("x", &one, &NONE, 5, DEFAULT_BUDGET);
        assert_eq!(f.trackers.len(), 1);

        // An exact partition is nobody: no flag.
        let one = result(vec![print(0..60), print(0..30), print(30..60)]);
        let f = compare("x", &one, &NONE, 5, DEFAULT_BUDGET);
        assert!(f.trackers.is_empty() && f.rows_flagged.is_empty());
    }

    #[test]
    fn inner_cells_are_compared_like_rows() {
        // SELECT (SELECT sum(x) FROM t) − (SELECT sum(x) FROM t WHERE NOT <one>).
        let mut current = result(vec![None]);
        current.inner = vec![(0, print(0..40).unwrap()), (1, print(1..40).unwrap())];
        let f = compare("q", &current, &NONE, 5, DEFAULT_BUDGET);
        assert_eq!(f.inner_flagged, vec![0, 1]);
        assert!(f.rows_flagged.is_empty());
        assert!(f.pairs[0].inner && f.pairs[0].other_inner);
        // Too many to record: not complete.
        current.inner_overflow = true;
        assert!(!compare("q", &current, &NONE, 5, DEFAULT_BUDGET).complete);
    }

    #[test]
    fn an_exhausted_tracker_budget_is_reported() {
        let one = result((0..10).map(|i| print(i * 100..i * 100 + 20)).collect());
        let f = compare_with("x", &one, &NONE, 30, DEFAULT_BUDGET, 3);
        assert!(!f.complete);
        assert_eq!(f.trackers_decoded, 3);
    }

    /// The cost of one check against many earlier cells (run with
    /// `cargo test -p enclave --release --lib tracker_cost -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn tracker_cost() {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s >> 11
        };
        for n in [10usize, 1_000, 10_000, 100_000] {
            // Earlier results of 10 rows each, cells of 10..5,000 persons
            // (threshold 10).
            let mut earlier = Vec::new();
            for j in 0..n.div_ceil(10) {
                let rows = (0..10.min(n - j * 10))
                    .map(|_| {
                        // Sums of distinct large sets look random.
                        let units = 10 + next() % 4_990;
                        let sums = (0..20).map(|_| next() % super::super::sketch::P);
                        let sketch = Sketch::from_sums(sums.collect());
                        Some(RowPrint {
                            units,
                            sketch,
                            id: None,
                        })
                    })
                    .collect();
                earlier.push(Earlier {
                    job_id: format!("e{j}"),
                    prints: result(rows),
                });
            }
            let current = result(
                (0..10)
                    .map(|_| {
                        // Sums of distinct large sets look random.
                        let units = 10 + next() % 4_990;
                        let sums = (0..20).map(|_| next() % super::super::sketch::P);
                        let sketch = Sketch::from_sums(sums.collect());
                        Some(RowPrint {
                            units,
                            sketch,
                            id: None,
                        })
                    })
                    .collect(),
            );
            let t = std::time::Instant::now();
            let f = compare("now", &current, &earlier, 10, DEFAULT_BUDGET);
            println!(
                "earlier cells {n:>7}: {:>8.1} ms, pairs decoded {}, trackers decoded {}, complete {}",
                t.elapsed().as_secs_f64() * 1e3,
                f.pairs_decoded,
                f.trackers_decoded,
                f.complete
            );
            // The lazy path's first step: the same search over counts and
            // identities, nothing decoded.
            let strip = |p: &ResultPrints| ResultPrints {
                rows: p
                    .rows
                    .iter()
                    .map(|r| {
                        r.as_ref().map(|r| RowPrint {
                            units: r.units,
                            sketch: None,
                            id: Some(u128::from(r.sketch.as_ref().unwrap().sums()[0])),
                        })
                    })
                    .collect(),
                ..Default::default()
            };
            let lazy: Vec<Earlier> = earlier
                .iter()
                .map(|e| Earlier {
                    job_id: e.job_id.clone(),
                    prints: strip(&e.prints),
                })
                .collect();
            let t = std::time::Instant::now();
            let needed = candidates("now", &strip(&current), &lazy, 10);
            println!(
                "  candidates only: {:>8.1} ms, cells needing a sketch {}",
                t.elapsed().as_secs_f64() * 1e3,
                needed.len()
            );
        }
    }

    /// Without sketches: the cells a comparison would decode.
    #[test]
    fn candidates_are_what_compare_decodes() {
        let unsketched = |p: Option<RowPrint>, id: u128| {
            p.map(|p| RowPrint {
                sketch: None,
                id: Some(id),
                ..p
            })
        };
        let earlier = vec![Earlier {
            job_id: "a".into(),
            prints: result(vec![
                unsketched(print(0..40), 1),
                unsketched(print(100..150), 2),
            ]),
        }];
        // Row 0 is within reach of a's row 0 by count; row 1 is a's row 1
        // again (the same identity); row 2 is far from everything.
        let current = result(vec![
            unsketched(print(1..40), 3),
            unsketched(print(100..150), 2),
            unsketched(print(200..400), 4),
        ]);
        let needed = candidates("b", &current, &earlier, 5);
        let cells: Vec<(usize, u64)> = needed.iter().map(|n| (n.result, n.index)).collect();
        assert_eq!(cells, vec![(0, 0), (1, 0)]);
        // Without the sketches the comparison is not complete.
        assert!(!compare("b", &current, &earlier, 5, DEFAULT_BUDGET).complete);
        // Nothing within reach: nothing needed, and complete as it is.
        let alone = result(vec![unsketched(print(200..400), 4)]);
        assert!(candidates("b", &alone, &earlier, 5).is_empty());
        assert!(compare("b", &alone, &earlier, 5, DEFAULT_BUDGET).complete);
    }

    #[test]
    fn cells_with_one_identity_are_not_compared() {
        let mut p = print(0..30).unwrap();
        p.id = Some(7);
        let mut q = print(0..29).unwrap();
        // Claimed to be the same rows: never decoded.
        q.id = Some(7);
        let f = compare(
            "b",
            &result(vec![Some(p.clone())]),
            &[Earlier {
                job_id: "a".into(),
                prints: result(vec![Some(q.clone())]),
            }],
            5,
            DEFAULT_BUDGET,
        );
        assert_eq!(f.pairs_decoded, 0);
        q.id = Some(8);
        let f = compare(
            "b",
            &result(vec![Some(p)]),
            &[Earlier {
                job_id: "a".into(),
                prints: result(vec![Some(q)]),
            }],
            5,
            DEFAULT_BUDGET,
        );
        assert_eq!(f.pairs_found, 1);
    }

    #[test]
    fn an_exhausted_budget_is_reported() {
        let earlier: Vec<Earlier> = (0..3)
            .map(|i| Earlier {
                job_id: format!("e{i}"),
                prints: result(vec![print(i * 100..i * 100 + 20)]),
            })
            .collect();
        let current = result(vec![print(500..520)]);
        let f = compare("b", &current, &earlier, 5, 2);
        assert!(!f.complete);
        assert_eq!(f.pairs_decoded, 2);
    }

    /// The sealed record's shape (a persisted format).
    #[test]
    fn stored_format() {
        let prints = result(vec![print(0..2), None]);
        let findings = compare("b", &prints, &NONE, 3, DEFAULT_BUDGET);
        insta::assert_json_snapshot!(Stored::new(&prints, Some(findings)));
    }

    #[test]
    fn stored_round_trips() {
        let prints = result(vec![print(0..3), None]);
        let stored = Stored::new(&prints, None);
        let json = serde_json::to_string(&stored).unwrap();
        let back: Stored = serde_json::from_str(&json).unwrap();
        assert_eq!(back.prints().unwrap(), prints);
        let mut other = back.clone();
        other.format = "anyu-differencing/9".into();
        assert!(other.prints().is_none());
    }
}
