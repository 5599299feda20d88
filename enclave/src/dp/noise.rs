//! Noise, only through opendp: discrete Laplace on integers (exact sampling,
//! no floating-point attack surface) and the Laplace-threshold group
//! selection. Scales and thresholds are checked against opendp's own privacy
//! maps, never derived by hand alone.

use std::collections::HashMap;

use opendp::domains::{AtomDomain, MapDomain, VectorDomain};
use opendp::measurements::{make_laplace, make_laplace_threshold};
use opendp::measures::{Approximate, MaxDivergence};
use opendp::metrics::{AbsoluteDistance, L1Distance, L01InfDistance};

use crate::{Error, Result};

fn opendp_error(e: opendp::error::Error) -> Error {
    // opendp's messages describe parameters, never data; still kept internal.
    tracing::error!(error = ?e.variant, "opendp refused");
    Error::Internal("the differential-privacy library refused the parameters".into())
}

type VecLaplace = opendp::core::Measurement<
    VectorDomain<AtomDomain<i64>>,
    L1Distance<i64>,
    MaxDivergence,
    Vec<i64>,
>;

fn vec_laplace(scale: f64) -> Result<VecLaplace> {
    make_laplace(
        VectorDomain::new(AtomDomain::<i64>::default()),
        L1Distance::<i64>::default(),
        scale,
        None,
    )
    .map_err(opendp_error)
}

/// The smallest scale whose opendp privacy map gives at most `epsilon` for
/// L1 sensitivity `sensitivity`, and the ε it gives.
pub fn laplace_scale(sensitivity: i64, epsilon: f64) -> Result<(f64, f64)> {
    let mut scale = sensitivity as f64 / epsilon;
    for _ in 0..64 {
        let e = vec_laplace(scale)?
            .map(&sensitivity)
            .map_err(opendp_error)?;
        if e <= epsilon {
            return Ok((scale, e));
        }
        scale = scale.next_up();
    }
    Err(Error::Internal("no Laplace scale fits the ε share".into()))
}

/// Adds discrete Laplace noise of `scale` to every value (opendp `make_laplace`).
pub fn laplace(values: &[i64], scale: f64) -> Result<Vec<i64>> {
    vec_laplace(scale)?
        .invoke(&values.to_vec())
        .map_err(opendp_error)
}

type Threshold = opendp::core::Measurement<
    MapDomain<AtomDomain<u64>, AtomDomain<i64>>,
    L01InfDistance<AbsoluteDistance<i64>>,
    Approximate<MaxDivergence>,
    HashMap<u64, i64>,
>;

fn threshold_meas(scale: f64, threshold: i64) -> Result<Threshold> {
    make_laplace_threshold(
        MapDomain::new(AtomDomain::<u64>::default(), AtomDomain::<i64>::default()),
        L01InfDistance::<AbsoluteDistance<i64>>::default(),
        scale,
        threshold,
        None,
    )
    .map_err(opendp_error)
}

/// Parameters of a group selection: one unit changes at most `groups`
/// unit counts, each by at most 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SelectionParams {
    pub scale: f64,
    pub threshold: i64,
    pub epsilon: f64,
    pub delta: f64,
}

/// Scale from the ε share, then the smallest threshold whose δ (by opendp's
/// map) is at most `delta`.
pub fn selection_params(groups: u32, epsilon: f64, delta: f64) -> Result<SelectionParams> {
    if !(delta > 0.0 && delta < 1.0) {
        return Err(crate::query::policy::refuse(
            "dp_delta_required",
            "a grouped differentially private query needs delta in (0, 1) to hide which groups exist",
        ));
    }
    let d_in = (groups, i64::from(groups), 1i64);
    let mut scale = f64::from(groups) / epsilon;
    let at = |scale: f64, t: i64| -> Result<(f64, f64)> {
        threshold_meas(scale, t)?.map(&d_in).map_err(opendp_error)
    };
    // ε of the threshold mechanism does not depend on the threshold.
    for _ in 0..64 {
        if at(scale, i64::MAX / 4)?.0 <= epsilon {
            break;
        }
        scale = scale.next_up();
    }
    let (mut lo, mut hi) = (1i64, 2i64);
    while at(scale, hi)?.1 > delta {
        lo = hi;
        hi = hi.checked_mul(2).ok_or_else(|| {
            Error::Internal("no selection threshold reaches the requested δ".into())
        })?;
    }
    // Smallest t in (lo, hi] with δ(t) ≤ delta (δ falls as t grows).
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if at(scale, mid)?.1 <= delta {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let (e, d) = at(scale, hi)?;
    if e > epsilon || d > delta {
        return Err(Error::Internal(
            "selection parameters exceed their share".into(),
        ));
    }
    Ok(SelectionParams {
        scale,
        threshold: hi,
        epsilon: e,
        delta: d,
    })
}

/// Keys whose noisy count reaches the threshold (opendp `make_laplace_threshold`).
pub fn select(counts: HashMap<u64, i64>, p: &SelectionParams) -> Result<Vec<u64>> {
    let kept = threshold_meas(p.scale, p.threshold)?
        .invoke(&counts)
        .map_err(opendp_error)?;
    let mut keys: Vec<u64> = kept.into_keys().collect();
    keys.sort_unstable();
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample standard deviation of discrete Laplace noise is b·√2
    /// within 15 % over 4000 draws (fails for a scale off by 1.3×).
    #[test]
    fn noise_has_the_stated_scale() {
        for (sens, eps) in [(1i64, 1.0), (10, 0.5), (1000, 2.0)] {
            let (b, e) = laplace_scale(sens, eps).unwrap();
            assert!(e <= eps);
            assert!((b - sens as f64 / eps).abs() / b < 1e-9);
            let draws = laplace(&vec![0i64; 4000], b).unwrap();
            let n = draws.len() as f64;
            let mean = draws.iter().map(|&x| x as f64).sum::<f64>() / n;
            let var = draws
                .iter()
                .map(|&x| (x as f64 - mean).powi(2))
                .sum::<f64>()
                / (n - 1.0);
            let (sd, want) = (var.sqrt(), b * 2f64.sqrt());
            // Discrete Laplace at scale ≥ 1: sd within a few % of b√2.
            assert!((sd - want).abs() / want < 0.15, "sd {sd}, stated {want}");
        }
    }

    #[test]
    fn selection_threshold_follows_delta() {
        let a = selection_params(1, 1.0, 1e-6).unwrap();
        let b = selection_params(1, 1.0, 1e-9).unwrap();
        assert!(a.delta <= 1e-6 && b.delta <= 1e-9);
        assert!(b.threshold > a.threshold);
        // Laplace tail: τ ≈ 1 + b·ln(1/(2δ)).
        assert!(
            (a.threshold as f64 - (1.0 + (1.0 / 2e-6f64).ln())).abs() < 3.0,
            "{a:?}"
        );
        // A group of one unit almost never passes; a large one always does.
        let mut seen = 0;
        for _ in 0..2000 {
            let kept = select(HashMap::from([(0, 1), (1, 1000)]), &a).unwrap();
            assert!(kept.contains(&1));
            seen += usize::from(kept.contains(&0));
        }
        assert_eq!(seen, 0);
        assert_eq!(
            selection_params(1, 1.0, 0.0).unwrap_err().code(),
            "dp_delta_required"
        );
    }
}
