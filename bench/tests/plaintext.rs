//! The plaintext versions the scan benchmark compares against exist only in
//! this crate's build, and stay apart from datasets both ways.

use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use enclave::Error;
use enclave::keyring::Keyring;
use enclave::storage::{
    self, VersionWriter, read_version_batches, register_version, session_context,
};

fn ids(n: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(0..n))]).unwrap()
}

#[tokio::test]
async fn plaintext_benchmark_versions_are_kept_apart() {
    assert!(storage::plaintext_benchmark_build());
    let tmp = tempfile::tempdir().unwrap();
    let keyring = Arc::new(Keyring::init(&tmp.path().join("keys")).unwrap());
    let root = tmp.path().join("datasets");
    let rows = ids(2000);

    let mut w = VersionWriter::create_plaintext(&root, "bench", 1, rows.schema()).unwrap();
    w.write(&rows).unwrap();
    let plain = w.finish().unwrap();
    assert_eq!(&std::fs::read(&plain.data_path).unwrap()[..4], b"PAR1");

    let ctx = session_context(Arc::clone(&keyring));
    storage::register_plaintext_version_for_benchmark(&ctx, "p", &plain.dir)
        .await
        .unwrap();
    let got = ctx
        .sql("SELECT sum(id) FROM p")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let sum = got[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(sum.value(0), (0..2000).sum::<i64>());

    // The encrypted read paths refuse it: it has no key.
    let err = register_version(&ctx, "e", &plain.dir).await.unwrap_err();
    assert!(
        err.to_string().contains("unencrypted benchmark version"),
        "{err}"
    );
    assert!(matches!(
        read_version_batches(&keyring, &plain.dir),
        Err(Error::Crypto(_))
    ));

    // And the benchmark path refuses real (encrypted) versions.
    let mut w = VersionWriter::create(&keyring, &root, "bench", 2, rows.schema()).unwrap();
    w.write(&rows).unwrap();
    let encrypted = w.finish().unwrap();
    let err = storage::register_plaintext_version_for_benchmark(&ctx, "x", &encrypted.dir)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}
