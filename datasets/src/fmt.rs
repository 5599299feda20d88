//! Allocation-free CSV field formatting into a reused byte buffer.
//!
//! Money is carried as integer cents and printed with exactly two decimals, so
//! no float formatting is involved and output is stable across platforms.

use chrono::{Datelike, NaiveDate};

/// Appends the decimal digits of `n`.
#[inline]
pub fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// Appends `n` left-padded with zeros to `width` digits (wider values are not truncated).
#[inline]
pub fn push_padded(buf: &mut Vec<u8>, n: u64, width: usize) {
    let mut tmp = [b'0'; 20];
    let mut i = tmp.len();
    let mut v = n;
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let start = i.min(tmp.len() - width.min(20));
    buf.extend_from_slice(&tmp[start..]);
}

/// Appends an amount of cents as `units.cc`.
#[inline]
pub fn push_cents(buf: &mut Vec<u8>, cents: u64) {
    push_u64(buf, cents / 100);
    buf.push(b'.');
    push_padded(buf, cents % 100, 2);
}

/// Appends `YYYY-MM-DD`.
#[inline]
pub fn push_date(buf: &mut Vec<u8>, d: NaiveDate) {
    push_padded(buf, d.year() as u64, 4);
    buf.push(b'-');
    push_padded(buf, u64::from(d.month()), 2);
    buf.push(b'-');
    push_padded(buf, u64::from(d.day()), 2);
}

/// Appends `YYYYMMDD` into a fixed slice of 8 bytes.
#[inline]
pub fn write_date8(out: &mut [u8], d: NaiveDate) {
    let mut put = |range: std::ops::Range<usize>, mut v: u32| {
        for i in range.rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0..4, d.year() as u32);
    put(4..6, d.month());
    put(6..8, d.day());
}

/// Rounds a non-negative amount in units to integer cents.
#[inline]
pub fn to_cents(x: f64) -> u64 {
    (x * 100.0).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let mut b = Vec::new();
        push_u64(&mut b, 0);
        b.push(b' ');
        push_u64(&mut b, 18_446_744_073_709_551_615);
        b.push(b' ');
        push_padded(&mut b, 7, 3);
        b.push(b' ');
        push_padded(&mut b, 12345, 3);
        b.push(b' ');
        push_cents(&mut b, 5);
        b.push(b' ');
        push_cents(&mut b, 123_456);
        b.push(b' ');
        push_date(&mut b, NaiveDate::from_ymd_opt(987, 3, 9).unwrap());
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            "0 18446744073709551615 007 12345 0.05 1234.56 0987-03-09"
        );
        let mut d8 = [0u8; 8];
        write_date8(&mut d8, NaiveDate::from_ymd_opt(2000, 2, 29).unwrap());
        assert_eq!(&d8, b"20000229");
    }
}
