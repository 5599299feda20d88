//! WAT text shared by the sandbox's hand-written guests: the evil-guest suite
//! and the handoff benchmark (`benches/models.rs` includes this file by path).

/// The `anyu:model/types@0.1.0` type definitions, each named by an export
/// (the component model requires named types in signatures of imports and
/// exports).
pub const TYPE_DEFS: &str = r#"
    (type $cd (variant
      (case "f64" (list (option f64)))
      (case "i64" (list (option s64)))
      (case "str" (list (option string)))
      (case "boolean" (list (option bool)))))
    (export "column-data" (type $cd-e (eq $cd)))
    (type $col (record (field "name" string) (field "data" $cd-e)))
    (export "column" (type $col-e (eq $col)))
    (type $t (record (field "columns" (list $col-e))))
    (export "table" (type $table-e (eq $t)))
"#;

/// The `anyu:model/types@0.2.0` type definitions.
pub const TYPE_DEFS_0_2: &str = r#"
    (type $strs (record (field "offsets" (list u32)) (field "bytes" (list u8))))
    (export "strings" (type $strs-e (eq $strs)))
    (type $cd (variant
      (case "f64" (list f64))
      (case "i64" (list s64))
      (case "str" $strs-e)
      (case "boolean" (list bool))))
    (export "column-data" (type $cd-e (eq $cd)))
    (type $col (record (field "name" string) (field "data" $cd-e)
      (field "validity" (option (list u8)))))
    (export "column" (type $col-e (eq $col)))
    (type $t (record (field "columns" (list $col-e))))
    (export "table" (type $table-e (eq $t)))
"#;
