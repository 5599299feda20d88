//! Encrypted dataset versions: written by `VersionWriter`, read back through
//! DataFusion and the parquet crate, and refused when keys are wrong or bytes flipped.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionConfig;
use enclave::Error;
use enclave::keyring::Keyring;
use enclave::storage::{
    self, DATA_FILE, KEY_FILE, VersionFile, VersionWriter, next_version, read_version_batches,
    register_version, session_context, session_context_with_config,
};

/// A string that occurs in the data and must never appear in the file's bytes.
const MARKER: &str = "深圳市福田区明文标记";

struct Env {
    tmp: tempfile::TempDir,
    keyring: Arc<Keyring>,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let keyring = Arc::new(Keyring::init(&tmp.path().join("keys")).unwrap());
        Env { tmp, keyring }
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("datasets")
    }

    /// Replaces the temp dir in error text so snapshots are stable.
    fn redact(&self, text: &str) -> String {
        text.replace(&self.tmp.path().display().to_string(), "<tmp>")
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("active", DataType::Boolean, true),
        Field::new("born", DataType::Date32, true),
        Field::new(
            "updated",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+08:00".into())),
            true,
        ),
    ]))
}

/// Deterministic mixed-type rows `start..start+n`, with nulls in every nullable column.
fn batch(start: i64, n: usize) -> RecordBatch {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ start as u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let districts = [
        "福田区",
        "罗湖区",
        "南山区",
        "宝安区",
        "龙岗区",
        "Futian",
        "",
    ];
    let ids: Vec<i64> = (start..start + n as i64).collect();
    let names: Vec<Option<String>> = ids
        .iter()
        .map(|&i| match next() % 13 {
            0 => None,
            1 => Some(MARKER.to_string()),
            r => Some(format!("{}-{i}", districts[r as usize % districts.len()])),
        })
        .collect();
    let amounts: Vec<Option<f64>> = ids
        .iter()
        .map(|_| match next() % 11 {
            0 => None,
            r => Some((next() % 1_000_000) as f64 / 100.0 - r as f64),
        })
        .collect();
    let active: Vec<Option<bool>> = ids
        .iter()
        .map(|_| match next() % 7 {
            0 => None,
            r => Some(r % 2 == 0),
        })
        .collect();
    let born: Vec<Option<i32>> = ids
        .iter()
        .map(|_| match next() % 9 {
            0 => None,
            _ => Some(-5000 + (next() % 25_000) as i32),
        })
        .collect();
    let updated: Vec<Option<i64>> = ids
        .iter()
        .map(|_| match next() % 17 {
            0 => None,
            _ => Some(1_600_000_000_000_000 + (next() % 100_000_000) as i64 * 1_000_000),
        })
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(StringArray::from(names)),
        Arc::new(Float64Array::from(amounts)),
        Arc::new(BooleanArray::from(active)),
        Arc::new(Date32Array::from(born)),
        Arc::new(TimestampMicrosecondArray::from(updated).with_timezone("+08:00")),
    ];
    RecordBatch::try_new(schema(), columns).unwrap()
}

/// Writes `batches` of 1000 rows (the last one shorter) as version `v`.
fn write_version(env: &Env, dataset: &str, v: u64, rows: usize) -> (VersionFile, RecordBatch) {
    let mut w = VersionWriter::create(&env.keyring, &env.root(), dataset, v, schema()).unwrap();
    let mut all = Vec::new();
    let mut start = 0;
    while start < rows {
        let n = (rows - start).min(1000);
        let b = batch(start as i64, n);
        w.write(&b).unwrap();
        all.push(b);
        start += n;
    }
    assert_eq!(w.rows(), rows as u64);
    let file = w.finish().unwrap();
    (file, concat_batches(&schema(), &all).unwrap())
}

async fn sql(ctx: &datafusion::prelude::SessionContext, q: &str) -> RecordBatch {
    let batches = ctx.sql(q).await.unwrap().collect().await.unwrap();
    let schema = batches[0].schema();
    concat_batches(&schema, &batches).unwrap()
}

fn assert_same_rows(got: &RecordBatch, want: &RecordBatch) {
    assert_eq!(got.num_rows(), want.num_rows());
    assert_eq!(got.num_columns(), want.num_columns());
    for (i, field) in want.schema().fields().iter().enumerate() {
        assert_eq!(got.schema().field(i).name(), field.name());
        // DataFusion reads strings as Utf8View by default; compare as Utf8.
        let column = cast(got.column(i), field.data_type()).unwrap();
        assert_eq!(column.as_ref(), want.column(i).as_ref(), "{}", field.name());
    }
}

fn set_writable(path: &Path) {
    let mut p = fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    p.set_readonly(false);
    fs::set_permissions(path, p).unwrap();
}

fn read_all(keyring: &Keyring, dir: &Path) -> enclave::Result<usize> {
    let mut rows = 0;
    for b in read_version_batches(keyring, dir)? {
        rows += b?.num_rows();
    }
    Ok(rows)
}

/// Full DataFusion scan of every column; engine errors converted by
/// `storage::engine_error` as the query layer does.
async fn datafusion_scan(keyring: &Arc<Keyring>, dir: &Path) -> enclave::Result<usize> {
    let ctx = session_context(Arc::clone(keyring));
    register_version(&ctx, "t", dir).await?;
    let df = ctx
        .sql("SELECT * FROM t")
        .await
        .map_err(storage::engine_error)?;
    let batches = df.collect().await.map_err(storage::engine_error)?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

#[tokio::test]
async fn datafusion_reads_back_the_original_rows() {
    let env = Env::new();
    let (file, original) = write_version(&env, "mixed", 1, 4321);
    assert_eq!(file.rows, 4321);
    assert_eq!(file.version, 1);
    assert_eq!(file.dir, env.root().join("mixed").join("v1"));
    assert_eq!(file.bytes, fs::metadata(&file.data_path).unwrap().len());
    let digest = ring::digest::digest(&ring::digest::SHA256, &fs::read(&file.data_path).unwrap());
    assert_eq!(file.sha256, hex::encode(digest));

    let ctx = session_context(Arc::clone(&env.keyring));
    register_version(&ctx, "mixed", &file.dir).await.unwrap();
    let got = sql(&ctx, "SELECT * FROM mixed ORDER BY id").await;
    assert_same_rows(&got, &original);

    // Aggregates over the encrypted table equal those over the original batch.
    let amounts = original
        .column(2)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    let want_sum: f64 = amounts.iter().flatten().sum();
    let names = original.column(1);
    let agg = sql(
        &ctx,
        &format!(
            "SELECT SUM(amount) AS s, COUNT(*) AS n, COUNT(name) AS named, \
             SUM(CASE WHEN name = '{MARKER}' THEN 1 ELSE 0 END) AS marked FROM mixed"
        ),
    )
    .await;
    let s = agg
        .column(0)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap()
        .value(0);
    assert!(
        (s - want_sum).abs() < 1e-6 * want_sum.abs().max(1.0),
        "{s} vs {want_sum}"
    );
    let n = agg
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(n, 4321);
    let named = agg
        .column(2)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(named as usize, names.len() - names.null_count());
    let marked = agg
        .column(3)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    let want_marked = names
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
        .iter()
        .filter(|v| *v == Some(MARKER))
        .count();
    assert!(want_marked > 100);
    assert_eq!(marked as usize, want_marked);

    // The direct reader agrees.
    let direct: Vec<RecordBatch> = read_version_batches(&env.keyring, &file.dir)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_same_rows(&concat_batches(&schema(), &direct).unwrap(), &original);

    // A keyring reopened from disk (as after a restart) reads it too.
    let reopened = Arc::new(Keyring::open(&env.tmp.path().join("keys")).unwrap());
    assert_eq!(datafusion_scan(&reopened, &file.dir).await.unwrap(), 4321);
}

#[tokio::test]
async fn file_is_unreadable_without_the_key() {
    let env = Env::new();
    let (file, _) = write_version(&env, "secret", 1, 3000);
    let bytes = fs::read(&file.data_path).unwrap();
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(
        !contains(MARKER.as_bytes()),
        "plaintext value found in the file"
    );
    assert!(!contains("福田区".as_bytes()));
    assert!(
        !contains(b"amount"),
        "column names are in the encrypted footer"
    );
    // Encrypted-footer files start and end with "PARE", not "PAR1".
    assert_eq!(&bytes[..4], b"PARE");
    assert_eq!(&bytes[bytes.len() - 4..], b"PARE");
    // The key file holds no plaintext key material, only the wrapped key.
    let key_json = fs::read_to_string(file.dir.join(KEY_FILE)).unwrap();
    assert!(key_json.contains(env.keyring.key_id()));

    // The standard parquet reader without keys refuses it.
    let f = fs::File::open(&file.data_path).unwrap();
    let err = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .expect_err("reading an encrypted file without keys must fail");
    assert!(err.to_string().to_lowercase().contains("encrypt"), "{err}");

    // So does DataFusion without the keyring's factory.
    let ctx = datafusion::prelude::SessionContext::new();
    let plain = ctx
        .register_parquet(
            "t",
            file.data_path.to_str().unwrap(),
            datafusion::prelude::ParquetReadOptions::default(),
        )
        .await;
    let failed = match plain {
        Err(_) => true,
        Ok(()) => ctx
            .sql("SELECT * FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .is_err(),
    };
    assert!(failed, "DataFusion read an encrypted file without keys");
}

#[tokio::test]
async fn wrong_master_key_is_a_clear_crypto_error() {
    let env = Env::new();
    let (file, _) = write_version(&env, "ds", 1, 100);
    let other_dir = tempfile::tempdir().unwrap();
    let other = Arc::new(Keyring::init(other_dir.path()).unwrap());
    let expected = format!(
        "data key was wrapped by master key {}, this keyring holds {}",
        env.keyring.key_id(),
        other.key_id()
    );

    let err = read_all(&other, &file.dir).unwrap_err();
    assert!(matches!(err, Error::Crypto(_)), "{err:?}");
    assert_eq!(err.to_string(), format!("crypto: {expected}"));

    let err = datafusion_scan(&other, &file.dir).await.unwrap_err();
    assert!(matches!(err, Error::Crypto(_)), "{err:?}");
    assert!(err.is_public());
    let redacted = err
        .to_string()
        .replace(env.keyring.key_id(), "<written-by>")
        .replace(other.key_id(), "<reader>");
    insta::assert_snapshot!("wrong_key_datafusion_error", redacted);
}

#[tokio::test]
async fn missing_or_mismatched_key_file_is_a_clear_error() {
    let env = Env::new();
    let (v1, _) = write_version(&env, "ds", 1, 50);
    let (v2, _) = write_version(&env, "ds", 2, 50);

    // key.json of another version: refused although it unwraps under this keyring.
    let k2 = v2.dir.join(KEY_FILE);
    set_writable(&k2);
    fs::copy(v1.dir.join(KEY_FILE), &k2).unwrap();
    let err = read_all(&env.keyring, &v2.dir).unwrap_err();
    assert!(matches!(err, Error::Crypto(_)), "{err:?}");
    insta::assert_snapshot!("key_file_of_other_version", env.redact(&err.to_string()));

    // Whole v1 directory copied as v3: the AAD binds it to v1.
    let v3 = env.root().join("ds").join("v3");
    fs::create_dir(&v3).unwrap();
    for f in [DATA_FILE, KEY_FILE] {
        fs::copy(v1.dir.join(f), v3.join(f)).unwrap();
    }
    assert!(matches!(read_all(&env.keyring, &v3), Err(Error::Crypto(_))));
    assert!(matches!(
        datafusion_scan(&env.keyring, &v3).await,
        Err(Error::Crypto(_))
    ));

    // Any edited field of key.json fails its MAC (or the key unwrap).
    let (v4, _) = write_version(&env, "ds", 4, 50);
    let k4 = v4.dir.join(KEY_FILE);
    set_writable(&k4);
    let good = fs::read_to_string(&k4).unwrap();
    let key: storage::VersionKey = serde_json::from_str(&good).unwrap();
    let edits = [
        good.replace(&key.data_sha256, &"0".repeat(64)),
        good.replace(&key.tail_sha256, &"0".repeat(64)),
        good.replace(
            &format!("\"tail_len\": {}", key.tail_len),
            &format!("\"tail_len\": {}", key.tail_len + 1),
        ),
        good.replace(&key.mac[..8], "00000000"),
    ];
    for edited in edits {
        assert_ne!(edited, good);
        fs::write(&k4, &edited).unwrap();
        let err = read_all(&env.keyring, &v4.dir).unwrap_err();
        assert!(
            matches!(err, Error::Crypto(ref m) if m.contains("failed authentication")),
            "{err:?}"
        );
    }
    fs::write(&k4, &good).unwrap();
    assert_eq!(read_all(&env.keyring, &v4.dir).unwrap(), 50);

    let k1 = v1.dir.join(KEY_FILE);
    set_writable(&v1.dir);
    fs::remove_file(&k1).unwrap();
    let err = read_all(&env.keyring, &v1.dir).unwrap_err();
    assert!(matches!(err, Error::Crypto(_)), "{err:?}");
    insta::assert_snapshot!("key_file_missing", env.redact(&err.to_string()));
    let err = datafusion_scan(&env.keyring, &v1.dir).await.unwrap_err();
    assert!(
        matches!(err, Error::Crypto(ref m) if m.contains("key.json is missing")),
        "{err:?}"
    );
}

#[tokio::test]
async fn flipped_bytes_are_detected_by_both_readers() {
    let env = Env::new();
    let (file, _) = write_version(&env, "ds", 1, 3000);
    let path = &file.data_path;
    set_writable(path);
    let original = fs::read(path).unwrap();
    let len = original.len();
    let footer_len = u32::from_le_bytes(original[len - 8..len - 4].try_into().unwrap()) as usize;
    let footer_start = len - 8 - footer_len;
    let offsets = [
        ("leading magic", 0),
        ("first module length", 4),
        ("first module nonce", 10),
        ("first page", 40),
        ("middle of data pages", footer_start / 2),
        ("last data byte", footer_start - 1),
        ("crypto metadata", footer_start + 2),
        ("encrypted footer", footer_start + footer_len / 2),
        ("footer tag", len - 9),
        ("footer length", len - 6),
        ("trailing magic", len - 1),
    ];
    for (what, offset) in offsets {
        let mut bytes = original.clone();
        bytes[offset] ^= 0x01;
        fs::write(path, &bytes).unwrap();
        let err = read_all(&env.keyring, &file.dir)
            .expect_err(&format!("direct read accepted a flipped {what} byte"));
        assert!(
            matches!(err, Error::Crypto(_) | Error::InvalidData(_)),
            "{what}: {err:?}"
        );
        let err = datafusion_scan(&env.keyring, &file.dir)
            .await
            .expect_err(&format!("DataFusion accepted a flipped {what} byte"));
        assert!(matches!(err, Error::Crypto(_)), "{what}: {err:?}");
    }
    fs::write(path, &original).unwrap();
    assert_eq!(read_all(&env.keyring, &file.dir).unwrap(), 3000);
    assert_eq!(
        datafusion_scan(&env.keyring, &file.dir).await.unwrap(),
        3000
    );
}

/// Every single-byte change of a small version is caught. Reading catches all of
/// them except the 4-byte length prefixes of data pages, which the parquet reader
/// ignores (it takes page sizes from the authenticated page header): such a flip
/// reads back the identical rows. `verify_version` catches every byte.
#[test]
fn every_flipped_byte_of_a_small_file_is_detected() {
    let env = Env::new();
    let (file, original_rows) = write_version(&env, "tiny", 1, 40);
    let path = &file.data_path;
    set_writable(path);
    let original = fs::read(path).unwrap();
    let mut unread = Vec::new();
    for offset in 0..original.len() {
        let mut bytes = original.clone();
        bytes[offset] ^= 0x80;
        fs::write(path, &bytes).unwrap();
        let verified = storage::verify_version(&env.keyring, &file.dir);
        assert!(
            matches!(verified, Err(Error::Crypto(_))),
            "verify_version accepted flipped byte {offset}: {verified:?}"
        );
        let read: enclave::Result<Vec<RecordBatch>> =
            read_version_batches(&env.keyring, &file.dir).and_then(|it| it.collect());
        match read {
            Ok(batches) => {
                assert_same_rows(
                    &concat_batches(&schema(), &batches).unwrap(),
                    &original_rows,
                );
                unread.push(offset);
            }
            Err(Error::Crypto(_) | Error::InvalidData(_)) => {}
            Err(other) => panic!("byte {offset}: unexpected error kind {other:?}"),
        }
    }
    // The unread bytes are whole 4-byte length prefixes: one per data or
    // dictionary page, 6 columns with at most 2 pages each.
    assert_eq!(unread.len() % 4, 0, "{unread:?}");
    for run in unread.chunks(4) {
        assert_eq!(run[3] - run[0], 3, "{unread:?}");
    }
    assert!(unread.len() <= 4 * 12, "{unread:?}");
    fs::write(path, &original).unwrap();
    storage::verify_version(&env.keyring, &file.dir).unwrap();
}

#[test]
fn dropped_or_aborted_writer_leaves_nothing() {
    let env = Env::new();
    let dataset_dir = env.root().join("ds");
    let entries = || fs::read_dir(&dataset_dir).unwrap().count();

    let mut w = VersionWriter::create(&env.keyring, &env.root(), "ds", 1, schema()).unwrap();
    w.write(&batch(0, 500)).unwrap();
    assert_eq!(entries(), 1, "the temporary directory exists while writing");
    w.abort();
    assert_eq!(entries(), 0);

    let mut w = VersionWriter::create(&env.keyring, &env.root(), "ds", 1, schema()).unwrap();
    w.write(&batch(0, 500)).unwrap();
    drop(w);
    assert_eq!(entries(), 0);

    // A batch with the wrong schema is refused before it reaches the file.
    let mut w = VersionWriter::create(&env.keyring, &env.root(), "ds", 1, schema()).unwrap();
    let other = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![1, 2]))],
    )
    .unwrap();
    let err = w.write(&other).unwrap_err();
    assert!(matches!(err, Error::InvalidData(_)), "{err:?}");
    insta::assert_snapshot!("batch_schema_mismatch", err.to_string());
    w.write(&batch(0, 10)).unwrap();
    assert_eq!(w.rows(), 10);
    drop(w);
    assert_eq!(entries(), 0);
    assert_eq!(next_version(&env.root(), "ds").unwrap(), 1);
}

#[test]
fn versions_are_immutable() {
    let env = Env::new();
    assert_eq!(next_version(&env.root(), "ds").unwrap(), 1);
    let (v1, _) = write_version(&env, "ds", 1, 10);
    assert_eq!(next_version(&env.root(), "ds").unwrap(), 2);
    let before = fs::read(&v1.data_path).unwrap();

    let err = VersionWriter::create(&env.keyring, &env.root(), "ds", 1, schema()).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    insta::assert_snapshot!("version_conflict", err.to_string());

    // Two writers racing for v2: the second to finish gets a conflict, not an overwrite.
    let mut a = VersionWriter::create(&env.keyring, &env.root(), "ds", 2, schema()).unwrap();
    let mut b = VersionWriter::create(&env.keyring, &env.root(), "ds", 2, schema()).unwrap();
    a.write(&batch(0, 7)).unwrap();
    b.write(&batch(0, 9)).unwrap();
    let a = a.finish().unwrap();
    let err = b.finish().unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert_eq!(read_all(&env.keyring, &a.dir).unwrap(), 7);
    assert_eq!(fs::read(&v1.data_path).unwrap(), before);
    // Only v1 and v2 remain; the loser's temporary directory is gone.
    let mut names: Vec<String> = fs::read_dir(env.root().join("ds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["v1", "v2"]);
    assert_eq!(next_version(&env.root(), "ds").unwrap(), 3);

    // Finished files are read-only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [DATA_FILE, KEY_FILE] {
            let mode = fs::metadata(v1.dir.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o400, "{f}");
        }
    }

    // Bad identifiers never reach the file system.
    for bad in ["../escape", "", ".hidden", "a/b"] {
        let err = VersionWriter::create(&env.keyring, &env.root(), bad, 1, schema()).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err:?}");
    }
    let err = VersionWriter::create(&env.keyring, &env.root(), "ds", 0, schema()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)));
}

#[test]
fn stale_temp_dirs_are_removed() {
    let env = Env::new();
    let (_v1, _) = write_version(&env, "ds", 1, 10);
    // Simulate a crash: a writer whose cleanup never ran.
    let w = VersionWriter::create(&env.keyring, &env.root(), "ds", 2, schema()).unwrap();
    std::mem::forget(w);
    assert_eq!(fs::read_dir(env.root().join("ds")).unwrap().count(), 2);
    assert_eq!(next_version(&env.root(), "ds").unwrap(), 2);
    assert_eq!(
        storage::remove_stale_temp_dirs(&env.root(), "ds").unwrap(),
        1
    );
    assert_eq!(fs::read_dir(env.root().join("ds")).unwrap().count(), 1);
    assert_eq!(
        storage::remove_stale_temp_dirs(&env.root(), "absent").unwrap(),
        0
    );
}

#[test]
fn key_json_format() {
    let env = Env::new();
    let (v, _) = write_version(&env, "social_insurance", 3, 1);
    let text = fs::read_to_string(v.dir.join(KEY_FILE)).unwrap();
    let key: storage::VersionKey = serde_json::from_str(&text).unwrap();
    assert_eq!(key.wrapped_key.key_id, env.keyring.key_id());
    assert_eq!(key.wrapped_key.nonce.len(), 24);
    assert_eq!(key.wrapped_key.ciphertext.len(), 96);
    assert_eq!(key.data_sha256, v.sha256);
    assert_eq!(key.data_len, v.bytes);
    let redacted = text
        .replace(&key.wrapped_key.key_id, "<key-id>")
        .replace(&key.wrapped_key.nonce, "<nonce>")
        .replace(&key.wrapped_key.ciphertext, "<ciphertext>")
        .replace(&key.data_sha256, "<sha256>")
        .replace(&key.tail_sha256, "<tail-sha256>")
        .replace(&key.mac, "<mac>")
        .replace(
            &format!("\"data_len\": {}", key.data_len),
            "\"data_len\": <n>",
        )
        .replace(
            &format!("\"tail_len\": {}", key.tail_len),
            "\"tail_len\": <n>",
        );
    insta::assert_snapshot!("key_json", redacted);
}

#[cfg(unix)]
#[test]
fn key_files_are_private_and_never_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let k = Keyring::init(&dir).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("master.key")), 0o600);
    assert_eq!(mode(&dir.join("signing.pk8")), 0o600);
    assert_eq!(fs::metadata(dir.join("master.key")).unwrap().len(), 32);
    assert_eq!(
        fs::read_to_string(dir.join("signing.pub")).unwrap().trim(),
        hex::encode(k.public_key())
    );
    let master = fs::read(dir.join("master.key")).unwrap();

    let err = Keyring::init(&dir).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert_eq!(fs::read(dir.join("master.key")).unwrap(), master);
    assert_eq!(Keyring::open(&dir).unwrap().key_id(), k.key_id());
    // No temporary files left behind by either call.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 3);

    // A world-readable master key is refused with a hint.
    fs::set_permissions(dir.join("master.key"), fs::Permissions::from_mode(0o644)).unwrap();
    let err = Keyring::open(&dir).unwrap_err();
    assert!(matches!(err, Error::Crypto(_)), "{err:?}");
    insta::assert_snapshot!(
        "master_key_too_open",
        err.to_string()
            .replace(&tmp.path().display().to_string(), "<tmp>")
    );
    fs::set_permissions(dir.join("master.key"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(dir.join("signing.pk8"), fs::Permissions::from_mode(0o640)).unwrap();
    assert!(matches!(Keyring::open(&dir), Err(Error::Crypto(_))));
    fs::set_permissions(dir.join("signing.pk8"), fs::Permissions::from_mode(0o600)).unwrap();

    // Truncated and oversized master keys are refused.
    fs::write(dir.join("master.key"), &master[..31]).unwrap();
    let err = Keyring::open(&dir).unwrap_err();
    assert!(
        err.to_string().contains("has 31 bytes, expected 32"),
        "{err}"
    );
    fs::write(dir.join("master.key"), [master.as_slice(), b"\n"].concat()).unwrap();
    assert!(matches!(Keyring::open(&dir), Err(Error::Crypto(_))));

    // A signing.pub that does not match the signing key is refused.
    fs::write(dir.join("master.key"), &master).unwrap();
    fs::write(dir.join("signing.pub"), hex::encode([0u8; 32])).unwrap();
    assert!(matches!(Keyring::open(&dir), Err(Error::Crypto(_))));

    // Missing keys point at `anyu init`.
    let err = Keyring::open(&tmp.path().join("nowhere")).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)));
    assert!(err.to_string().contains("anyu init"));
}

/// A version larger than one row group is split so DataFusion scans it in
/// parallel on 2 cores, and aggregates stay exact across row groups.
#[tokio::test]
async fn large_versions_are_scanned_in_parallel() {
    let env = Env::new();
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("x", DataType::Float64, false),
    ]));
    let rows = storage::ROW_GROUP_MAX_ROWS * 2 + 100_000;
    let mut w = VersionWriter::create(&env.keyring, &env.root(), "big", 1, schema.clone()).unwrap();
    let mut start = 0i64;
    while (start as usize) < rows {
        let n = (rows - start as usize).min(65_536) as i64;
        let k: Int64Array = (start..start + n).collect();
        let x: Float64Array = (start..start + n)
            .map(|i| (i % 1000) as f64 * 0.5)
            .collect();
        w.write(&RecordBatch::try_new(schema.clone(), vec![Arc::new(k), Arc::new(x)]).unwrap())
            .unwrap();
        start += n;
    }
    let file = w.finish().unwrap();

    let props = storage::decryption_properties(&env.keyring, &file.dir).unwrap();
    let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
        .with_file_decryption_properties(props);
    let builder =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new_with_options(
            fs::File::open(&file.data_path).unwrap(),
            options,
        )
        .unwrap();
    assert_eq!(builder.metadata().num_row_groups(), 3);

    let config = SessionConfig::new().with_target_partitions(2);
    let ctx = session_context_with_config(Arc::clone(&env.keyring), config);
    register_version(&ctx, "big", &file.dir).await.unwrap();
    let plan = sql(&ctx, "EXPLAIN SELECT SUM(x) FROM big").await;
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&[plan])
        .unwrap()
        .to_string();
    assert!(text.contains("file_groups={2 groups"), "{text}");

    let got = sql(
        &ctx,
        "SELECT SUM(x) AS s, SUM(k) AS sk, COUNT(*) AS n FROM big",
    )
    .await;
    let n = rows as i64;
    let want_x: f64 = (0..n).map(|i| (i % 1000) as f64 * 0.5).sum();
    let s = got
        .column(0)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap()
        .value(0);
    assert!((s - want_x).abs() < 1e-6 * want_x, "{s} vs {want_x}");
    let sk = got
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(sk, n * (n - 1) / 2);
    let count = got
        .column(2)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(count, n);
}
