//! `anyu_top_n`: the sum of the `n` largest values of a group — the numerator
//! of the (n, k) dominance rule — in one pass, without sorting the group.
//!
//! State per group: its `n` largest values, kept descending. Partial states
//! merge by keeping the `n` largest of both. Nulls are skipped.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// Largest `n` the rule supports (ACRO's default is 2).
pub const MAX_N: usize = 8;

#[derive(Debug, PartialEq, Eq, Hash)]
struct TopN {
    n: usize,
    name: String,
    signature: Signature,
}

/// The UDAF summing the `n` largest values (`1 ≤ n ≤ MAX_N`).
pub fn top_n_udaf(n: usize) -> Arc<AggregateUDF> {
    let n = n.clamp(1, MAX_N);
    Arc::new(AggregateUDF::from(TopN {
        n,
        name: format!("anyu_top{n}"),
        signature: Signature::exact(vec![DataType::Float64], Volatility::Immutable),
    }))
}

/// Inserts `v` into `tops` (descending, at most `n` long).
fn push(tops: &mut [f64], len: &mut usize, v: f64) {
    let n = tops.len();
    if *len == n && v <= tops[n - 1] {
        return;
    }
    let mut i = (*len).min(n - 1);
    if *len < n {
        *len += 1;
    }
    // Shift smaller values down, then place v.
    while i > 0 && tops[i - 1] < v {
        tops[i] = tops[i - 1];
        i -= 1;
    }
    tops[i] = v;
}

impl AggregateUDFImpl for TopN {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(TopNAccumulator {
            tops: vec![f64::NEG_INFINITY; self.n],
            len: 0,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok((0..self.n)
            .map(|i| {
                Arc::new(Field::new(
                    format!("{}[top{i}]", args.name),
                    DataType::Float64,
                    true,
                ))
            })
            .collect())
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(TopNGroups {
            n: self.n,
            tops: Vec::new(),
            lens: Vec::new(),
        }))
    }
}

#[derive(Debug)]
struct TopNAccumulator {
    tops: Vec<f64>,
    len: usize,
}

impl Accumulator for TopNAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let a = values[0].as_primitive::<Float64Type>();
        for v in a.iter().flatten() {
            push(&mut self.tops, &mut self.len, v);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(
            (self.len > 0).then(|| self.tops[..self.len].iter().sum()),
        ))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.tops.capacity() * 8
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok((0..self.tops.len())
            .map(|i| ScalarValue::Float64((i < self.len).then_some(self.tops[i])))
            .collect())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for s in states {
            let a = s.as_primitive::<Float64Type>();
            for v in a.iter().flatten() {
                push(&mut self.tops, &mut self.len, v);
            }
        }
        Ok(())
    }
}

/// All groups' states in flat arrays: group `g` owns `tops[g*n .. g*n+n]`.
struct TopNGroups {
    n: usize,
    tops: Vec<f64>,
    lens: Vec<usize>,
}

impl TopNGroups {
    fn grow(&mut self, groups: usize) {
        if self.lens.len() < groups {
            self.lens.resize(groups, 0);
            self.tops.resize(groups * self.n, f64::NEG_INFINITY);
        }
    }

    fn add(&mut self, g: usize, v: f64) {
        let n = self.n;
        let (tops, len) = (&mut self.tops[g * n..g * n + n], &mut self.lens[g]);
        push(tops, len, v);
    }

    /// Takes the groups `emit_to` names out of the state.
    fn take(&mut self, emit_to: EmitTo) -> (Vec<f64>, Vec<usize>) {
        let lens = emit_to.take_needed(&mut self.lens);
        let tops = match emit_to {
            EmitTo::All => std::mem::take(&mut self.tops),
            EmitTo::First(k) => {
                let rest = self.tops.split_off(k * self.n);
                std::mem::replace(&mut self.tops, rest)
            }
        };
        (tops, lens)
    }
}

impl GroupsAccumulator for TopNGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        let a = values[0].as_primitive::<Float64Type>();
        for (row, &g) in group_indices.iter().enumerate() {
            if a.is_null(row) || opt_filter.is_some_and(|f| f.is_null(row) || !f.value(row)) {
                continue;
            }
            self.add(g, a.value(row));
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let n = self.n;
        let (tops, lens) = self.take(emit_to);
        let out: Float64Array = lens
            .iter()
            .enumerate()
            .map(|(g, &len)| (len > 0).then(|| tops[g * n..g * n + len].iter().sum()))
            .collect();
        Ok(Arc::new(out))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let n = self.n;
        let (tops, lens) = self.take(emit_to);
        Ok((0..n)
            .map(|i| {
                let col: Float64Array = lens
                    .iter()
                    .enumerate()
                    .map(|(g, &len)| (i < len).then_some(tops[g * n + i]))
                    .collect();
                Arc::new(col) as ArrayRef
            })
            .collect())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        if values.len() != self.n {
            return exec_err!(
                "anyu_top_n: state has {} columns, expected {}",
                values.len(),
                self.n
            );
        }
        self.grow(total_num_groups);
        for col in values {
            let a = col.as_primitive::<Float64Type>();
            for (row, &g) in group_indices.iter().enumerate() {
                if !a.is_null(row) {
                    self.add(g, a.value(row));
                }
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // Each row alone: its value is its group's only top value.
        let a = values[0].as_primitive::<Float64Type>();
        let first: Float64Array = (0..a.len())
            .map(|row| {
                let kept =
                    !a.is_null(row) && opt_filter.is_none_or(|f| !f.is_null(row) && f.value(row));
                kept.then(|| a.value(row))
            })
            .collect();
        let mut cols: Vec<ArrayRef> = vec![Arc::new(first)];
        for _ in 1..self.n {
            cols.push(datafusion::arrow::array::new_null_array(
                &DataType::Float64,
                a.len(),
            ));
        }
        Ok(cols)
    }

    fn size(&self) -> usize {
        self.tops.capacity() * 8 + self.lens.capacity() * std::mem::size_of::<usize>()
    }
}

impl std::fmt::Debug for TopNGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopNGroups")
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_n_largest() {
        let mut tops = vec![f64::NEG_INFINITY; 2];
        let mut len = 0;
        for v in [3.0, 1.0, 7.0, 5.0, 7.0, -2.0] {
            push(&mut tops, &mut len, v);
        }
        assert_eq!((tops, len), (vec![7.0, 7.0], 2));
        let mut tops = vec![f64::NEG_INFINITY; 3];
        let mut len = 0;
        push(&mut tops, &mut len, 4.0);
        assert_eq!((&tops[..len], len), (&[4.0][..], 1));
    }
}
