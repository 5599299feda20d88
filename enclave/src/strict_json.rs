//! Duplicate keys in signed JSON documents. serde keeps the last of two equal
//! keys (and another reader may keep the first), so a document with a
//! duplicated key can verify here while showing a forged value elsewhere:
//! signed documents are refused when any object repeats a key.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Where the first duplicated key of `json` is, as (line, column); `Ok(())`
/// when every object's keys are distinct. Malformed JSON is left to the
/// document's own parser (it is reported as `Ok`).
pub(crate) fn first_duplicate_key(json: &str) -> Result<(), (usize, usize)> {
    match serde_json::from_str::<Distinct>(json) {
        Err(e) if e.is_data() => Err((e.line(), e.column())),
        _ => Ok(()),
    }
}

/// Any JSON value whose objects, at every depth, have distinct keys.
struct Distinct;

impl<'de> Deserialize<'de> for Distinct {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DistinctVisitor)
    }
}

struct DistinctVisitor;

impl<'de> Visitor<'de> for DistinctVisitor {
    type Value = Distinct;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Distinct, E> {
        Ok(Distinct)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Distinct, E> {
        Ok(Distinct)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Distinct, E> {
        Ok(Distinct)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Distinct, E> {
        Ok(Distinct)
    }
    fn visit_str<E>(self, _: &str) -> Result<Distinct, E> {
        Ok(Distinct)
    }
    fn visit_unit<E>(self) -> Result<Distinct, E> {
        Ok(Distinct)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Distinct, A::Error> {
        while seq.next_element::<Distinct>()?.is_some() {}
        Ok(Distinct)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Distinct, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            // The key is not quoted: messages never echo a document.
            if !seen.insert(key) {
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value::<Distinct>()?;
        }
        Ok(Distinct)
    }
}

#[cfg(test)]
mod tests {
    use super::first_duplicate_key;

    #[test]
    fn distinct_keys_pass_at_every_depth() {
        assert_eq!(
            first_duplicate_key(r#"{"a":1,"b":{"a":2,"c":[{"a":3}]}}"#),
            Ok(())
        );
        assert_eq!(first_duplicate_key(r#"[{"a":1},{"a":1}]"#), Ok(()));
        assert_eq!(first_duplicate_key(r#""x""#), Ok(()));
    }

    #[test]
    fn a_repeated_key_is_found_wherever_it_is() {
        assert!(first_duplicate_key(r#"{"sha256":"a","sha256":"b"}"#).is_err());
        assert!(first_duplicate_key(r#"{"r":{"f":[{"sha256":"a","n":1,"sha256":"b"}]}}"#).is_err());
        // Escapes do not hide a repeat: "\u0061" is "a".
        assert!(first_duplicate_key(r#"{"a":1,"\u0061":2}"#).is_err());
        let (line, _) = first_duplicate_key("{\n\"a\":1,\n\"a\":2}").unwrap_err();
        assert_eq!(line, 3);
    }

    #[test]
    fn malformed_json_is_left_to_the_document_parser() {
        assert_eq!(first_duplicate_key("{\"a\":"), Ok(()));
    }
}
