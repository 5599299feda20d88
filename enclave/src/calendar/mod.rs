//! Mainland-China working-day calendar and due dates counted in working days.
//!
//! Review deadlines (XM:23 completeness 3 working days, SZ:42 review 10, SZ:65
//! complaints 10) are counted in working days: weekdays that are not public
//! holidays, plus the adjusted working days (调休上班) that move work onto a Saturday
//! or Sunday.
//!
//! ## Data
//!
//! The built-in calendar ([`WorkCalendar::china_mainland`]) embeds one calendar file
//! per year:
//!
//! - `china_2026.toml`: the State Council notice 国务院办公厅关于2026年部分节假日安排的
//!   通知 (2025-11-04), every holiday period and adjusted working day it lists.
//! - `china_2027.toml`: **provisional**. The 2027 notice was not yet published when
//!   it was written, so it holds only the statutory holiday days (全国年节及纪念日放假
//!   办法, 2024 revision) and no adjusted working days; [`WorkCalendar::covers`]
//!   reports 2027 as not covered. It must be replaced by the official notice once
//!   published; meanwhile a deployment can load the notice with
//!   [`WorkCalendar::from_path`] and [`WorkCalendar::merge`] it over the built-in data.
//!
//! Years without data fall back to weekends-only.
//!
//! ## File format (version 1)
//!
//! ```toml
//! format_version = 1
//! region = "CN"
//! year = 2026
//! provisional = false      # optional; true = not from an official notice
//! [[holidays]]
//! name = "春节"
//! from = 2026-02-15        # inclusive
//! to = 2026-02-23          # inclusive
//! [[working_days]]         # adjusted working days (调休), on a Saturday or Sunday
//! date = 2026-02-14
//! name = "春节调休"
//! ```
//!
//! One file describes one year's notice; its dates may spill into the adjacent years
//! (a notice can start the 元旦 break on 30 December).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use chrono::{Datelike, NaiveDate, Weekday};
use serde::Deserialize;
use toml::{Spanned, Value};

use crate::{Error, Result};

/// The calendar file format version this code reads.
const FORMAT_VERSION: i64 = 1;

const CHINA_2026: &str = include_str!("china_2026.toml");
const CHINA_2027: &str = include_str!("china_2027.toml");

/// What a calendar file says about one date.
#[derive(Clone, Debug, PartialEq, Eq)]
enum DayKind {
    /// A day off inside a named holiday period.
    Holiday(String),
    /// An adjusted working day (调休上班).
    Working(String),
}

/// The data of one year's notice.
#[derive(Clone, Debug)]
struct YearData {
    /// Not from an official notice; [`WorkCalendar::covers`] says no.
    provisional: bool,
    days: BTreeMap<NaiveDate, DayKind>,
}

/// A working-day calendar: weekends, public holidays and adjusted working days,
/// per year, loaded from calendar files.
#[derive(Clone, Debug, Default)]
pub struct WorkCalendar {
    years: BTreeMap<i32, YearData>,
}

impl WorkCalendar {
    /// The built-in mainland-China calendar: 2026 (official) and 2027 (provisional,
    /// statutory days only; see the module documentation).
    pub fn china_mainland() -> WorkCalendar {
        [CHINA_2026, CHINA_2027]
            .into_iter()
            .map(|text| WorkCalendar::from_toml(text).expect("built-in calendar files are valid"))
            .fold(WorkCalendar::default(), WorkCalendar::merge)
    }

    /// Parses one calendar file (format in the module documentation). Errors are
    /// [`Error::InvalidArgument`] naming the field and line, never a value.
    pub fn from_toml(text: &str) -> Result<WorkCalendar> {
        let (year, data) = parse_file(text).map_err(Error::InvalidArgument)?;
        Ok(WorkCalendar {
            years: BTreeMap::from([(year, data)]),
        })
    }

    /// Reads and parses one calendar file.
    pub fn from_path(path: &Path) -> Result<WorkCalendar> {
        let text = std::fs::read_to_string(path).map_err(Error::io("read calendar", path))?;
        WorkCalendar::from_toml(&text)
    }

    /// Combines two calendars. A year present in `other` replaces that year in
    /// `self` entirely, so an official notice supersedes provisional data.
    pub fn merge(mut self, other: WorkCalendar) -> WorkCalendar {
        self.years.extend(other.years);
        self
    }

    /// True on a weekday that is not a holiday, and on an adjusted working day
    /// (even a Saturday or Sunday).
    pub fn is_working_day(&self, d: NaiveDate) -> bool {
        match self.lookup(d) {
            Some(DayKind::Holiday(_)) => false,
            Some(DayKind::Working(_)) => true,
            None => !matches!(d.weekday(), Weekday::Sat | Weekday::Sun),
        }
    }

    /// True when the year of `d` has official holiday data; outside such years the
    /// calendar knows only weekends (or provisional statutory days).
    pub fn covers(&self, d: NaiveDate) -> bool {
        self.years.get(&d.year()).is_some_and(|y| !y.provisional)
    }

    /// The due date of something started on `start` with `n` working days: the
    /// `n`th working day after `start` (`start` itself never counts). `n = 0`
    /// returns `start`.
    ///
    /// # Panics
    /// If the due date lies beyond chrono's date range (hundreds of thousands of years).
    pub fn add_working_days(&self, start: NaiveDate, n: u32) -> NaiveDate {
        let mut day = start;
        let mut left = n;
        while left > 0 {
            day = day.succ_opt().expect("due date within chrono's date range");
            if self.is_working_day(day) {
                left -= 1;
            }
        }
        day
    }

    /// The number of working days in `(from, to]`; negative (the count in
    /// `(to, from]`) when `to` is before `from`.
    pub fn working_days_between(&self, from: NaiveDate, to: NaiveDate) -> i64 {
        if to < from {
            return -self.working_days_between(to, from);
        }
        from.iter_days()
            .skip(1)
            .take_while(|d| *d <= to)
            .filter(|d| self.is_working_day(*d))
            .count() as i64
    }

    /// The name of the holiday `d` falls in, if it is a holiday.
    pub fn holiday_name(&self, d: NaiveDate) -> Option<&str> {
        match self.lookup(d) {
            Some(DayKind::Holiday(name)) => Some(name),
            _ => None,
        }
    }

    /// What the notices say about `d`. The notice of `d`'s own year wins; the
    /// neighbouring years' notices are consulted for dates they spill into.
    fn lookup(&self, d: NaiveDate) -> Option<&DayKind> {
        [d.year(), d.year() + 1, d.year() - 1]
            .iter()
            .filter_map(|y| self.years.get(y))
            .find_map(|y| y.days.get(&d))
    }
}

// ---- parsing -------------------------------------------------------------------

/// The file as TOML, every value kept with its span so errors can name lines.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    format_version: Option<Spanned<Value>>,
    region: Option<Spanned<Value>>,
    year: Option<Spanned<Value>>,
    provisional: Option<Spanned<Value>>,
    #[serde(default)]
    holidays: Vec<Spanned<RawHoliday>>,
    #[serde(default)]
    working_days: Vec<Spanned<RawWorkingDay>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoliday {
    name: Option<Spanned<Value>>,
    from: Option<Spanned<Value>>,
    to: Option<Spanned<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkingDay {
    date: Option<Spanned<Value>>,
    name: Option<Spanned<Value>>,
}

/// Turns spans into 1-based line numbers for error messages.
struct Lines<'a>(&'a str);

impl Lines<'_> {
    fn at(&self, span: Range<usize>) -> usize {
        let end = span.start.min(self.0.len());
        self.0.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// "calendar file: `field` (line N): problem".
    fn err(&self, field: &str, span: Range<usize>, problem: &str) -> String {
        format!(
            "calendar file: `{field}` (line {}): {problem}",
            self.at(span)
        )
    }

    /// The value of a required field, or an error placed at its enclosing table.
    fn required<'v>(
        &self,
        value: &'v Option<Spanned<Value>>,
        field: &str,
        table: Range<usize>,
    ) -> std::result::Result<&'v Spanned<Value>, String> {
        value
            .as_ref()
            .ok_or_else(|| self.err(field, table, "missing"))
    }

    fn date(&self, value: &Spanned<Value>, field: &str) -> std::result::Result<NaiveDate, String> {
        let bad = || self.err(field, value.span(), "expected a date (YYYY-MM-DD, no time)");
        let Value::Datetime(dt) = value.get_ref() else {
            return Err(bad());
        };
        match (dt.date, dt.time, dt.offset) {
            (Some(d), None, None) => {
                NaiveDate::from_ymd_opt(d.year.into(), d.month.into(), d.day.into()).ok_or_else(bad)
            }
            _ => Err(bad()),
        }
    }

    fn name(&self, value: &Spanned<Value>, field: &str) -> std::result::Result<String, String> {
        match value.get_ref() {
            Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            _ => Err(self.err(field, value.span(), "expected a non-empty string")),
        }
    }
}

fn parse_file(text: &str) -> std::result::Result<(i32, YearData), String> {
    let lines = Lines(text);
    let raw: RawFile = toml::from_str(text).map_err(|e| match e.span() {
        Some(span) => {
            let line = lines.at(span);
            let message = e.message().trim();
            match field_on_line(text, line) {
                Some(field) => format!("calendar file: `{field}` (line {line}): {message}"),
                None => format!("calendar file line {line}: {message}"),
            }
        }
        None => format!("calendar file: {}", e.message().trim()),
    })?;
    let whole = 0..0;

    let version = lines.required(&raw.format_version, "format_version", whole.clone())?;
    if version.get_ref().as_integer() != Some(FORMAT_VERSION) {
        return Err(lines.err(
            "format_version",
            version.span(),
            &format!("unsupported version (this build reads {FORMAT_VERSION})"),
        ));
    }

    let region = lines.required(&raw.region, "region", whole.clone())?;
    // Informational (the notice's jurisdiction); required so files say what they are.
    lines.name(region, "region")?;

    let year_value = lines.required(&raw.year, "year", whole)?;
    let year = year_value
        .get_ref()
        .as_integer()
        .filter(|y| (1900..=9999).contains(y))
        .ok_or_else(|| {
            lines.err(
                "year",
                year_value.span(),
                "expected a year between 1900 and 9999",
            )
        })? as i32;
    let allowed = (year - 1)..=(year + 1);
    let in_range = |d: NaiveDate, field: &str, span: Range<usize>| {
        if allowed.contains(&d.year()) {
            Ok(d)
        } else {
            Err(lines.err(field, span, "date is more than one year away from `year`"))
        }
    };

    let provisional = match &raw.provisional {
        None => false,
        Some(v) => v
            .get_ref()
            .as_bool()
            .ok_or_else(|| lines.err("provisional", v.span(), "expected true or false"))?,
    };

    let mut days = BTreeMap::new();
    // The field path owning each date, for overlap errors.
    let mut owner: BTreeMap<NaiveDate, (String, usize)> = BTreeMap::new();

    for (i, h) in raw.holidays.iter().enumerate() {
        let table = h.span();
        let h = h.get_ref();
        let field = |f: &str| format!("holidays[{i}].{f}");
        let name = lines.name(
            lines.required(&h.name, &field("name"), table.clone())?,
            &field("name"),
        )?;
        let from_v = lines.required(&h.from, &field("from"), table.clone())?;
        let to_v = lines.required(&h.to, &field("to"), table.clone())?;
        let from = in_range(
            lines.date(from_v, &field("from"))?,
            &field("from"),
            from_v.span(),
        )?;
        let to = in_range(lines.date(to_v, &field("to"))?, &field("to"), to_v.span())?;
        if from > to {
            return Err(lines.err(&field("to"), to_v.span(), "is before `from`"));
        }
        for d in from.iter_days().take_while(|d| *d <= to) {
            if let Some((other, line)) = owner.get(&d) {
                return Err(lines.err(
                    &field("from"),
                    from_v.span(),
                    &format!("overlaps `{other}` (line {line})"),
                ));
            }
            owner.insert(d, (field("from"), lines.at(from_v.span())));
            days.insert(d, DayKind::Holiday(name.clone()));
        }
    }

    for (i, w) in raw.working_days.iter().enumerate() {
        let table = w.span();
        let w = w.get_ref();
        let field = |f: &str| format!("working_days[{i}].{f}");
        let date_v = lines.required(&w.date, &field("date"), table.clone())?;
        let date = in_range(
            lines.date(date_v, &field("date"))?,
            &field("date"),
            date_v.span(),
        )?;
        let name = lines.name(
            lines.required(&w.name, &field("name"), table)?,
            &field("name"),
        )?;
        if let Some((other, line)) = owner.get(&date) {
            return Err(lines.err(
                &field("date"),
                date_v.span(),
                &format!("overlaps `{other}` (line {line})"),
            ));
        }
        // Weekdays are working days already; listing one is a typo in the file.
        if !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
            return Err(lines.err(
                &field("date"),
                date_v.span(),
                "an adjusted working day must fall on a Saturday or Sunday",
            ));
        }
        owner.insert(date, (field("date"), lines.at(date_v.span())));
        days.insert(date, DayKind::Working(name));
    }

    Ok((year, YearData { provisional, days }))
}

/// The field path (`holidays[1].to`) of a `key = value` line, for TOML syntax
/// errors, which toml reports by position only.
fn field_on_line(text: &str, line: usize) -> Option<String> {
    let before = text.lines().take(line.saturating_sub(1));
    let key = text
        .lines()
        .nth(line.checked_sub(1)?)?
        .split_once('=')?
        .0
        .trim();
    let bare = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !bare(key) {
        return None;
    }
    // The last `[[array]]` header above the line, and how many of its kind precede it.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut table = None;
    for l in before {
        let header = l.trim().strip_prefix("[[").and_then(|l| l.split_once("]]"));
        if let Some((name, _)) = header {
            let name = name.trim();
            let count = seen.entry(name).or_default();
            table = Some((name, *count));
            *count += 1;
        }
    }
    Some(match table {
        Some((t, i)) => format!("{t}[{i}].{key}"),
        None => key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based() {
        let l = Lines("a\nb\nc");
        assert_eq!(l.at(0..1), 1);
        assert_eq!(l.at(2..3), 2);
        assert_eq!(l.at(4..5), 3);
    }

    #[test]
    fn syntax_errors_name_the_field() {
        let text = "year = 1\n[[holidays]]\na = 1\n[[working_days]]\nb = 2\n[[holidays]]\nto = x\n";
        assert_eq!(field_on_line(text, 1).as_deref(), Some("year"));
        assert_eq!(field_on_line(text, 3).as_deref(), Some("holidays[0].a"));
        assert_eq!(field_on_line(text, 5).as_deref(), Some("working_days[0].b"));
        assert_eq!(field_on_line(text, 7).as_deref(), Some("holidays[1].to"));
        assert_eq!(field_on_line(text, 2), None);
    }

    #[test]
    fn built_in_years_load() {
        let cal = WorkCalendar::china_mainland();
        assert_eq!(
            cal.years.keys().copied().collect::<Vec<_>>(),
            vec![2026, 2027]
        );
        assert!(cal.years[&2027].provisional);
    }
}
