//! Organisations as entities and the persons behind accounts.
//!
//! Separation of duties compares organisations and persons, never free text or
//! account ids: an organisation's name is normalised to one key (so a
//! zero-width space or a full-width letter does not make "another
//! organisation"), and an account is bound to a person by a keyed hash of the
//! 身份证号 (one person with two accounts is still one person).

use ring::hmac;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::catalog::OrganisationType;
use crate::{Error, Result};

/// The label of the key the person hashes are made with (`Keyring::derive`).
pub const PERSON_KEY_LABEL: &str = "person-id/v1";

const MAX_NAME_CHARS: usize = 200;

/// An organisation accounts belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organisation {
    /// UUID v7.
    pub id: String,
    /// The name as registered (NFKC, invisible characters removed).
    pub name: String,
    /// 统一社会信用代码; `None` for individuals and for organisations migrated
    /// from the free-text column until an administrator records it.
    pub credit_code: Option<String>,
    pub organisation_type: OrganisationType,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// What an administrator supplies to register an organisation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrganisation {
    pub name: String,
    /// 统一社会信用代码, 18 characters; required except for individuals.
    #[serde(default)]
    pub credit_code: Option<String>,
    pub organisation_type: OrganisationType,
}

/// Characters that render as nothing (or almost nothing) and so can make two
/// names look the same.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

fn latin(c: char) -> bool {
    c.is_ascii_alphabetic()
        || ('\u{00C0}'..='\u{024F}').contains(&c)
        || ('\u{1E00}'..='\u{1EFF}').contains(&c)
}

/// The name as shown: NFKC, invisible characters removed, whitespace runs
/// collapsed to one space and trimmed.
pub fn display_name(name: &str) -> String {
    let cleaned: String = name.nfkc().filter(|c| !invisible(*c)).collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The key two names are compared by: NFKC, invisible characters and all
/// whitespace removed, Latin letters case-folded (CJK has no case).
pub fn name_key(name: &str) -> String {
    name.nfkc()
        .filter(|c| !invisible(*c) && !c.is_whitespace())
        .flat_map(|c| {
            let lower: Vec<char> = if latin(c) {
                c.to_lowercase().collect()
            } else {
                vec![c]
            };
            lower
        })
        .collect()
}

/// Checks an organisation's name; returns its display form.
pub fn check_name(name: &str) -> Result<String> {
    let shown = display_name(name);
    if name_key(&shown).is_empty() {
        return Err(Error::InvalidArgument(
            "organisation name must not be empty".into(),
        ));
    }
    if shown.chars().count() > MAX_NAME_CHARS {
        return Err(Error::InvalidArgument(format!(
            "organisation name must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    Ok(shown)
}

/// A 统一社会信用代码 in its canonical form (trimmed, upper case), checked
/// with its GB 32100 check character.
pub fn canonical_credit_code(code: &str) -> Result<String> {
    let code = code.trim().to_ascii_uppercase();
    if crate::ids::is_valid_credit_code(&code) {
        Ok(code)
    } else {
        Err(Error::InvalidArgument(
            "credit_code: not a valid 统一社会信用代码 (18 characters with a matching check character)"
                .into(),
        ))
    }
}

/// The keyed hash that stands for a person: HMAC-SHA256 of the canonical
/// 身份证号 under a key derived from the master key, hex. The number itself is
/// never stored; without the master key the hash cannot be tested against
/// guesses (the space of ID numbers is small).
pub fn person_key(key: &[u8; 32], resident_id: &str) -> Result<String> {
    let id = resident_id.trim().to_ascii_uppercase();
    if !crate::ids::is_valid_resident_id(&id) {
        return Err(Error::InvalidArgument(
            "resident_id: not a valid 身份证号 (18 characters, a real birth date and a matching check character)"
                .into(),
        ));
    }
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    Ok(hex::encode(hmac::sign(&k, id.as_bytes()).as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_name_are_one_key() {
        let plain = name_key("深圳大学");
        for variant in [
            "深圳\u{200B}大学",
            " 深圳大学 ",
            "深圳 大学",
            "\u{FEFF}深圳大学\u{2060}",
            "深圳大学\u{00AD}",
        ] {
            assert_eq!(name_key(variant), plain, "{variant:?}");
        }
        assert_eq!(
            name_key("Ｓｈｅｎｚｈｅｎ University"),
            name_key("shenzhenuniversity")
        );
        assert_ne!(name_key("深圳大学"), name_key("深圳技术大学"));
        assert_eq!(display_name("深圳\u{200B}大学"), "深圳大学");
        assert_eq!(
            display_name("  Shenzhen\u{3000} University "),
            "Shenzhen University"
        );
    }

    #[test]
    fn empty_and_invisible_names_are_refused() {
        assert!(check_name("\u{200B} \u{3000}").is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn credit_codes_and_resident_ids_are_checked() {
        assert_eq!(
            canonical_credit_code(" 91350100m000100y43 ").unwrap(),
            "91350100M000100Y43"
        );
        assert!(canonical_credit_code("91350100M000100Y44").is_err());
        let key = [7u8; 32];
        let a = person_key(&key, "11010519491231002X").unwrap();
        assert_eq!(a, person_key(&key, "11010519491231002x").unwrap());
        assert_eq!(a.len(), 64);
        assert!(!a.contains("1101"), "the number never appears");
        assert_ne!(a, person_key(&[8u8; 32], "11010519491231002X").unwrap());
        let err = person_key(&key, "110105194912310021").unwrap_err();
        assert!(!err.to_string().contains("110105"), "no echo");
    }
}
