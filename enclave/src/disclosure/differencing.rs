//! Differencing: a new result's rows against every earlier result of the
//! same grant or researcher (and against each other), by the sketches of
//! the privacy units behind each row ([`super::sketch`]).
//!
//! ```text
//!  this result's sketches ──┐
//!  earlier results' sketches ┴─▶ index by units ─▶ pairs whose unit counts are within T − 1
//!       ─▶ decode each pair's difference ─▶ 0 < units differing < T ─▶ Pair
//!       ─▶ DifferencingRule: the row's cells to review; the pairs to the review packet
//! ```
//!
//! The unit counts prune soundly: two rows whose counts differ by `d` differ
//! in at least `d` units. Decoding is bounded by [`DEFAULT_BUDGET`] pairs; a
//! result that needs more is reviewed as a whole rather than passed
//! unchecked.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::sketch::Sketch;

/// Pair decodings one check may spend (each takes a few microseconds).
pub const DEFAULT_BUDGET: u64 = 1_000_000;

/// Pairs kept for reviewers; the rule counts them all.
pub const MAX_PAIRS_KEPT: usize = 200;

/// The version of [`Stored`].
pub const FORMAT: &str = "anyu-differencing/1";

/// The units behind one row of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowPrint {
    /// Distinct units behind the row (summed over the datasets read).
    pub units: u64,
    pub sketch: Sketch,
}

/// One result's rows, in order; `None` for a row without a sketch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultPrints {
    pub rows: Vec<Option<RowPrint>>,
}

/// An earlier result.
#[derive(Debug, Clone)]
pub struct Earlier {
    pub job_id: String,
    pub prints: ResultPrints,
}

/// A row of this result whose units differ from those of another row (of
/// an earlier result, or of this one) by fewer than the threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Pair {
    /// The row of this result.
    pub row: u64,
    /// The other row's job (this job's own id for a pair inside the result).
    pub other_job_id: String,
    pub other_row: u64,
    /// Units whose records differ between the two rows.
    pub units_differing: u64,
    /// Records by which they differ, summed over those units.
    pub records_differing: u64,
}

/// What the comparison found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Rows of this result in a pair.
    pub rows_flagged: Vec<u64>,
    /// False when the decoding budget ran out before every pair was looked at.
    pub complete: bool,
}

/// Compares `current` with itself and with `earlier`: every pair of rows
/// whose units differ in `1..threshold` units.
pub fn compare(
    job_id: &str,
    current: &ResultPrints,
    earlier: &[Earlier],
    threshold: u64,
    budget: u64,
) -> Findings {
    let reach = threshold.saturating_sub(1);
    // (units, result index — earlier.len() for this one — , row)
    let mut index: Vec<(u64, usize, usize)> = Vec::new();
    for (e, r) in earlier.iter().enumerate() {
        for (row, p) in r.prints.rows.iter().enumerate() {
            if let Some(p) = p {
                index.push((p.units, e, row));
            }
        }
    }
    let this = earlier.len();
    for (row, p) in current.rows.iter().enumerate() {
        if let Some(p) = p {
            index.push((p.units, this, row));
        }
    }
    index.sort_unstable();
    let print = |result: usize, row: usize| -> &RowPrint {
        let rows = if result == this {
            &current.rows
        } else {
            &earlier[result].prints.rows
        };
        rows[row].as_ref().expect("indexed rows have prints")
    };

    let mut findings = Findings {
        threshold,
        earlier_results: earlier.len() as u64,
        pairs_decoded: 0,
        pairs: Vec::new(),
        pairs_found: 0,
        rows_flagged: Vec::new(),
        complete: true,
    };
    if reach == 0 {
        return findings;
    }
    'rows: for (row, p) in current.rows.iter().enumerate() {
        let Some(p) = p else { continue };
        let lo = index.partition_point(|(u, _, _)| *u < p.units.saturating_sub(reach));
        let hi = index.partition_point(|(u, _, _)| *u <= p.units.saturating_add(reach));
        let mut flagged = false;
        for &(_, result, other) in &index[lo..hi] {
            // Inside this result, each pair once.
            if result == this && other >= row {
                continue;
            }
            if findings.pairs_decoded >= budget {
                findings.complete = false;
                break 'rows;
            }
            findings.pairs_decoded += 1;
            let Some(diff) = p.sketch.difference(&print(result, other).sketch) else {
                continue;
            };
            let units = diff.len() as u64;
            if units == 0 || units >= threshold {
                continue;
            }
            findings.pairs_found += 1;
            flagged = true;
            if findings.pairs.len() < MAX_PAIRS_KEPT {
                findings.pairs.push(Pair {
                    row: row as u64,
                    other_job_id: if result == this {
                        job_id.to_string()
                    } else {
                        earlier[result].job_id.clone()
                    },
                    other_row: other as u64,
                    units_differing: units,
                    records_differing: diff.iter().map(|d| d.records.unsigned_abs()).sum(),
                });
            }
        }
        if flagged {
            findings.rows_flagged.push(row as u64);
        }
    }
    findings
}

/// A result's sketches and findings as sealed beside it (JSON; the
/// sketches as base64 of their little-endian sums).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub format: String,
    pub rows: Vec<Option<StoredRow>>,
    pub findings: Option<Findings>,
}

/// One row of [`Stored`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRow {
    pub units: u64,
    pub sketch: String,
}

impl Stored {
    pub fn new(prints: &ResultPrints, findings: Option<Findings>) -> Stored {
        let b64 = base64::engine::general_purpose::STANDARD;
        Stored {
            format: FORMAT.to_string(),
            rows: prints
                .rows
                .iter()
                .map(|r| {
                    r.as_ref().map(|p| StoredRow {
                        units: p.units,
                        sketch: b64.encode(p.sketch.to_bytes()),
                    })
                })
                .collect(),
            findings,
        }
    }

    /// The sketches again; `None` when the record is not one this version reads.
    pub fn prints(&self) -> Option<ResultPrints> {
        if self.format != FORMAT {
            return None;
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let rows = self
            .rows
            .iter()
            .map(|r| match r {
                None => Some(None),
                Some(r) => {
                    let bytes = b64.decode(&r.sketch).ok()?;
                    Some(Some(RowPrint {
                        units: r.units,
                        sketch: Sketch::from_bytes(&bytes)?,
                    }))
                }
            })
            .collect::<Option<Vec<_>>>()?;
        Some(ResultPrints { rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Units `ids` (elements 1000 + id), one record each.
    fn print(ids: impl IntoIterator<Item = u64>) -> Option<RowPrint> {
        let mut sketch = Sketch::new(4);
        let mut units = 0;
        for id in ids {
            sketch.add(1000 + id, 1);
            units += 1;
        }
        Some(RowPrint { units, sketch })
    }

    fn result(rows: Vec<Option<RowPrint>>) -> ResultPrints {
        ResultPrints { rows }
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
                other_job_id: "a".into(),
                other_row: 0,
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
        let f = compare("b", &current, &[], 5, DEFAULT_BUDGET);
        assert_eq!(f.rows_flagged, vec![1]);
        assert_eq!(f.pairs[0].other_job_id, "b");
        assert_eq!(f.pairs[0].units_differing, 4);
        // Five apart is not fewer than the threshold.
        let current = result(vec![print(0..30), print(0..25)]);
        assert!(
            compare("b", &current, &[], 5, DEFAULT_BUDGET)
                .pairs
                .is_empty()
        );
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
        let findings = compare("b", &prints, &[], 3, DEFAULT_BUDGET);
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
