//! Building valid identity numbers and credit codes as fixed 18-byte arrays.

use chrono::NaiveDate;

use crate::fmt::write_date8;

/// The GB 32100 alphabet (no I, O, Z, S, V).
pub const CREDIT_CHARSET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

fn write_digits(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// A resident identity number: region, birth date, 3-digit sequence (odd = male)
/// and its ISO 7064 MOD 11-2 check character.
pub fn resident_id(region: u32, birth: NaiveDate, seq: u16) -> [u8; 18] {
    let mut id = [0u8; 18];
    write_digits(&mut id[0..6], u64::from(region));
    write_date8(&mut id[6..14], birth);
    write_digits(&mut id[14..17], u64::from(seq));
    let body = std::str::from_utf8(&id[..17]).expect("ASCII digits");
    id[17] = enclave::ids::resident_id_check_char(body).expect("17 digits") as u8;
    id
}

/// A unified social credit code for an enterprise (registration authority `9`
/// = market regulation, category `1` = enterprise) with the given region code
/// and 8-character organisation-code body; the organisation code's GB 11714
/// check and the GB 32100 check are computed.
pub fn credit_code(region: u32, body: [u8; 8]) -> [u8; 18] {
    let mut code = [0u8; 18];
    code[0] = b'9';
    code[1] = b'1';
    write_digits(&mut code[2..8], u64::from(region));
    code[8..16].copy_from_slice(&body);
    let body_str = std::str::from_utf8(&body).expect("ASCII body");
    code[16] = enclave::ids::organization_code_check_char(body_str).expect("valid body") as u8;
    let first17 = std::str::from_utf8(&code[..17]).expect("ASCII");
    code[17] = enclave::ids::credit_code_check_char(first17).expect("GB 32100 alphabet") as u8;
    code
}

/// Organisation-code body for enterprise number `index`, unique per index
/// within one run (the seed only shifts the whole code space).
///
/// Codes issued since the 2015 reform in Shenzhen start with `MA5` followed by
/// five characters; older ones are 8 digits. Each form maps the index through
/// an affine bijection of its code space, so two enterprises never share a
/// body (the forms cannot collide: one starts with a letter).
pub fn org_body(seed: u64, index: u64, reform_era: bool) -> [u8; 8] {
    let mut body = [0u8; 8];
    let shift = crate::rng::mix64(seed ^ 0x4F52_4743_4F44_4531);
    if reform_era {
        const M: u64 = 31u64.pow(5);
        let mut v = (index % M * 7_777_777 + shift % M) % M;
        body[..3].copy_from_slice(b"MA5");
        for b in body[3..].iter_mut().rev() {
            *b = CREDIT_CHARSET[(v % 31) as usize];
            v /= 31;
        }
    } else {
        const M: u64 = 100_000_000;
        let v = (index % M * 48_271_003 + shift % M) % M;
        write_digits(&mut body, v);
    }
    body
}

/// Largest enterprise count for which [`org_body`] stays unique.
pub const MAX_ENTERPRISES: u64 = 28_629_151; // 31^5

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_ids_validate() {
        let d = NaiveDate::from_ymd_opt(1949, 12, 31).unwrap();
        assert_eq!(&resident_id(110105, d, 2), b"11010519491231002X");
        let code = credit_code(440300, org_body(7, 0, true));
        let s = std::str::from_utf8(&code).unwrap();
        assert!(enclave::ids::is_valid_credit_code(s), "{s}");
        assert!(s.starts_with("91440300MA5"));
    }

    #[test]
    fn org_bodies_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..50_000 {
            assert!(seen.insert(org_body(3, i, true)));
            assert!(seen.insert(org_body(3, i, false)));
        }
        // 7_777_777 and 48_271_003 are coprime to their moduli, so the maps are bijections.
        assert_eq!(gcd(7_777_777, MAX_ENTERPRISES), 1);
        assert_eq!(gcd(48_271_003, 100_000_000), 1);
    }

    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
}
