//! Working-day calendar: due dates across weekends, holidays and adjusted working
//! days (调休) in the built-in 2026 data; the calendar file format refuses bad
//! files naming the field and line; due dates and working-day counts agree.

use chrono::{Datelike, NaiveDate, Weekday};
use enclave::Error;
use enclave::calendar::WorkCalendar;
use proptest::prelude::*;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).expect("valid test date")
}

fn cn() -> WorkCalendar {
    WorkCalendar::china_mainland()
}

#[test]
fn due_date_skips_a_weekend() {
    let cal = cn();
    // Fri 2026-0306: Sat and Sun are not working days.
    assert_eq!(cal.add_working_days(d(2026, 3, 6), 1), d(2026, 3, 9));
    assert_eq!(cal.add_working_days(d(2026, 3, 6), 3), d(2026, 3, 11));
    // A request made on a Saturday starts counting on Monday.
    assert_eq!(cal.add_working_days(d(2026, 3, 7), 1), d(2026, 3, 9));
    assert_eq!(cal.working_days_between(d(2026, 3, 6), d(2026, 3, 9)), 1);
}

#[test]
fn due_date_skips_national_day_2026() {
    let cal = cn();
    for day in 1..=7 {
        assert!(
            !cal.is_working_day(d(2026, 10, day)),
            "2026-10-{day:02} is a holiday"
        );
        assert_eq!(cal.holiday_name(d(2026, 10, day)), Some("国庆节"));
    }
    // Wed 09-30 + 1: the whole 10-01..10-07 break is skipped.
    assert_eq!(cal.add_working_days(d(2026, 9, 30), 1), d(2026, 10, 8));
    // ... and Sat 10-10 is an adjusted working day, so 3 days end on it.
    assert_eq!(cal.add_working_days(d(2026, 9, 30), 3), d(2026, 10, 10));
    assert_eq!(cal.working_days_between(d(2026, 9, 30), d(2026, 10, 7)), 0);
}

#[test]
fn spring_festival_2026_is_nine_days_off() {
    let cal = cn();
    let off: Vec<_> = d(2026, 2, 14)
        .iter_days()
        .take_while(|x| *x <= d(2026, 2, 24))
        .filter(|x| !cal.is_working_day(*x))
        .collect();
    assert_eq!(off.len(), 9);
    assert_eq!(off.first(), Some(&d(2026, 2, 15)));
    assert_eq!(off.last(), Some(&d(2026, 2, 23)));
    assert_eq!(cal.holiday_name(d(2026, 2, 17)), Some("春节"));
}

#[test]
fn adjusted_working_saturday_counts() {
    let cal = cn();
    let sat = d(2026, 2, 14);
    assert_eq!(sat.weekday(), Weekday::Sat);
    assert!(cal.is_working_day(sat));
    assert_eq!(cal.holiday_name(sat), None);
    // Fri 02-13 + 1 lands on the 调休 Saturday; + 2 jumps the festival to 02-24.
    assert_eq!(cal.add_working_days(d(2026, 2, 13), 1), sat);
    assert_eq!(cal.add_working_days(d(2026, 2, 13), 2), d(2026, 2, 24));
    // Sat 02-28 works too; an ordinary Saturday does not.
    assert!(cal.is_working_day(d(2026, 2, 28)));
    assert!(!cal.is_working_day(d(2026, 3, 7)));
}

#[test]
fn adjusted_working_sunday_counts() {
    let cal = cn();
    let sun = d(2026, 9, 20);
    assert_eq!(sun.weekday(), Weekday::Sun);
    assert!(cal.is_working_day(sun));
    assert_eq!(cal.add_working_days(d(2026, 9, 18), 1), sun);
    // 元旦 2026: Sun 01-04 works.
    assert_eq!(cal.add_working_days(d(2025, 12, 31), 1), d(2026, 1, 4));
}

#[test]
fn covers_official_years_only() {
    let cal = cn();
    assert!(cal.covers(d(2026, 6, 1)));
    // 2027 is provisional until the State Council notice is loaded.
    assert!(!cal.covers(d(2027, 6, 1)));
    assert!(!cal.covers(d(2028, 6, 1)));
    assert!(!cal.covers(d(2025, 6, 1)));
    // Provisional 2027 still knows the statutory days.
    assert_eq!(cal.holiday_name(d(2027, 10, 1)), Some("国庆节"));
    assert!(!cal.is_working_day(d(2027, 2, 8)));
    // Outside the data: weekends only.
    assert!(cal.is_working_day(d(2028, 10, 2)));
    assert!(!cal.is_working_day(d(2028, 10, 1)));
    assert_eq!(cal.holiday_name(d(2028, 10, 2)), None);
}

const OFFICIAL_2027_STANDIN: &str = r#"
format_version = 1
region = "CN"
year = 2027

[[holidays]]
name = "国庆节"
from = 2027-10-01
to = 2027-10-07

[[working_days]]
date = 2027-10-09
name = "国庆节调休"
"#;

#[test]
fn merge_replaces_a_whole_year() {
    let official = WorkCalendar::from_toml(OFFICIAL_2027_STANDIN).expect("parses");
    let cal = cn().merge(official);
    assert!(cal.covers(d(2027, 6, 1)));
    assert_eq!(cal.holiday_name(d(2027, 10, 6)), Some("国庆节"));
    assert!(cal.is_working_day(d(2027, 10, 9)));
    // Provisional 2027 days absent from the new file are gone; 2026 is untouched.
    assert_eq!(cal.holiday_name(d(2027, 5, 1)), None);
    assert_eq!(cal.holiday_name(d(2026, 5, 1)), Some("劳动节"));
}

#[test]
fn from_path_reads_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("china_2027.toml");
    std::fs::write(&path, OFFICIAL_2027_STANDIN).expect("write");
    let cal = WorkCalendar::from_path(&path).expect("loads");
    assert!(cal.covers(d(2027, 1, 1)));
    assert!(!cal.covers(d(2026, 1, 1)));

    let missing = WorkCalendar::from_path(&dir.path().join("absent.toml")).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }), "{missing:?}");
}

/// Dates that exercise weekends, every 2026 holiday and each 调休 day.
const START_DATES: &[(i32, u32, u32)] = &[
    (2025, 12, 31),
    (2026, 1, 2),
    (2026, 2, 11),
    (2026, 2, 13),
    (2026, 2, 14),
    (2026, 2, 20),
    (2026, 3, 6),
    (2026, 4, 2),
    (2026, 4, 30),
    (2026, 5, 8),
    (2026, 6, 18),
    (2026, 9, 18),
    (2026, 9, 24),
    (2026, 9, 30),
    (2026, 10, 9),
    (2026, 12, 30),
    (2027, 2, 4),
];

#[test]
fn deadline_table() {
    let cal = cn();
    let mut table = String::from("start            | +3 (完整性审查)   | +10 (审核)\n");
    for &(y, m, day) in START_DATES {
        let start = d(y, m, day);
        let fmt = |x: NaiveDate| format!("{x} {:?}", x.weekday());
        table.push_str(&format!(
            "{:<16} | {:<17} | {}\n",
            fmt(start),
            fmt(cal.add_working_days(start, 3)),
            fmt(cal.add_working_days(start, 10)),
        ));
    }
    insta::assert_snapshot!(table);
}

/// A valid file with `line` replaced, for one error each.
const BASE: &str = r#"format_version = 1
region = "CN"
year = 2026

[[holidays]]
name = "春节"
from = 2026-02-15
to = 2026-02-23

[[working_days]]
date = 2026-02-14
name = "春节调休"
"#;

fn with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "`{from}` not in base file");
    BASE.replacen(from, to, 1)
}

#[test]
fn base_file_is_valid() {
    let cal = WorkCalendar::from_toml(BASE).expect("base parses");
    assert!(cal.is_working_day(d(2026, 2, 14)));
    assert!(!cal.is_working_day(d(2026, 2, 16)));
}

#[test]
fn bad_files_are_refused_naming_the_field() {
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "bad format_version",
            with("format_version = 1", "format_version = 2"),
            "format_version",
        ),
        (
            "format_version not a number",
            with("format_version = 1", "format_version = \"1\""),
            "format_version",
        ),
        (
            "from after to",
            with("to = 2026-02-23", "to = 2026-02-10"),
            "holidays[0].to",
        ),
        (
            "unparseable date (string)",
            with("from = 2026-02-15", "from = \"2026-02-15\""),
            "holidays[0].from",
        ),
        (
            "date with a time",
            with("date = 2026-02-14", "date = 2026-02-14T09:00:00"),
            "working_days[0].date",
        ),
        (
            "impossible day",
            with("to = 2026-02-23", "to = 2026-02-30"),
            "holidays[0].to",
        ),
        (
            "holiday overlaps working day",
            with("date = 2026-02-14", "date = 2026-02-21"),
            "working_days[0].date",
        ),
        (
            "holidays overlap",
            format!("{BASE}\n[[holidays]]\nname = \"x\"\nfrom = 2026-02-23\nto = 2026-02-24\n"),
            "holidays[1].from",
        ),
        (
            "working day on a weekday",
            with("date = 2026-02-14", "date = 2026-02-13"),
            "working_days[0].date",
        ),
        (
            "missing to",
            with("to = 2026-02-23\n", ""),
            "holidays[0].to",
        ),
        (
            "empty name",
            with("name = \"春节\"", "name = \"\""),
            "holidays[0].name",
        ),
        ("missing year", with("year = 2026\n", ""), "year"),
        (
            "date far from year",
            with("from = 2026-02-15", "from = 2024-02-15"),
            "holidays[0].from",
        ),
        (
            "unknown field",
            with("region = \"CN\"", "region = \"CN\"\nyaer = 2026"),
            "yaer",
        ),
        (
            "syntax error",
            with("region = \"CN\"", "region = "),
            "line 2",
        ),
    ];
    let mut report = String::new();
    for (what, text, field) in &cases {
        let err = WorkCalendar::from_toml(text).expect_err(what);
        assert!(matches!(err, Error::InvalidArgument(_)), "{what}: {err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(field),
            "{what}: `{msg}` does not name `{field}`"
        );
        // Names and dates from the file never appear in the message.
        for value in ["春节", "2026-02", "2024-02", "\"CN\""] {
            assert!(!msg.contains(value), "{what}: `{msg}` contains a value");
        }
        report.push_str(&format!("{what}:\n  {msg}\n"));
    }
    insta::assert_snapshot!(report);
}

fn any_date() -> impl Strategy<Value = NaiveDate> {
    // Late 2025 to 2028: before, inside and after the shipped data.
    (0u64..(4 * 366)).prop_map(|off| d(2025, 6, 1) + chrono::Days::new(off))
}

proptest! {
    #[test]
    fn due_date_is_the_nth_working_day(start in any_date(), n in 1u32..40) {
        let cal = cn();
        let due = cal.add_working_days(start, n);
        prop_assert!(due > start);
        prop_assert!(cal.is_working_day(due));
        prop_assert_eq!(cal.working_days_between(start, due), i64::from(n));
        // The first such day: one day earlier is still short of n.
        prop_assert_eq!(cal.working_days_between(start, due.pred_opt().unwrap()), i64::from(n) - 1);
        prop_assert_eq!(cal.working_days_between(due, start), -i64::from(n));
    }

    #[test]
    fn zero_working_days_is_the_start(start in any_date()) {
        let cal = cn();
        prop_assert_eq!(cal.add_working_days(start, 0), start);
        prop_assert_eq!(cal.working_days_between(start, start), 0);
    }
}
