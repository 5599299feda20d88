//! `anyu_fingerprint`: the differencing sketch of the privacy units behind a
//! group ([`crate::disclosure::sketch`]), computed beside the group's other
//! hidden statistics so that no second pass over the data is needed.
//!
//! Arguments: one privacy-unit column per dataset the aggregation reads
//! (any type), then — on the pre-aggregated path, where each input row is
//! one unit's share of the group — that unit's record count. Each unit
//! becomes a field element by a keyed SipHash of (dataset, unit as text); the
//! key is derived from the master key, so the sketches say nothing to anyone
//! without it. An integer unit and its canonical decimal text (what a UNION
//! carries, cast to text) are one element: both are hashed as the integer.
//!
//! State per group is lazy: nothing, one unit with its records, or the power
//! sums — a high-cardinality GROUP BY whose groups the threshold will drop
//! holds a few words per group, not a whole sketch.

use std::hash::Hasher;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, BooleanArray, Int64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int32Type, Int64Type};
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};
use siphasher::sip::SipHasher13;

use crate::disclosure::sketch::{self, Sketch};

/// The 128-bit key units are hashed with (never printed).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FingerprintKey([u8; 16]);

impl FingerprintKey {
    /// The key every job's sketches use, derived from the master key.
    pub fn from_keyring(keyring: &crate::keyring::Keyring) -> FingerprintKey {
        let derived = keyring.derive("differencing-units");
        let mut key = [0u8; 16];
        key.copy_from_slice(&derived[..16]);
        FingerprintKey(key)
    }

    /// A fixed key, for tests and benchmarks.
    pub fn from_bytes(key: [u8; 16]) -> FingerprintKey {
        FingerprintKey(key)
    }

    /// The field element of `unit` (as text) in `dataset`.
    pub fn element(&self, dataset: &str, unit: &[u8]) -> u64 {
        let key = match canonical_int(unit) {
            Some(v) => Key::Int(v),
            None => Key::Text(unit),
        };
        hash_key(&self.prefix(dataset), key)
    }

    /// A keyed 128-bit hasher for cell identities ([`cell_ids`]).
    pub fn identity_hasher(&self) -> siphasher::sip128::SipHasher13 {
        let mut h = siphasher::sip128::SipHasher13::new_with_key(&self.0);
        h.write(b"anyu-cell\xff");
        h
    }

    fn prefix(&self, dataset: &str) -> SipHasher13 {
        let mut h = SipHasher13::new_with_key(&self.0);
        h.write(dataset.as_bytes());
        // Never inside UTF-8: the dataset ends here.
        h.write_u8(0xff);
        h
    }
}

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FingerprintKey(..)")
    }
}

/// Per row, the identity of a cell: `seed` (its aggregation, see
/// [`crate::query::rewrite`]) and the row's group key values, in Arrow's
/// row format (one byte string per distinct tuple of values and types).
pub fn cell_ids(
    key: &FingerprintKey,
    seed: u128,
    keys: &[ArrayRef],
    rows: usize,
) -> Result<Vec<u128>> {
    use siphasher::sip128::Hasher128;
    let mut base = key.identity_hasher();
    base.write(&seed.to_le_bytes());
    if keys.is_empty() {
        return Ok(vec![base.finish128().as_u128(); rows]);
    }
    let fields = keys
        .iter()
        .map(|k| datafusion::arrow::row::SortField::new(k.data_type().clone()))
        .collect();
    let converter = datafusion::arrow::row::RowConverter::new(fields)?;
    let converted = converter.convert_columns(keys)?;
    Ok((0..rows)
        .map(|r| {
            let mut h = base;
            h.write(converted.row(r).as_ref());
            h.finish128().as_u128()
        })
        .collect())
}

/// A unit as it is hashed.
#[derive(Clone, Copy)]
enum Key<'a> {
    Int(i64),
    Text(&'a [u8]),
}

fn hash_key(prefix: &SipHasher13, key: Key<'_>) -> u64 {
    let mut h = *prefix;
    // A tag byte, so that no text hashes like an integer.
    match key {
        Key::Int(v) => {
            h.write_u8(1);
            h.write_u64(v as u64);
        }
        Key::Text(b) => {
            h.write_u8(2);
            h.write(b);
        }
    }
    to_element(h.finish())
}

/// `b` as an integer when it is an integer's canonical decimal text (what
/// an Arrow cast to Utf8 writes: no sign but `-`, no leading zeros, no `-0`).
fn canonical_int(b: &[u8]) -> Option<i64> {
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    let canonical = !digits.is_empty()
        && digits.len() <= 19
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || (digits.len() == 1 && digits.len() == b.len()));
    if !canonical {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// A 64-bit hash as a non-zero element of GF(2^61 − 1).
fn to_element(h: u64) -> u64 {
    let x = h >> 3;
    if x == 0 || x >= sketch::P { 1 } else { x }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Fingerprint {
    key: FingerprintKey,
    datasets: Vec<String>,
    weighted: bool,
    capacity: usize,
    signature: Signature,
}

/// The UDAF sketching the units of `datasets` (one argument each, then a
/// record count when `weighted`) with `capacity` (see [`Sketch::new`]).
pub fn fingerprint_udaf(
    key: &FingerprintKey,
    datasets: Vec<String>,
    weighted: bool,
    capacity: usize,
) -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::from(Fingerprint {
        key: key.clone(),
        datasets,
        weighted,
        capacity: capacity.clamp(1, sketch::MAX_CAPACITY),
        signature: Signature::variadic_any(Volatility::Immutable),
    }))
}

impl Fingerprint {
    fn len(&self) -> usize {
        Sketch::len(self.capacity)
    }

    fn hashers(&self) -> Vec<SipHasher13> {
        self.datasets.iter().map(|d| self.key.prefix(d)).collect()
    }
}

impl AggregateUDFImpl for Fingerprint {
    fn name(&self) -> &str {
        "anyu_fingerprint"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let want = self.datasets.len() + usize::from(self.weighted);
        if arg_types.len() != want {
            return exec_err!(
                "anyu_fingerprint takes {want} arguments, got {}",
                arg_types.len()
            );
        }
        Ok(DataType::Binary)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(FingerprintAccumulator::new(self)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[sketch]", args.name),
            DataType::Binary,
            true,
        ))])
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(FingerprintGroups::new(self)))
    }
}

/// Hashes the unit columns of a batch and feeds (row, element, records).
struct Units {
    hashers: Vec<SipHasher13>,
    weighted: bool,
    len: usize,
}

impl Units {
    fn new(f: &Fingerprint) -> Units {
        Units {
            hashers: f.hashers(),
            weighted: f.weighted,
            len: f.len(),
        }
    }

    /// Calls `each(row, x, records)` for every non-null unit of every row
    /// that passes `filter`.
    fn for_each(
        &self,
        values: &[ArrayRef],
        filter: Option<&BooleanArray>,
        mut each: impl FnMut(usize, u64, u64),
    ) -> Result<()> {
        let (units, weights) = if self.weighted {
            let (w, u) = values
                .split_last()
                .ok_or_else(|| datafusion::error::DataFusionError::Internal("no weight".into()))?;
            let w = w.as_any().downcast_ref::<Int64Array>().ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(
                    "anyu_fingerprint: the record count is not Int64".into(),
                )
            })?;
            (u, Some(w))
        } else {
            (values, None)
        };
        if units.len() != self.hashers.len() {
            return exec_err!(
                "anyu_fingerprint: {} unit columns, expected {}",
                units.len(),
                self.hashers.len()
            );
        }
        let kept = |row: usize| filter.is_none_or(|f| !f.is_null(row) && f.value(row));
        let records = |row: usize| match weights {
            Some(w) if w.is_null(row) => 0,
            Some(w) => w.value(row).max(0) as u64,
            None => 1,
        };
        for (col, prefix) in units.iter().zip(&self.hashers) {
            let mut emit = |row: usize, key: Key<'_>| {
                if kept(row) {
                    let m = records(row);
                    if m > 0 {
                        each(row, hash_key(prefix, key), m);
                    }
                }
            };
            keys(col, &mut emit)?;
        }
        Ok(())
    }
}

/// Calls `emit(row, key)` for each non-null value of `col`: integers as
/// integers, text as text unless it is an integer's canonical text, other
/// types by their text (an Arrow cast to Utf8, as the UNION path does).
fn keys(col: &ArrayRef, emit: &mut impl FnMut(usize, Key<'_>)) -> Result<()> {
    fn text<'a>(b: &'a [u8]) -> Key<'a> {
        match canonical_int(b) {
            Some(v) => Key::Int(v),
            None => Key::Text(b),
        }
    }
    match col.data_type() {
        DataType::Int64 => {
            let a = col.as_primitive::<Int64Type>();
            for row in 0..a.len() {
                if a.is_valid(row) {
                    emit(row, Key::Int(a.value(row)));
                }
            }
        }
        DataType::Int32 => {
            let a = col.as_primitive::<Int32Type>();
            for row in 0..a.len() {
                if a.is_valid(row) {
                    emit(row, Key::Int(i64::from(a.value(row))));
                }
            }
        }
        DataType::Utf8 => {
            let a = col.as_string::<i32>();
            for row in 0..a.len() {
                if a.is_valid(row) {
                    emit(row, text(a.value(row).as_bytes()));
                }
            }
        }
        DataType::LargeUtf8 => {
            let a = col.as_string::<i64>();
            for row in 0..a.len() {
                if a.is_valid(row) {
                    emit(row, text(a.value(row).as_bytes()));
                }
            }
        }
        DataType::Utf8View => {
            let a = col.as_string_view();
            for row in 0..a.len() {
                if a.is_valid(row) {
                    emit(row, text(a.value(row).as_bytes()));
                }
            }
        }
        _ => {
            let as_text = datafusion::arrow::compute::cast(col, &DataType::Utf8)?;
            return keys(&as_text, emit);
        }
    }
    Ok(())
}

/// One group's state.
#[derive(Debug, Clone, Default)]
enum Cell {
    #[default]
    Empty,
    /// A single unit so far (most groups that the threshold drops).
    One { x: u64, records: u64 },
    /// The power sums then the bucket sums ([`sketch::BUCKETS`]), not yet
    /// reduced modulo P: adding a term is then one 128-bit addition (no
    /// comparison), and 2^67 terms cannot overflow.
    Sums(Box<[u128]>),
}

/// Adds `records·x^i` to unreduced power sums, and `records·x` to x's bucket.
fn add_wide(sums: &mut [u128], x: u64, records: u64) {
    let len = sums.len() - sketch::BUCKETS;
    let mut terms = vec![0u64; len];
    sketch::add_to(&mut terms, x, records);
    sums[len + sketch::bucket(x)] += u128::from(terms[0]);
    for (s, t) in sums.iter_mut().zip(terms) {
        *s += u128::from(t);
    }
}

impl Cell {
    /// Adds `records` of unit `x`; true when this allocated the sums.
    fn add(&mut self, x: u64, records: u64, len: usize) -> bool {
        match self {
            Cell::Empty => {
                *self = Cell::One { x, records };
                false
            }
            Cell::One { x: y, records: r } if *y == x => {
                *r = r.saturating_add(records);
                false
            }
            Cell::One { x: y, records: r } => {
                let mut sums = vec![0u128; len + sketch::BUCKETS].into_boxed_slice();
                add_wide(&mut sums, *y, *r);
                add_wide(&mut sums, x, records);
                *self = Cell::Sums(sums);
                true
            }
            Cell::Sums(sums) => {
                add_wide(sums, x, records);
                false
            }
        }
    }

    /// Adds a partial state (see [`Cell::state`]); true when this allocated.
    fn merge(&mut self, state: &[u8], len: usize) -> Result<bool> {
        let word = |i: usize| u64::from_le_bytes(state[i * 8..i * 8 + 8].try_into().expect("8"));
        match state.len() {
            0 => Ok(false),
            16 => Ok(self.add(word(0), word(1), len)),
            n if n == (len + sketch::BUCKETS) * 8 => {
                let was_sums = matches!(self, Cell::Sums(_));
                let mut sums = match std::mem::take(self) {
                    Cell::Sums(s) => s,
                    other => other.sums(len).iter().map(|v| u128::from(*v)).collect(),
                };
                for (i, s) in sums.iter_mut().enumerate() {
                    *s += u128::from(word(i));
                }
                *self = Cell::Sums(sums);
                Ok(!was_sums)
            }
            n => exec_err!("anyu_fingerprint: a partial state of {n} bytes"),
        }
    }

    /// The power sums then the bucket sums, reduced.
    fn sums(&self, len: usize) -> Box<[u64]> {
        match self {
            Cell::Sums(s) => s
                .iter()
                .map(|v| (v % u128::from(sketch::P)) as u64)
                .collect(),
            Cell::Empty => vec![0u64; len + sketch::BUCKETS].into_boxed_slice(),
            Cell::One { x, records } => {
                let mut s = vec![0u64; len + sketch::BUCKETS].into_boxed_slice();
                sketch::add_to(&mut s[..len], *x, *records);
                s[len + sketch::bucket(*x)] = s[0];
                s
            }
        }
    }

    /// The partial state: empty, 16 bytes (one unit) or the sums.
    fn state(&self, out: &mut BinaryBuilder) {
        match self {
            Cell::Empty => out.append_value([]),
            Cell::One { x, records } => {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&x.to_le_bytes());
                b[8..].copy_from_slice(&records.to_le_bytes());
                out.append_value(b);
            }
            Cell::Sums(_) => out.append_value(sums_bytes(&self.sums(0))),
        }
    }

    /// The final value: the sketch's bytes, null for a group without units.
    fn evaluate(self, len: usize, out: &mut BinaryBuilder) {
        match self {
            Cell::Empty => out.append_null(),
            other => {
                let mut sums = other.sums(len).into_vec();
                let buckets = sums.split_off(len);
                let sketch = Sketch::from_parts(sums, buckets).expect("sums below P");
                out.append_value(sketch.to_bytes())
            }
        }
    }
}

/// Adds `(cell, x, records)` to `cells`. Units of cells already holding
/// sums are added four at a time ([`sketch::terms4`]); the others go
/// through [`Cell::add`]. Returns how many cells began to hold sums.
fn add_all(cells: &mut [Cell], items: &[(usize, u64, u64)], len: usize) -> usize {
    let mut allocated = 0;
    let mut ready = [(0usize, 0u64, 0u64); 4];
    let mut n = 0;
    let mut terms = vec![[0u64; 4]; len];
    for &(g, x, m) in items {
        if !matches!(cells[g], Cell::Sums(_)) {
            allocated += usize::from(cells[g].add(x, m, len));
            continue;
        }
        ready[n] = (g, x, m);
        n += 1;
        if n == 4 {
            sketch::terms4(ready.map(|r| r.1), ready.map(|r| r.2), &mut terms);
            for (k, &(g, x, _)) in ready.iter().enumerate() {
                if let Cell::Sums(sums) = &mut cells[g] {
                    sums[len + sketch::bucket(x)] += u128::from(terms[0][k]);
                    for (s, t) in sums.iter_mut().zip(&terms) {
                        *s += u128::from(t[k]);
                    }
                }
            }
            n = 0;
        }
    }
    for &(g, x, m) in &ready[..n] {
        cells[g].add(x, m, len);
    }
    allocated
}

fn sums_bytes(s: &[u64]) -> Vec<u8> {
    s.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn binary(a: &ArrayRef) -> Result<&BinaryArray> {
    a.as_any()
        .downcast_ref::<BinaryArray>()
        .ok_or_else(|| datafusion::error::DataFusionError::Internal("state is not Binary".into()))
}

struct FingerprintAccumulator {
    units: Units,
    cell: Cell,
}

impl std::fmt::Debug for FingerprintAccumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FingerprintAccumulator")
            .finish_non_exhaustive()
    }
}

impl FingerprintAccumulator {
    fn new(f: &Fingerprint) -> FingerprintAccumulator {
        FingerprintAccumulator {
            units: Units::new(f),
            cell: Cell::Empty,
        }
    }
}

impl Accumulator for FingerprintAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let mut items = Vec::with_capacity(values.first().map_or(0, |v| v.len()));
        self.units
            .for_each(values, None, |_, x, m| items.push((0, x, m)))?;
        add_all(std::slice::from_mut(&mut self.cell), &items, self.units.len);
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let mut b = BinaryBuilder::new();
        std::mem::take(&mut self.cell).evaluate(self.units.len, &mut b);
        ScalarValue::try_from_array(&b.finish(), 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + match &self.cell {
                Cell::Sums(s) => s.len() * 16,
                _ => 0,
            }
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut b = BinaryBuilder::new();
        self.cell.state(&mut b);
        Ok(vec![ScalarValue::try_from_array(&b.finish(), 0)?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let a = binary(&states[0])?;
        for row in 0..a.len() {
            if a.is_valid(row) {
                self.cell.merge(a.value(row), self.units.len)?;
            }
        }
        Ok(())
    }
}

struct FingerprintGroups {
    units: Units,
    cells: Vec<Cell>,
    /// Cells holding sums (for `size`).
    sketches: usize,
}

impl std::fmt::Debug for FingerprintGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FingerprintGroups")
            .field("groups", &self.cells.len())
            .finish_non_exhaustive()
    }
}

impl FingerprintGroups {
    fn new(f: &Fingerprint) -> FingerprintGroups {
        FingerprintGroups {
            units: Units::new(f),
            cells: Vec::new(),
            sketches: 0,
        }
    }

    fn take(&mut self, emit_to: EmitTo) -> Vec<Cell> {
        let taken = emit_to.take_needed(&mut self.cells);
        self.sketches -= taken.iter().filter(|c| matches!(c, Cell::Sums(_))).count();
        taken
    }
}

impl GroupsAccumulator for FingerprintGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.cells
            .resize(total_num_groups.max(self.cells.len()), Cell::Empty);
        let mut items = Vec::with_capacity(group_indices.len());
        self.units.for_each(values, opt_filter, |row, x, m| {
            items.push((group_indices[row], x, m))
        })?;
        self.sketches += add_all(&mut self.cells, &items, self.units.len);
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let len = self.units.len;
        let mut b = BinaryBuilder::new();
        for c in self.take(emit_to) {
            c.evaluate(len, &mut b);
        }
        Ok(Arc::new(b.finish()))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let mut b = BinaryBuilder::new();
        for c in self.take(emit_to) {
            c.state(&mut b);
        }
        Ok(vec![Arc::new(b.finish())])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.cells
            .resize(total_num_groups.max(self.cells.len()), Cell::Empty);
        let a = binary(&values[0])?;
        for (row, &g) in group_indices.iter().enumerate() {
            if a.is_valid(row) && self.cells[g].merge(a.value(row), self.units.len)? {
                self.sketches += 1;
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // Each row alone as a group.
        let rows = values.first().map_or(0, |v| v.len());
        let mut cells = vec![Cell::Empty; rows];
        let len = self.units.len;
        self.units.for_each(values, opt_filter, |row, x, m| {
            cells[row].add(x, m, len);
        })?;
        let mut b = BinaryBuilder::new();
        for c in &cells {
            c.state(&mut b);
        }
        Ok(vec![Arc::new(b.finish())])
    }

    fn size(&self) -> usize {
        self.cells.capacity() * std::mem::size_of::<Cell>()
            + self.sketches * (self.units.len + sketch::BUCKETS) * 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    fn key() -> FingerprintKey {
        FingerprintKey::from_bytes(*b"0123456789abcdef")
    }

    #[test]
    fn integers_and_their_canonical_text_are_one_unit() {
        for v in [0i64, 7, -7, 10, 1234567890, i64::MAX, i64::MIN] {
            assert_eq!(canonical_int(v.to_string().as_bytes()), Some(v));
        }
        for t in [
            "",
            "-",
            "-0",
            "007",
            "+7",
            "7.0",
            "１",
            "99999999999999999999",
            " 7",
        ] {
            assert_eq!(canonical_int(t.as_bytes()), None, "{t:?}");
        }
        let k = key();
        assert_ne!(k.element("d", b"007"), k.element("d", b"7"));
    }

    /// The grouped and single accumulators, fed numbers or the same units as
    /// text, in one batch or merged from partial states, all give the sketch
    /// built directly from the units' elements.
    #[test]
    fn every_path_gives_the_direct_sketch() {
        let k = key();
        let udaf = Fingerprint {
            key: k.clone(),
            datasets: vec!["d".into()],
            weighted: false,
            capacity: 3,
            signature: Signature::variadic_any(Volatility::Immutable),
        };
        let ids: Vec<i64> = vec![5, 9, 5, 11, -3];
        let mut direct = Sketch::new(3);
        for id in &ids {
            direct.add(k.element("d", id.to_string().as_bytes()), 1);
        }
        let ints: ArrayRef = Arc::new(Int64Array::from(ids.clone()));
        let texts: ArrayRef = Arc::new(StringArray::from(
            ids.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        ));
        for col in [ints, texts] {
            let mut acc = FingerprintAccumulator::new(&udaf);
            acc.update_batch(std::slice::from_ref(&col)).unwrap();
            let ScalarValue::Binary(Some(bytes)) = acc.evaluate().unwrap() else {
                panic!("no sketch")
            };
            assert_eq!(Sketch::from_bytes(&bytes).unwrap(), direct);

            // Two partial groups accumulators (rows split), merged into a third.
            let mut parts = Vec::new();
            for (lo, hi) in [(0, 2), (2, 5)] {
                let mut g = FingerprintGroups::new(&udaf);
                g.update_batch(&[col.slice(lo, hi - lo)], &vec![0; hi - lo], None, 1)
                    .unwrap();
                parts.push(g.state(EmitTo::All).unwrap().remove(0));
            }
            let mut fin = FingerprintGroups::new(&udaf);
            for p in &parts {
                fin.merge_batch(std::slice::from_ref(p), &[0], 1).unwrap();
            }
            let out = fin.evaluate(EmitTo::All).unwrap();
            let out = out.as_any().downcast_ref::<BinaryArray>().unwrap();
            assert_eq!(Sketch::from_bytes(out.value(0)).unwrap(), direct);
        }
    }

    /// Weighted input (one row per unit with its record count) equals the
    /// rows themselves; a unit's records count as its multiplicity.
    #[test]
    fn weights_are_records() {
        let k = key();
        let mk = |weighted| Fingerprint {
            key: k.clone(),
            datasets: vec!["d".into()],
            weighted,
            capacity: 2,
            signature: Signature::variadic_any(Volatility::Immutable),
        };
        let run = |f: &Fingerprint, values: Vec<ArrayRef>| {
            let mut acc = FingerprintAccumulator::new(f);
            acc.update_batch(&values).unwrap();
            match acc.evaluate().unwrap() {
                ScalarValue::Binary(Some(b)) => Sketch::from_bytes(&b).unwrap(),
                other => panic!("{other:?}"),
            }
        };
        let rows = run(
            &mk(false),
            vec![Arc::new(Int64Array::from(vec![1, 1, 1, 2]))],
        );
        let weighted = run(
            &mk(true),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(Int64Array::from(vec![3, 1])),
            ],
        );
        assert_eq!(rows, weighted);
        // One record fewer for unit 1: one unit differs, by one record.
        let fewer = run(&mk(false), vec![Arc::new(Int64Array::from(vec![1, 1, 2]))]);
        let d = rows.difference(&fewer).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].records, 1);
        assert_eq!(d[0].x, k.element("d", b"1"));
    }

    /// Many rows over a few groups (the four-at-once path) give each
    /// group the sketch of its own units.
    #[test]
    fn groups_get_their_own_units() {
        let k = key();
        let udaf = Fingerprint {
            key: k.clone(),
            datasets: vec!["d".into()],
            weighted: true,
            capacity: 5,
            signature: Signature::variadic_any(Volatility::Immutable),
        };
        let ids: Vec<i64> = (0..103).collect();
        let records: Vec<i64> = ids.iter().map(|i| i % 4 + 1).collect();
        let groups: Vec<usize> = ids.iter().map(|i| (i % 3) as usize).collect();
        let mut want = vec![Sketch::new(5); 3];
        for ((id, r), g) in ids.iter().zip(&records).zip(&groups) {
            want[*g].add(k.element("d", id.to_string().as_bytes()), *r as u64);
        }
        let mut acc = FingerprintGroups::new(&udaf);
        let values: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(Int64Array::from(records)),
        ];
        acc.update_batch(&values, &groups, None, 3).unwrap();
        assert_eq!(acc.sketches, 3);
        let out = acc.evaluate(EmitTo::All).unwrap();
        let out = out.as_any().downcast_ref::<BinaryArray>().unwrap();
        for (g, w) in want.iter().enumerate() {
            assert_eq!(&Sketch::from_bytes(out.value(g)).unwrap(), w, "group {g}");
        }
    }

    #[test]
    fn datasets_and_keys_separate_units() {
        let (a, b) = (key(), FingerprintKey::from_bytes([7; 16]));
        assert_ne!(a.element("d", b"1"), a.element("e", b"1"));
        assert_ne!(a.element("d", b"1"), b.element("d", b"1"));
        assert_eq!(format!("{a:?}"), "FingerprintKey(..)");
    }
}
