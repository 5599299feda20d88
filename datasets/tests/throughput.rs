//! Rough generator speed, run by hand:
//! `ANYU_GEN_ROWS=200000 [ANYU_GEN_THREADS=1] cargo test -p anyu-datasets --test throughput -- --ignored --nocapture`
//! (debug builds are many times slower than release; see the README's benchmark).

use std::time::Instant;

#[test]
#[ignore = "manual measurement"]
fn throughput() {
    let rows = std::env::var("ANYU_GEN_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let out_dir =
        std::env::var_os("ANYU_GEN_OUT").map_or_else(|| dir.path().to_path_buf(), Into::into);
    let t = Instant::now();
    let report = anyu_datasets::generate(&anyu_datasets::GenerateOptions {
        rows,
        seed: 1,
        out_dir,
    })
    .unwrap();
    let secs = t.elapsed().as_secs_f64();
    let total: u64 = report.files.iter().map(|f| f.rows).sum();
    let bytes: u64 = report.files.iter().map(|f| f.bytes).sum();
    for f in &report.files {
        println!(
            "{:<22} {:>10} rows {:>12} bytes",
            f.dataset, f.rows, f.bytes
        );
    }
    println!(
        "{rows} persons in {secs:.2} s: {:.0} persons/s, {:.0} rows/s (all files), {:.1} MB/s",
        rows as f64 / secs,
        total as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}
