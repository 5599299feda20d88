//! Check characters of Chinese identity numbers.
//!
//! - 公民身份号码 (resident identity number, GB 11643-1999): 18 characters, the
//!   6-digit region code, the birth date `YYYYMMDD`, a 3-digit sequence number whose
//!   last digit is odd for men and even for women, and an ISO 7064 MOD 11-2 check
//!   character (`0`–`9` or `X`).
//! - 统一社会信用代码 (unified social credit code, GB 32100-2015): 18 characters
//!   over a 31-character alphabet (`0`–`9` and the capitals without `I O Z S V`):
//!   registration authority, category, 6-digit region code, the 9-character
//!   organisation code (GB 11714) and a MOD 31 check character.
//!
//! Only the canonical form is accepted: upper case, no spaces. Lower-case `x`
//! and lower-case letters are refused because a privacy-unit column compares
//! IDs byte for byte; accepting two spellings of one ID would let one person
//! count as two data subjects. Normalise (trim, upper-case) before validating.
//!
//! The validators work on bytes and never allocate: quality reports run them on
//! every row of multi-million-row imports.

use chrono::NaiveDate;

/// Sex encoded in a resident identity number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sex {
    Male,
    Female,
}

/// ISO 7064 MOD 11-2 weights 2^(17-i) mod 11 for positions 1..=17.
const RESIDENT_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// Check character indexed by (weighted sum mod 11).
const RESIDENT_CHECK: [u8; 11] = *b"10X98765432";

/// The 31 characters of GB 32100; a character's value is its index.
const CREDIT_CHARSET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// GB 32100 weights 3^(i-1) mod 31 for positions 1..=17.
const CREDIT_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// GB 11714 weights for the 8 body characters of an organisation code.
const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

/// Weighted sum of 17 ASCII digits, or `None` if `b` is not exactly that.
#[inline]
fn resident_sum(b: &[u8]) -> Option<u32> {
    if b.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (&c, &w) in b.iter().zip(RESIDENT_WEIGHTS.iter()) {
        if !c.is_ascii_digit() {
            return None;
        }
        sum += u32::from(c - b'0') * w;
    }
    Some(sum)
}

#[inline]
fn resident_check_byte(first17: &[u8]) -> Option<u8> {
    resident_sum(first17).map(|s| RESIDENT_CHECK[(s % 11) as usize])
}

/// The ISO 7064 MOD 11-2 check character for the first 17 digits of a resident
/// identity number: `'0'..='9'` or `'X'`. `None` unless `first17` is exactly 17
/// ASCII digits.
pub fn resident_id_check_char(first17: &str) -> Option<char> {
    resident_check_byte(first17.as_bytes()).map(char::from)
}

/// Parses `YYYYMMDD` (8 ASCII digits) into a real calendar date.
#[inline]
fn parse_date8(b: &[u8]) -> Option<NaiveDate> {
    if b.len() != 8 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| {
        b[r].iter()
            .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'))
    };
    NaiveDate::from_ymd_opt(n(0..4) as i32, n(4..6), n(6..8))
}

/// True for a canonical 18-character resident identity number: 17 digits, the
/// matching check character (upper-case `X` only), and a real birth date.
///
/// The region code is not checked against the (changing) national list of
/// administrative divisions, and the birth date is not compared with today:
/// validity must not depend on when the check runs.
pub fn is_valid_resident_id(id: &str) -> bool {
    let b = id.as_bytes();
    if b.len() != 18 {
        return false;
    }
    match resident_check_byte(&b[..17]) {
        Some(check) if check == b[17] => parse_date8(&b[6..14]).is_some(),
        _ => false,
    }
}

/// The birth date embedded in a valid resident identity number.
pub fn resident_id_birth_date(id: &str) -> Option<NaiveDate> {
    if !is_valid_resident_id(id) {
        return None;
    }
    parse_date8(&id.as_bytes()[6..14])
}

/// The sex encoded in a valid resident identity number: the 17th digit (last of
/// the sequence number) is odd for men, even for women.
pub fn resident_id_sex(id: &str) -> Option<Sex> {
    if !is_valid_resident_id(id) {
        return None;
    }
    Some(if (id.as_bytes()[16] - b'0') % 2 == 1 {
        Sex::Male
    } else {
        Sex::Female
    })
}

/// Value of a GB 32100 character (its index in the 31-character alphabet).
#[inline]
fn credit_value(c: u8) -> Option<u32> {
    // Branchy lookup instead of a search: this runs per row in quality reports.
    let v = match c {
        b'0'..=b'9' => c - b'0',
        b'A'..=b'H' => c - b'A' + 10,
        b'J'..=b'N' => c - b'J' + 18,
        b'P'..=b'R' => c - b'P' + 23,
        b'T' | b'U' => c - b'T' + 26,
        b'W'..=b'Y' => c - b'W' + 28,
        _ => return None,
    };
    Some(u32::from(v))
}

#[inline]
fn credit_check_byte(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (&c, &w) in first17.iter().zip(CREDIT_WEIGHTS.iter()) {
        sum += credit_value(c)? * w;
    }
    // 31 - (sum mod 31) is in 1..=31; 31 wraps to index 0.
    Some(CREDIT_CHARSET[((31 - sum % 31) % 31) as usize])
}

/// The GB 32100-2015 check character for the first 17 characters of a unified
/// social credit code. `None` if `first17` is not exactly 17 characters of the
/// code's alphabet (`0`–`9`, capitals except `I O Z S V`).
pub fn credit_code_check_char(first17: &str) -> Option<char> {
    credit_check_byte(first17.as_bytes()).map(char::from)
}

/// True for a canonical 18-character unified social credit code whose check
/// character matches. The embedded organisation code's own GB 11714 check is
/// not required: codes issued to some registration categories do not carry one.
pub fn is_valid_credit_code(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == 18 && credit_check_byte(&b[..17]) == Some(b[17])
}

/// The GB 11714-1997 check character of an organisation code (组织机构代码)
/// body of 8 characters (`0`–`9`, `A`–`Z`): `'0'..='9'` or `'X'`. Positions 9–17
/// of a unified social credit code hold such a body and its check character.
pub fn organization_code_check_char(first8: &str) -> Option<char> {
    let b = first8.as_bytes();
    if b.len() != 8 {
        return None;
    }
    let mut sum = 0u32;
    for (&c, &w) in b.iter().zip(ORG_WEIGHTS.iter()) {
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'Z' => c - b'A' + 10,
            _ => return None,
        };
        sum += u32::from(v) * w;
    }
    Some(match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        d => char::from(b'0' + d as u8),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn standard_example_with_x_check_digit() {
        // The example printed in GB 11643-1999.
        assert_eq!(resident_id_check_char("11010519491231002"), Some('X'));
        assert!(is_valid_resident_id("11010519491231002X"));
        assert_eq!(
            resident_id_birth_date("11010519491231002X"),
            NaiveDate::from_ymd_opt(1949, 12, 31)
        );
        assert_eq!(resident_id_sex("11010519491231002X"), Some(Sex::Female));
    }

    #[test]
    fn hand_computed_ids() {
        // 440305 19900307 123 -> weighted sum 7*4+9*4+10*0+5*3+8*0+4*5+2*1+1*9+6*9+3*0
        // +7*0+9*3+10*0+5*7+8*1+4*2+2*3 = 248; 248 mod 11 = 6 -> '6'.
        assert_eq!(resident_id_check_char("44030519900307123"), Some('6'));
        assert!(is_valid_resident_id("440305199003071236"));
        assert_eq!(resident_id_sex("440305199003071236"), Some(Sex::Male));
        assert_eq!(
            resident_id_birth_date("440305199003071236"),
            NaiveDate::from_ymd_opt(1990, 3, 7)
        );
        // 430524 20000229 002 (leap day) -> sum 7*4+9*3+10*0+5*5+8*2+4*4+2*2+1*0+6*0+3*0
        // +7*0+9*2+10*2+5*9+8*0+4*0+2*2 = 203; 203 mod 11 = 5 -> '7'.
        assert_eq!(resident_id_check_char("43052420000229002"), Some('7'));
        assert!(is_valid_resident_id("430524200002290027"));
        // Check digit '0': 11010519491231001 -> sum 167 - 2 = 165, mod 11 = 0 -> '1'.
        assert_eq!(resident_id_check_char("11010519491231001"), Some('1'));
    }

    #[test]
    fn bad_resident_ids() {
        assert!(!is_valid_resident_id("110105194912310021")); // wrong check digit
        assert!(!is_valid_resident_id("440305199003071234")); // wrong check digit
        assert!(!is_valid_resident_id("11010519491231002x")); // lower-case x is not canonical
        assert!(!is_valid_resident_id("11010519491231002")); // 17 chars
        assert!(!is_valid_resident_id("11010519491231002XX")); // 19 chars
        assert!(!is_valid_resident_id(""));
        assert!(!is_valid_resident_id("1101051949123100AX")); // letter in the body
        assert!(!is_valid_resident_id(" 11010519491231002X")); // not trimmed
        assert!(!is_valid_resident_id(
            "１１０１０５１９４９１２３１００２Ｘ"
        )); // full-width digits
        // Feb 30 and month 13, each with a correct check digit for its 17 digits.
        for body in [
            "44030519900230123",
            "44030519901301123",
            "43052419990229002",
            "44030519900000123",
        ] {
            let check = resident_id_check_char(body).unwrap();
            let id = format!("{body}{check}");
            assert!(!is_valid_resident_id(&id), "{id} has an impossible date");
            assert_eq!(resident_id_birth_date(&id), None);
            assert_eq!(resident_id_sex(&id), None);
        }
        assert_eq!(resident_id_check_char("4403051990030712"), None);
        assert_eq!(resident_id_check_char("4403051990030712X"), None);
        assert_eq!(resident_id_check_char("440305199003071236"), None);
    }

    #[test]
    fn known_credit_codes() {
        for code in ["91350100M000100Y43", "91110000600037341L"] {
            assert_eq!(
                credit_code_check_char(&code[..17]),
                code.chars().last(),
                "{code}"
            );
            assert!(is_valid_credit_code(code), "{code}");
        }
        // The organisation codes embedded in them carry valid GB 11714 checks.
        assert_eq!(organization_code_check_char("60003734"), Some('1'));
        assert_eq!(organization_code_check_char("M000100Y"), Some('4'));
    }

    #[test]
    fn bad_credit_codes() {
        assert!(!is_valid_credit_code("91350100M000100Y44")); // wrong check char
        assert!(!is_valid_credit_code("91110000600037341l")); // lower case
        assert!(!is_valid_credit_code("91110000600037341")); // 17 chars
        assert!(!is_valid_credit_code("91110000600037341LL"));
        // I O Z S V are not in the alphabet, wherever they appear.
        for bad in ['I', 'O', 'Z', 'S', 'V'] {
            let body = format!("9111000060003734{bad}");
            assert_eq!(credit_code_check_char(&body), None, "{body}");
            for check in CREDIT_CHARSET.iter().map(|&c| char::from(c)) {
                assert!(!is_valid_credit_code(&format!("{body}{check}")));
            }
            assert!(!is_valid_credit_code(&format!("91110000600037341{bad}")));
        }
    }

    #[test]
    fn credit_check_zero_when_sum_divisible() {
        // "00000000000000000" sums to 0 -> 31 - 0 = 31 -> '0'.
        assert_eq!(credit_code_check_char("00000000000000000"), Some('0'));
        // "10000000000000000" sums to 1 -> 30 -> 'Y'.
        assert_eq!(credit_code_check_char("10000000000000000"), Some('Y'));
    }

    #[test]
    fn org_code_check_values() {
        // Sum 0 -> 11 - 0 = 11 -> '0'.
        assert_eq!(organization_code_check_char("00000000"), Some('0'));
        // A = 10, weight 3: 30 mod 11 = 8 -> 3.
        assert_eq!(organization_code_check_char("A0000000"), Some('3'));
        // 4 * 3 = 12, mod 11 = 1 -> 10 -> 'X'.
        assert_eq!(organization_code_check_char("40000000"), Some('X'));
        assert_eq!(organization_code_check_char("0000000a"), None);
        assert_eq!(organization_code_check_char("0000000"), None);
    }

    fn credit_prefix() -> impl Strategy<Value = String> {
        proptest::collection::vec(0usize..31, 17).prop_map(|v| {
            v.into_iter()
                .map(|i| char::from(CREDIT_CHARSET[i]))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn resident_check_roundtrip(digits in "[0-9]{6}", days in 0i64..60_000, seq in "[0-9]{3}", pos in 0usize..18, repl in 0u8..11) {
            let date = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap() + chrono::Days::new(days as u64);
            let body = format!("{digits}{}{seq}", date.format("%Y%m%d"));
            let check = resident_id_check_char(&body).unwrap();
            let id = format!("{body}{check}");
            prop_assert!(is_valid_resident_id(&id));
            prop_assert_eq!(resident_id_birth_date(&id), Some(date));
            // Changing any single character breaks it (MOD 11-2 detects all single errors).
            let mut b = id.clone().into_bytes();
            let new = if repl == 10 { b'X' } else { b'0' + repl };
            prop_assume!(b[pos] != new);
            b[pos] = new;
            prop_assert!(!is_valid_resident_id(std::str::from_utf8(&b).unwrap()));
        }

        #[test]
        fn resident_check_any_17_digits(body in "[0-9]{17}") {
            let c = resident_id_check_char(&body).unwrap();
            prop_assert!(c.is_ascii_digit() || c == 'X');
        }

        #[test]
        fn credit_check_roundtrip(body in credit_prefix(), pos in 0usize..18, repl in 0usize..31) {
            let check = credit_code_check_char(&body).unwrap();
            let code = format!("{body}{check}");
            prop_assert!(is_valid_credit_code(&code));
            let mut b = code.into_bytes();
            prop_assume!(b[pos] != CREDIT_CHARSET[repl]);
            b[pos] = CREDIT_CHARSET[repl];
            prop_assert!(!is_valid_credit_code(std::str::from_utf8(&b).unwrap()));
        }
    }
}
