//! A set-difference sketch of the privacy units behind a cell: power sums
//! over the prime field GF(2^61 − 1).
//!
//! Each unit is a field element `x` (a keyed hash, never the unit itself) with
//! a multiplicity `m` (its records in the cell). A sketch of capacity `c`
//! holds `S_i = Σ m·x^i` for `i = 1..=2c+2` (two more than decoding
//! needs, so that a larger difference cannot pass for a small one). Sketches are linear: the sketch
//! of a difference is the difference of the sketches, where every unit in
//! both cells with the same records cancels. Decoding a difference recovers
//! every unit whose records differ — exactly, whenever at most `c` differ
//! (Reed–Solomon syndrome decoding: Berlekamp–Massey, then the roots of the
//! locator polynomial, then the multiplicities) — and reports "more than
//! `c`" otherwise. An invertible Bloom lookup table of the same size would
//! fail on a few percent of small differences; this never does.
//!
//! A sketch of capacity `c` is a prefix of one of a larger capacity over the
//! same units, so sketches of different capacities compare on the smaller.
//!
//! A sketch also keeps [`BUCKETS`] bucket sums `Σ m·x` over the units with
//! `x mod BUCKETS = k`: a difference of at most `c` units leaves at most `c`
//! of them non-zero, so most combinations that cannot decode are told apart
//! by 16 subtractions instead of a decoding (for thresholds up to 17) (the tracker search's screen).

/// The field's modulus, the Mersenne prime 2^61 − 1.
pub const P: u64 = (1 << 61) - 1;

/// Sums beyond `2c`: without them any `2c` sums would fit some `c` units
/// (for `c = 1`, always), so a large difference could pass for a small one.
const GUARD: usize = 2;

/// Bucket sums per sketch (see the module's documentation).
pub const BUCKETS: usize = 16;

/// First word of a sketch's bytes when bucket sums follow the power sums
/// (no power sum is ≥ P, so no sketch without them starts so).
const WITH_BUCKETS: u64 = u64::MAX;

/// The bucket of unit `x`.
pub(crate) fn bucket(x: u64) -> usize {
    (x % BUCKETS as u64) as usize
}

/// Largest capacity a sketch may have (thresholds above `MAX_CAPACITY + 1`
/// are protected only up to this many differing units).
pub const MAX_CAPACITY: usize = 64;

fn reduce(x: u128) -> u64 {
    // Both factors are below P, so x ≤ (P − 1)^2 < P·2^61: one fold of the
    // high bits onto the low ones leaves less than 2P.
    let r = (x as u64 & P) + (x >> 61) as u64;
    if r >= P { r - P } else { r }
}

pub(crate) fn mul(a: u64, b: u64) -> u64 {
    reduce(a as u128 * b as u128)
}

pub(crate) fn add(a: u64, b: u64) -> u64 {
    let s = a + b;
    if s >= P { s - P } else { s }
}

fn sub(a: u64, b: u64) -> u64 {
    if a >= b { a - b } else { a + P - b }
}

fn pow(mut base: u64, mut e: u64) -> u64 {
    let mut acc = 1;
    while e > 0 {
        if e & 1 == 1 {
            acc = mul(acc, base);
        }
        base = mul(base, base);
        e >>= 1;
    }
    acc
}

fn inv(a: u64) -> u64 {
    // Fermat: a^(p−2); callers never pass 0.
    pow(a, P - 2)
}

/// A multiplicity as a field element (negative counts wrap).
#[cfg(test)]
fn from_signed(m: i64) -> u64 {
    if m >= 0 {
        m as u64 % P
    } else {
        P - (m.unsigned_abs() % P)
    }
}

fn to_signed(m: u64) -> i64 {
    if m > P / 2 {
        -((P - m) as i64)
    } else {
        m as i64
    }
}

/// Power sums `S_1..=S_2c` of the units behind one cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sketch {
    sums: Vec<u64>,
    /// The bucket sums; `None` in sketches stored before they existed.
    buckets: Option<Vec<u64>>,
}

/// A unit whose records differ between two cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Differing {
    /// The unit's field element.
    pub x: u64,
    /// Records in the first cell minus records in the second.
    pub records: i64,
}

impl Sketch {
    /// An empty sketch that can decode up to `capacity` differing units.
    pub fn new(capacity: usize) -> Sketch {
        Sketch {
            sums: vec![0; Sketch::len(capacity)],
            buckets: Some(vec![0; BUCKETS]),
        }
    }

    /// How many sums a sketch of `capacity` holds.
    pub fn len(capacity: usize) -> usize {
        2 * capacity.clamp(1, MAX_CAPACITY) + GUARD
    }

    pub fn capacity(&self) -> usize {
        (self.sums.len() - GUARD) / 2
    }

    /// Adds unit `x` (in `1..P`) with `records` records.
    pub fn add(&mut self, x: u64, records: u64) {
        add_to(&mut self.sums, x, records);
        if let Some(b) = &mut self.buckets {
            let k = bucket(x);
            b[k] = add(b[k], mul(records % P, x));
        }
    }

    /// The power sums.
    pub fn sums(&self) -> &[u64] {
        &self.sums
    }

    /// A sketch from stored sums; `None` when they are not a sketch.
    pub fn from_sums(sums: Vec<u64>) -> Option<Sketch> {
        let ok = sums.len() >= GUARD + 2
            && sums.len().is_multiple_of(2)
            && sums.len() <= 2 * MAX_CAPACITY + GUARD
            && sums.iter().all(|s| *s < P);
        ok.then_some(Sketch {
            sums,
            buckets: None,
        })
    }

    /// A sketch from its power sums and bucket sums.
    pub fn from_parts(sums: Vec<u64>, buckets: Vec<u64>) -> Option<Sketch> {
        let mut s = Sketch::from_sums(sums)?;
        if buckets.len() != BUCKETS || buckets.iter().any(|b| *b >= P) {
            return None;
        }
        s.buckets = Some(buckets);
        Some(s)
    }

    /// Little-endian bytes: the sums, or a marker word, the sums and the
    /// bucket sums (the UDAF's output).
    pub fn to_bytes(&self) -> Vec<u8> {
        let words: Vec<u64> = match &self.buckets {
            None => self.sums.clone(),
            Some(b) => std::iter::once(WITH_BUCKETS)
                .chain(self.sums.iter().copied())
                .chain(b.iter().copied())
                .collect(),
        };
        words.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    /// The inverse of [`Sketch::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Option<Sketch> {
        if !bytes.len().is_multiple_of(8) {
            return None;
        }
        let mut words: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("chunks of 8")))
            .collect();
        if words.first() == Some(&WITH_BUCKETS) {
            if words.len() < 1 + BUCKETS {
                return None;
            }
            let buckets = words.split_off(words.len() - BUCKETS);
            words.remove(0);
            return Sketch::from_parts(words, buckets);
        }
        Sketch::from_sums(words)
    }

    /// The units whose records differ between the cell behind `self` and
    /// the cells behind `b` and `c` together (`self − b − c`), when at most
    /// the smallest capacity differ; `None` when more do.
    pub fn difference3(&self, b: &Sketch, c: &Sketch) -> Option<Vec<Differing>> {
        let n = self.sums.len().min(b.sums.len()).min(c.sums.len());
        // More non-zero buckets than the capacity: more units differ.
        let capacity = (n - GUARD) / 2;
        if let (Some(x), Some(y), Some(z)) = (&self.buckets, &b.buckets, &c.buckets)
            && capacity < BUCKETS
        {
            let non_zero = (0..BUCKETS)
                .filter(|&k| sub(sub(x[k], y[k]), z[k]) != 0)
                .count();
            if non_zero > capacity {
                return None;
            }
        }
        let diff: Vec<u64> = (0..n)
            .map(|i| sub(sub(self.sums[i], b.sums[i]), c.sums[i]))
            .collect();
        decode(&diff)
    }

    /// The units whose records differ between the cells behind `self` and
    /// `other`, when at most `min(capacity)` differ; `None` when more do.
    pub fn difference(&self, other: &Sketch) -> Option<Vec<Differing>> {
        let n = self.sums.len().min(other.sums.len());
        let diff: Vec<u64> = (0..n).map(|i| sub(self.sums[i], other.sums[i])).collect();
        decode(&diff)
    }
}

/// Adds `x` with multiplicity `records` to power sums `sums`.
pub(crate) fn add_to(sums: &mut [u64], x: u64, records: u64) {
    let m = records % P;
    let mut term = if m == 1 { x } else { mul(m, x) };
    for s in sums.iter_mut() {
        *s = add(*s, term);
        term = mul(term, x);
    }
}

/// The terms `records·x^i` (`i = 1..=out.len()`) of four units at once,
/// `out[i − 1][k]` for unit `k`: their power chains are independent, so the
/// processor overlaps the multiplications a single chain would wait on.
pub(crate) fn terms4(x: [u64; 4], records: [u64; 4], out: &mut [[u64; 4]]) {
    let mut t = [0u64; 4];
    for k in 0..4 {
        let m = records[k] % P;
        t[k] = if m == 1 { x[k] } else { mul(m, x[k]) };
    }
    for o in out.iter_mut() {
        *o = t;
        t = [
            mul(t[0], x[0]),
            mul(t[1], x[1]),
            mul(t[2], x[2]),
            mul(t[3], x[3]),
        ];
    }
}

/// Recovers `(x, m)` pairs from `S_i = Σ m·x^i`, `i = 1..=len`, when at most
/// `(len − GUARD) / 2` pairs produced them.
fn decode(s: &[u64]) -> Option<Vec<Differing>> {
    let capacity = (s.len() - GUARD) / 2;
    let locator = berlekamp_massey(s);
    let degree = locator.len() - 1;
    if degree == 0 {
        return Some(Vec::new());
    }
    if degree > capacity {
        return None;
    }
    // C(z) = Π (1 − x_j z): its reverse has the units x_j as roots.
    let monic: Vec<u64> = locator.iter().rev().copied().collect();
    let roots = roots(&monic)?;
    if roots.len() != degree || roots.contains(&0) {
        return None;
    }
    let records = multiplicities(&roots, s)?;
    // The pairs must reproduce every sum, or more units differ than decoded.
    let mut check = vec![0u64; s.len()];
    for (x, m) in roots.iter().zip(&records) {
        add_to(&mut check, *x, *m);
    }
    if check != s || records.contains(&0) {
        return None;
    }
    Some(
        roots
            .into_iter()
            .zip(records)
            .map(|(x, m)| Differing {
                x,
                records: to_signed(m),
            })
            .collect(),
    )
}

/// The shortest linear recurrence generating `s` (connection polynomial,
/// constant term 1, trailing zeros trimmed).
fn berlekamp_massey(s: &[u64]) -> Vec<u64> {
    let mut c = vec![1u64];
    let mut b = vec![1u64];
    let mut l = 0usize;
    let mut shift = 1usize;
    // 1 / the discrepancy at the last length change (an inversion costs ~90
    // multiplications: once per change, not once per step).
    let mut inv_last = 1u64;
    for n in 0..s.len() {
        let mut d = s[n];
        for i in 1..=l.min(c.len() - 1) {
            d = add(d, mul(c[i], s[n - i]));
        }
        if d == 0 {
            shift += 1;
            continue;
        }
        let coef = mul(d, inv_last);
        let grows = 2 * l <= n;
        let previous = grows.then(|| c.clone());
        if c.len() < b.len() + shift {
            c.resize(b.len() + shift, 0);
        }
        for (i, bi) in b.iter().enumerate() {
            c[i + shift] = sub(c[i + shift], mul(coef, *bi));
        }
        if let Some(previous) = previous {
            l = n + 1 - l;
            b = previous;
            inv_last = inv(d);
            shift = 1;
        } else {
            shift += 1;
        }
    }
    c.truncate(l + 1);
    c.resize(l + 1, 0);
    c
}

// Polynomials: coefficients from the constant term up, trimmed of leading zeros.

fn trim(mut a: Vec<u64>) -> Vec<u64> {
    while a.len() > 1 && *a.last().expect("non-empty") == 0 {
        a.pop();
    }
    a
}

fn is_zero(a: &[u64]) -> bool {
    a.iter().all(|c| *c == 0)
}

/// `a mod f`, `f` monic.
fn rem(a: &[u64], f: &[u64]) -> Vec<u64> {
    let df = f.len() - 1;
    if df == 0 {
        // Everything is a multiple of a non-zero constant.
        return vec![0];
    }
    let mut r = a.to_vec();
    while r.len() > df {
        let lead = *r.last().expect("non-empty");
        let shift = r.len() - 1 - df;
        if lead != 0 {
            for (i, fi) in f.iter().enumerate() {
                r[i + shift] = sub(r[i + shift], mul(lead, *fi));
            }
        }
        r.pop();
    }
    trim(r)
}

fn mul_mod(a: &[u64], b: &[u64], f: &[u64]) -> Vec<u64> {
    let mut out = vec![0u64; a.len() + b.len() - 1];
    for (i, ai) in a.iter().enumerate() {
        if *ai == 0 {
            continue;
        }
        for (j, bj) in b.iter().enumerate() {
            out[i + j] = add(out[i + j], mul(*ai, *bj));
        }
    }
    rem(&out, f)
}

fn pow_mod(base: &[u64], mut e: u64, f: &[u64]) -> Vec<u64> {
    let mut acc = vec![1u64];
    let mut b = rem(base, f);
    while e > 0 {
        if e & 1 == 1 {
            acc = mul_mod(&acc, &b, f);
        }
        b = mul_mod(&b, &b, f);
        e >>= 1;
    }
    acc
}

fn monic(a: Vec<u64>) -> Vec<u64> {
    let a = trim(a);
    let lead = inv(*a.last().expect("non-empty"));
    a.into_iter().map(|c| mul(c, lead)).collect()
}

fn gcd(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (mut a, mut b) = (trim(a.to_vec()), trim(b.to_vec()));
    while !is_zero(&b) {
        let r = rem(&a, &monic(b.clone()));
        a = b;
        b = r;
    }
    monic(a)
}

fn sub_poly(a: &[u64], b: &[u64]) -> Vec<u64> {
    let n = a.len().max(b.len());
    let get = |p: &[u64], i: usize| p.get(i).copied().unwrap_or(0);
    trim((0..n).map(|i| sub(get(a, i), get(b, i))).collect())
}

/// `a / f` for monic `f` dividing `a`.
fn div_exact(a: &[u64], f: &[u64]) -> Vec<u64> {
    let mut r = a.to_vec();
    let df = f.len() - 1;
    let mut q = vec![0u64; r.len().saturating_sub(df)];
    while r.len() > df {
        let lead = *r.last().expect("non-empty");
        let shift = r.len() - 1 - df;
        q[shift] = lead;
        for (i, fi) in f.iter().enumerate() {
            r[i + shift] = sub(r[i + shift], mul(lead, *fi));
        }
        r.pop();
    }
    trim(q)
}

/// The roots of monic `f` when it splits into distinct linear factors over
/// GF(P); `None` otherwise (then it is not a locator of decodable units).
fn roots(f: &[u64]) -> Option<Vec<u64>> {
    let degree = f.len() - 1;
    // gcd(x^P − x, f) is the product of f's distinct linear factors.
    let xp = pow_mod(&[0, 1], P, f);
    let split = gcd(&sub_poly(&xp, &[0, 1]), f);
    if split.len() - 1 != degree {
        return None;
    }
    let mut out = Vec::with_capacity(degree);
    // Cantor–Zassenhaus equal-degree splitting; the shifts are a fixed
    // sequence (the result does not depend on them, only the time taken).
    let mut stack = vec![split];
    let mut shift = 1u64;
    while let Some(g) = stack.pop() {
        match g.len() - 1 {
            0 => {}
            1 => out.push(sub(0, g[0])),
            d => {
                let mut found = false;
                for _ in 0..256 {
                    shift = add(mul(shift, 0x9E37_79B9_7F4A_7C15 % P), 0x2545_F491);
                    let h = pow_mod(&[shift, 1], (P - 1) / 2, &g);
                    let part = gcd(&sub_poly(&h, &[1]), &g);
                    let pd = part.len() - 1;
                    if pd > 0 && pd < d {
                        stack.push(div_exact(&g, &part));
                        stack.push(part);
                        found = true;
                        break;
                    }
                }
                if !found {
                    return None;
                }
            }
        }
    }
    Some(out)
}

/// Solves `S_i = Σ_j m_j x_j^i` (`i = 1..=k`) for the `k` multiplicities.
fn multiplicities(xs: &[u64], s: &[u64]) -> Option<Vec<u64>> {
    let k = xs.len();
    // Rows i = 1..=k: [x_1^i … x_k^i | S_i]; Gaussian elimination mod P.
    let mut m: Vec<Vec<u64>> = (1..=k)
        .map(|i| {
            let mut row: Vec<u64> = xs.iter().map(|x| pow(*x, i as u64)).collect();
            row.push(s[i - 1]);
            row
        })
        .collect();
    for col in 0..k {
        let pivot = (col..k).find(|r| m[*r][col] != 0)?;
        m.swap(col, pivot);
        let p_inv = inv(m[col][col]);
        for v in m[col].iter_mut() {
            *v = mul(*v, p_inv);
        }
        for r in 0..k {
            if r != col && m[r][col] != 0 {
                let f = m[r][col];
                let pivot_row = m[col].clone();
                for (v, pv) in m[r].iter_mut().zip(&pivot_row) {
                    *v = sub(*v, mul(f, *pv));
                }
            }
        }
    }
    Some(m.into_iter().map(|row| row[k]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_at_once_equals_one_by_one() {
        let (x, m) = ([3, P - 1, 1 << 60, 12345], [1, 7, 0, P + 2]);
        let mut out = vec![[0u64; 4]; 6];
        terms4(x, m, &mut out);
        for k in 0..4 {
            let mut one = vec![0u64; 6];
            add_to(&mut one, x[k], m[k]);
            let four: Vec<u64> = out.iter().map(|o| o[k]).collect();
            assert_eq!(four, one);
        }
    }

    /// A deterministic stream of unit elements.
    fn units(seed: u64, n: usize) -> Vec<u64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                1 + (s >> 3) % (P - 1)
            })
            .collect()
    }

    fn sketch(capacity: usize, xs: &[(u64, u64)]) -> Sketch {
        let mut s = Sketch::new(capacity);
        for (x, m) in xs {
            s.add(*x, *m);
        }
        s
    }

    #[test]
    fn field_arithmetic() {
        assert_eq!(mul(P - 1, P - 1), 1);
        assert_eq!(add(P - 1, 1), 0);
        assert_eq!(sub(0, 1), P - 1);
        for a in [1, 2, 12345, P - 2] {
            assert_eq!(mul(a, inv(a)), 1);
        }
        assert_eq!(to_signed(from_signed(-7)), -7);
        assert_eq!(to_signed(from_signed(7)), 7);
    }

    #[test]
    fn every_difference_up_to_the_capacity_decodes_exactly() {
        let capacity = 9;
        for trial in 0..200u64 {
            let common: Vec<(u64, u64)> = units(trial, 500)
                .into_iter()
                .map(|x| (x, 1 + x % 3))
                .collect();
            let d = (trial as usize % capacity) + 1;
            let extra = units(trial + 10_000, d);
            let mut with: Vec<(u64, u64)> = common.clone();
            // Half the differing units are extra persons, half have other records.
            let mut expected = Vec::new();
            for (i, x) in extra.iter().enumerate() {
                if i % 2 == 0 {
                    with.push((*x, 2));
                    expected.push(Differing { x: *x, records: 2 });
                } else {
                    let (cx, cm) = common[i];
                    with[i] = (cx, cm + 1);
                    expected.push(Differing { x: cx, records: 1 });
                }
            }
            let a = sketch(capacity, &with);
            let b = sketch(capacity, &common);
            let mut got = a.difference(&b).expect("decodes");
            got.sort_by_key(|u| u.x);
            expected.sort_by_key(|u| u.x);
            assert_eq!(got, expected, "trial {trial}");
            // The other way round, the records change sign.
            assert_eq!(b.difference(&a).expect("decodes").len(), d);
        }
    }

    #[test]
    fn identical_cells_differ_by_nobody() {
        let xs: Vec<(u64, u64)> = units(7, 1000).into_iter().map(|x| (x, 1)).collect();
        assert_eq!(sketch(9, &xs).difference(&sketch(9, &xs)), Some(vec![]));
    }

    #[test]
    fn more_differences_than_the_capacity_never_decode() {
        for trial in 0..300u64 {
            let capacity = 1 + trial as usize % 12;
            let d = capacity + 1 + (trial as usize % 40);
            let xs: Vec<(u64, u64)> = units(trial, d).into_iter().map(|x| (x, 1)).collect();
            let a = sketch(capacity, &xs);
            assert_eq!(a.difference(&Sketch::new(capacity)), None, "trial {trial}");
        }
    }

    #[test]
    fn sketches_of_different_capacity_compare_on_the_smaller() {
        let xs: Vec<(u64, u64)> = units(3, 100).into_iter().map(|x| (x, 1)).collect();
        let big = sketch(20, &xs);
        let small = sketch(4, &xs[1..]);
        let got = big.difference(&small).expect("one unit differs");
        assert_eq!(
            got,
            vec![Differing {
                x: xs[0].0,
                records: 1
            }]
        );
    }

    #[test]
    fn the_bucket_screen_never_hides_a_decodable_difference() {
        for trial in 0..200u64 {
            let capacity = 1 + trial as usize % 12;
            let all: Vec<u64> = units(trial, 300);
            let (b_part, c_part) = all.split_at(100 + trial as usize % 50);
            // A = B ∪ C with d units removed (d ≤ capacity: decodes) or added.
            let d = trial as usize % (capacity + 3);
            let mut a = sketch(
                capacity,
                &all[d..].iter().map(|x| (*x, 1)).collect::<Vec<_>>(),
            );
            let b = sketch(
                capacity,
                &b_part.iter().map(|x| (*x, 1)).collect::<Vec<_>>(),
            );
            let c = sketch(
                capacity,
                &c_part.iter().map(|x| (*x, 1)).collect::<Vec<_>>(),
            );
            let got = a.difference3(&b, &c);
            if d <= capacity {
                assert_eq!(got.map(|v| v.len()), Some(d), "trial {trial}");
            } else {
                assert_eq!(got, None, "trial {trial}");
            }
            // Without buckets (an older stored sketch) the same answer.
            a.buckets = None;
            assert_eq!(
                a.difference3(&b, &c).map(|v| v.len()),
                (d <= capacity).then_some(d)
            );
        }
    }

    #[test]
    fn bytes_round_trip_and_refuse_garbage() {
        let s = sketch(5, &[(42, 1), (7, 3)]);
        assert_eq!(Sketch::from_bytes(&s.to_bytes()), Some(s.clone()));
        // Stored before bucket sums existed: the sums alone.
        let legacy: Vec<u8> = s.sums().iter().flat_map(|v| v.to_le_bytes()).collect();
        let old = Sketch::from_bytes(&legacy).unwrap();
        assert_eq!(old.sums(), s.sums());
        assert!(old.buckets.is_none());
        assert_eq!(Sketch::from_bytes(&[1, 2, 3]), None);
        assert_eq!(Sketch::from_bytes(&u64::MAX.to_le_bytes().repeat(2)), None);
        assert_eq!(Sketch::from_bytes(&[]), None);
    }
}
