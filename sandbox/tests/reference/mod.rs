//! Native reference computations of the example models' statistics, shared
//! by the sandbox's model tests and the end-to-end model tests of the binary.
//! Written independently of the models (two-pass, raw normal equations,
//! textbook Lloyd) so that agreement means something.
#![allow(dead_code)]

pub fn present(v: &[Option<f64>]) -> Vec<f64> {
    v.iter()
        .flatten()
        .copied()
        .filter(|x| !x.is_nan())
        .collect()
}

/// Two-pass descriptive statistics: n, mean, sample sd, min, max.
pub type Describe = (i64, Option<f64>, Option<f64>, Option<f64>, Option<f64>);

pub fn describe_ref(v: &[f64]) -> Describe {
    let n = v.len();
    if n == 0 {
        return (0, None, None, None, None);
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    let ss: f64 = v.iter().map(|x| (x - mean) * (x - mean)).sum();
    let sd = (n > 1).then(|| (ss / (n - 1) as f64).sqrt());
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (n as i64, Some(mean), sd, Some(min), Some(max))
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting.
pub fn gauss_solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, p);
        b.swap(c, p);
        let pivot = a[c].clone();
        for r in c + 1..n {
            let f = a[r][c] / pivot[c];
            for (x, p) in a[r][c..].iter_mut().zip(&pivot[c..]) {
                *x -= f * p;
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|k| a[r][k] * x[k]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    x
}

pub struct Ols {
    pub estimate: Vec<f64>,
    pub std_error: Vec<f64>,
    pub n: i64,
    pub df_resid: i64,
}

/// OLS with intercept on raw X'X (n is small, the design well conditioned)
/// and residuals computed row by row.
pub fn ols_ref(y: &[Option<f64>], xs: &[Vec<Option<f64>>]) -> Ols {
    let p = xs.len() + 1;
    let rows: Vec<(f64, Vec<f64>)> = (0..y.len())
        .filter_map(|i| {
            let yi = y[i].filter(|v| !v.is_nan())?;
            let mut r = vec![1.0];
            for x in xs {
                r.push(x[i].filter(|v| !v.is_nan())?);
            }
            Some((yi, r))
        })
        .collect();
    let mut xtx = vec![vec![0.0; p]; p];
    let mut xty = vec![0.0; p];
    for (yi, r) in &rows {
        for i in 0..p {
            xty[i] += r[i] * yi;
            for j in 0..p {
                xtx[i][j] += r[i] * r[j];
            }
        }
    }
    let b = gauss_solve(xtx.clone(), xty);
    let rss: f64 = rows
        .iter()
        .map(|(yi, r)| {
            let e = yi - (0..p).map(|j| r[j] * b[j]).sum::<f64>();
            e * e
        })
        .sum();
    let n = rows.len() as i64;
    let df = n - p as i64;
    let s2 = rss / df as f64;
    let std_error = (0..p)
        .map(|j| {
            let mut e = vec![0.0; p];
            e[j] = 1.0;
            (s2 * gauss_solve(xtx.clone(), e)[j]).sqrt()
        })
        .collect();
    Ols {
        estimate: b,
        std_error,
        n,
        df_resid: df,
    }
}

pub struct Kmeans {
    pub size: Vec<i64>,
    pub centres: Vec<Vec<f64>>,
}

/// Lloyd's algorithm as the models specify it: start at the first k
/// distinct rows, nearest centre by squared distance (ties to the lower
/// index), stop when no row moves or after `iters` updates.
pub fn kmeans_ref(rows: &[Vec<f64>], k: usize, iters: usize) -> Kmeans {
    let mut centres: Vec<Vec<f64>> = vec![];
    for r in rows {
        if !centres.contains(r) {
            centres.push(r.clone());
            if centres.len() == k {
                break;
            }
        }
    }
    let d = rows[0].len();
    let mut assign = vec![usize::MAX; rows.len()];
    for _ in 0..iters {
        let mut changed = false;
        for (i, r) in rows.iter().enumerate() {
            let (mut best, mut best_d) = (0, f64::INFINITY);
            for (c, cen) in centres.iter().enumerate() {
                let mut dist = 0.0;
                for j in 0..d {
                    let t = r[j] - cen[j];
                    dist += t * t;
                }
                if dist < best_d {
                    (best, best_d) = (c, dist);
                }
            }
            if assign[i] != best {
                assign[i] = best;
                changed = true;
            }
        }
        if !changed {
            break;
        }
        let mut sums = vec![vec![0.0; d]; k];
        let mut counts = vec![0usize; k];
        for (i, r) in rows.iter().enumerate() {
            counts[assign[i]] += 1;
            for j in 0..d {
                sums[assign[i]][j] += r[j];
            }
        }
        for c in 0..k {
            if counts[c] > 0 {
                centres[c] = sums[c].iter().map(|s| s / counts[c] as f64).collect();
            }
        }
    }
    let mut size = vec![0; k];
    for &c in &assign {
        size[c] += 1;
    }
    Kmeans { size, centres }
}
