//! A DP value on the fixed-point grid in one pass: clamped to the manifest's
//! bounds, scaled by 2^k, rounded, as Int64 (NULL for NULL and NaN).
//!
//! The same as `TRY_CAST(round(CASE WHEN x < lo THEN lo WHEN x > hi THEN hi
//! ELSE x END * 2^k) AS BIGINT)` over `x` as Float64, which the plan used to
//! spell out: that form made three passes over every row and a CASE, and
//! took as long as the aggregation itself.

use std::sync::Arc;

use datafusion::arrow::array::{Array, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// `x` clamped to [lo, hi], times `factor`, rounded half away from zero.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct FixedPoint {
    signature: Signature,
    /// `f64::to_bits` of lo, hi and the factor (an UDF is compared and hashed).
    lo: u64,
    hi: u64,
    factor: u64,
}

impl FixedPoint {
    pub(crate) fn udf(lo: f64, hi: f64, factor: f64) -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(FixedPoint {
            signature: Signature::any(1, Volatility::Immutable),
            lo: lo.to_bits(),
            hi: hi.to_bits(),
            factor: factor.to_bits(),
        }))
    }

    /// One value; `None` for NaN (as the cast of NaN to an integer).
    fn value(&self, x: f64) -> Option<i64> {
        let (lo, hi, factor) = (
            f64::from_bits(self.lo),
            f64::from_bits(self.hi),
            f64::from_bits(self.factor),
        );
        // Written as the CASE was: NaN compares false both ways and stays NaN.
        let clamped = if x < lo {
            lo
        } else if x > hi {
            hi
        } else {
            x
        };
        let v = (clamped * factor).round();
        // |bound|·2^k ≤ 2^30: in range whenever not NaN.
        (v.is_finite() && v.abs() < 9.2e18).then_some(v as i64)
    }
}

impl ScalarUDFImpl for FixedPoint {
    fn name(&self) -> &str {
        "__anyu_fixed_point"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let x = args.args[0].to_array(args.number_rows)?;
        let x = cast(&x, &DataType::Float64)?;
        let x = x
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("cast to Float64");
        let out = x.unary_opt::<_, Int64Type>(|v| self.value(v));
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(Arc::new(out))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_scales_and_rounds_as_the_case_did() {
        let f = FixedPoint {
            signature: Signature::any(1, Volatility::Immutable),
            lo: 0f64.to_bits(),
            hi: 100f64.to_bits(),
            factor: 4f64.to_bits(),
        };
        assert_eq!(f.value(-3.0), Some(0));
        assert_eq!(f.value(250.0), Some(400));
        assert_eq!(f.value(2.125), Some(9), "8.5 rounds away from zero");
        assert_eq!(f.value(-0.0), Some(0));
        assert_eq!(f.value(f64::NAN), None);
        assert_eq!(f.value(f64::INFINITY), Some(400));
        assert_eq!(f.value(f64::NEG_INFINITY), Some(0));
    }
}
