//! Grades (分级): the platform's scale and how a grade tightens a dataset's policy.

use serde::{Deserialize, Serialize};

use super::error::ManifestError;
use super::manifest::DisclosurePolicy;

/// The platform's grade levels, least to most sensitive. Loaded from the platform
/// configuration (`[[grades.levels]]`); [`Default`] is L1..L4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradeScale {
    /// The levels, least sensitive first.
    pub levels: Vec<GradePolicy>,
}

/// What one grade allows and requires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradePolicy {
    /// Grade name as manifests spell it, e.g. `L3`.
    pub name: String,
    /// Floor for the aggregation and frequency thresholds.
    pub min_threshold: u64,
    /// Whether results may be released without steward review.
    pub auto_release_allowed: bool,
    /// Whether results may contain individual rows.
    pub row_level_output_allowed: bool,
    /// Reviewers needed for an application or a release (four-eyes at 2).
    pub reviewers_required: u32,
    /// Whether the platform administrator co-reviews (joint review).
    pub joint_review: bool,
    /// Ceiling for the dominance rule's k (a smaller k fails more cells).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_nk_k: Option<f64>,
    /// Floor for the p-ratio rule's p.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p_ratio: Option<f64>,
}

impl Default for GradeScale {
    fn default() -> Self {
        let level = |name: &str, min_threshold, auto, rows, reviewers, joint| GradePolicy {
            name: name.to_owned(),
            min_threshold,
            auto_release_allowed: auto,
            row_level_output_allowed: rows,
            reviewers_required: reviewers,
            joint_review: joint,
            max_nk_k: None,
            min_p_ratio: None,
        };
        GradeScale {
            levels: vec![
                level("L1", 0, true, true, 1, false),
                level("L2", 10, true, false, 1, true),
                level("L3", 10, false, false, 2, true),
                GradePolicy {
                    // The most sensitive grade: dominance tightened too.
                    max_nk_k: Some(0.8),
                    min_p_ratio: Some(0.15),
                    ..level("L4", 20, false, false, 2, true)
                },
            ],
        }
    }
}

impl GradeScale {
    /// The level of that name.
    pub fn get(&self, name: &str) -> Option<&GradePolicy> {
        self.levels.iter().find(|g| g.name == name)
    }

    /// Level names, least sensitive first.
    pub fn names(&self) -> Vec<&str> {
        self.levels.iter().map(|g| g.name.as_str()).collect()
    }

    /// The strictest combination of all levels; applied to a grade the scale
    /// does not know (e.g. after a configuration change), so that an unknown
    /// grade never loosens anything.
    pub fn strictest(&self) -> GradePolicy {
        GradePolicy {
            name: String::new(),
            min_threshold: self
                .levels
                .iter()
                .map(|g| g.min_threshold)
                .max()
                .unwrap_or(0),
            auto_release_allowed: false,
            row_level_output_allowed: false,
            reviewers_required: self
                .levels
                .iter()
                .map(|g| g.reviewers_required)
                .max()
                .unwrap_or(2)
                .max(1),
            joint_review: true,
            max_nk_k: self
                .levels
                .iter()
                .filter_map(|g| g.max_nk_k)
                .reduce(f64::min),
            min_p_ratio: self
                .levels
                .iter()
                .filter_map(|g| g.min_p_ratio)
                .reduce(f64::max),
        }
    }

    /// `policy` tightened by grade `grade`: thresholds raised to the grade's
    /// floor, dominance parameters to its limits, auto-release and row-level output switched off where the grade
    /// forbids them. Never loosens.
    pub fn tighten(&self, grade: &str, policy: &DisclosurePolicy) -> DisclosurePolicy {
        let level = self.get(grade).cloned().unwrap_or_else(|| self.strictest());
        let mut p = policy.clone();
        p.threshold = p.threshold.max(level.min_threshold);
        p.frequency_threshold = p.frequency_threshold.max(level.min_threshold);
        p.auto_release &= level.auto_release_allowed;
        p.row_level_output &= level.row_level_output_allowed;
        if let Some(k) = level.max_nk_k {
            p.nk.k = p.nk.k.min(k);
        }
        if let Some(q) = level.min_p_ratio {
            p.p_ratio = p.p_ratio.max(q);
        }
        p
    }

    /// Checks the scale itself: at least one level, names unique and non-empty,
    /// at least one reviewer per level.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.levels.is_empty() {
            return Err(ManifestError::new(
                "grades.levels",
                "at least one grade level is required",
            ));
        }
        for (i, g) in self.levels.iter().enumerate() {
            let field = format!("grades.levels[{i}]");
            if g.name.trim().is_empty() {
                return Err(ManifestError::new(
                    format!("{field}.name"),
                    "must not be empty",
                ));
            }
            if self.levels[..i].iter().any(|o| o.name == g.name) {
                return Err(ManifestError::new(
                    format!("{field}.name"),
                    format!("grade `{}` is defined twice", g.name),
                ));
            }
            if g.max_nk_k.is_some_and(|k| !(k > 0.0 && k <= 1.0)) {
                return Err(ManifestError::new(
                    format!("{field}.max_nk_k"),
                    "must be in (0, 1]",
                ));
            }
            if g.min_p_ratio.is_some_and(|p| !(0.0..1.0).contains(&p)) {
                return Err(ManifestError::new(
                    format!("{field}.min_p_ratio"),
                    "must be in [0, 1)",
                ));
            }
            if g.reviewers_required == 0 {
                return Err(ManifestError::new(
                    format!("{field}.reviewers_required"),
                    "must be at least 1",
                ));
            }
        }
        Ok(())
    }
}
