//! EventBridge schedule expressions: `rate(n unit)` and six-field `cron(...)` in UTC, with
//! the full syntax (`, - * ? /`, `L`, `W`, `#`), and when each next fires.
//!
//! Hand-written rather than `croner` (4.0, checked): croner has no `L-n`, accepts `L` alone in
//! day-of-week (Saturday) but never fires it, reads `MON` in the month field as February, has
//! neither AWS's `?` rule nor its 1970-2199 years, and needs chrono or jiff where Gust uses `time`.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

const YEAR_MIN: i32 = 1970;
const YEAR_MAX: i32 = 2199;

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Every `seconds`, counted from the rule's anchor.
    Rate {
        seconds: i64,
    },
    Cron(Box<Cron>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    day_of_month: DayOfMonth,
    months: u16,
    day_of_week: DayOfWeek,
    years: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq)]
enum DayOfMonth {
    /// `?` or `*`: the day-of-week field decides.
    Any,
    Days(u32),
    /// `L` or `L-n`: the last day, or n days before it.
    Last(u32),
    /// `nW`: the weekday nearest to day n, within the month.
    NearestWeekday(u32),
    /// `LW`: the month's last weekday.
    LastWeekday,
}

#[derive(Debug, Clone, PartialEq)]
enum DayOfWeek {
    Any,
    /// Bit n set for weekday n (1 = Sunday).
    Days(u8),
    /// `nL`: the last such weekday of the month.
    Last(u8),
    /// `n#k`: the k-th such weekday of the month.
    Nth(u8, u8),
}

impl Schedule {
    pub fn parse(expression: &str) -> Result<Self, String> {
        let expression = expression.trim();
        if let Some(inner) = expression
            .strip_prefix("rate(")
            .and_then(|s| s.strip_suffix(')'))
        {
            return parse_rate(inner);
        }
        if let Some(inner) = expression
            .strip_prefix("cron(")
            .and_then(|s| s.strip_suffix(')'))
        {
            return Ok(Self::Cron(Box::new(Cron::parse(inner)?)));
        }
        Err("a schedule expression is rate(...) or cron(...)".into())
    }

    /// The first firing strictly after `after` (Unix seconds). Rates count from `anchor`;
    /// `None` when the schedule never fires again.
    pub fn next_after(&self, after: i64, anchor: i64) -> Option<i64> {
        match self {
            Self::Rate { seconds } => {
                if after < anchor {
                    return anchor.checked_add(*seconds);
                }
                let periods = after.checked_sub(anchor)? / seconds + 1;
                anchor.checked_add(periods.checked_mul(*seconds)?)
            }
            Self::Cron(cron) => cron.next_after(after),
        }
    }

    /// The last firing at or before `now` and strictly after `after`, if any: several missed
    /// firings collapse into one.
    pub fn latest_due(&self, after: i64, now: i64, anchor: i64) -> Option<i64> {
        match self {
            Self::Rate { seconds } => {
                let first = self.next_after(after, anchor)?;
                (first <= now).then(|| first + (now - first) / seconds * seconds)
            }
            Self::Cron(cron) => {
                // Look back over a growing window, so that a long gap costs a few steps.
                let mut window: i64 = 60;
                loop {
                    let from = after.max(now.saturating_sub(window));
                    let mut cursor = from;
                    let mut due = None;
                    while let Some(t) = cron.next_after(cursor).filter(|t| *t <= now) {
                        due = Some(t);
                        cursor = t;
                    }
                    if due.is_some() || from == after {
                        return due;
                    }
                    window = window.saturating_mul(8);
                }
            }
        }
    }
}

fn parse_rate(inner: &str) -> Result<Schedule, String> {
    let mut parts = inner.split_whitespace();
    let (Some(value), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err("rate(...) takes a value and a unit".into());
    };
    let value: i64 = value
        .parse()
        .ok()
        .filter(|v| *v > 0 && value.bytes().all(|b| b.is_ascii_digit()))
        .ok_or("the rate value must be a positive whole number")?;
    let (singular, plural, seconds) = match unit {
        "minute" | "minutes" => ("minute", "minutes", 60),
        "hour" | "hours" => ("hour", "hours", 3600),
        "day" | "days" => ("day", "days", 86_400),
        _ => {
            return Err(format!(
                "'{unit}' is not a rate unit (minutes, hours, days)"
            ));
        }
    };
    let expected = if value == 1 { singular } else { plural };
    if unit != expected {
        return Err(format!("rate({value} ...) takes the unit '{expected}'"));
    }
    value
        .checked_mul(seconds)
        .filter(|s| *s <= 100 * 365 * 86_400)
        .map(|seconds| Schedule::Rate { seconds })
        .ok_or_else(|| "the rate is too long".into())
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One number of a field, or a name (`JAN`, `MON`) where the field has names.
fn value(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u32, String> {
    let upper = text.to_ascii_uppercase();
    if let Some(i) = names.iter().position(|n| *n == upper) {
        return Ok(i as u32 + min);
    }
    let n: u32 = text
        .parse()
        .ok()
        .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("'{text}' is not a value"))?;
    if n < min || n > max {
        return Err(format!("{n} is outside {min}-{max}"));
    }
    Ok(n)
}

/// A list of values, ranges and steps (`1,5-9,*/15,10-40/5`) as the values it selects.
fn values(field: &str, min: u32, max: u32, names: &[&str]) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("'{step}' is not a step"))?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (start, end) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a, min, max, names)?, value(b, min, max, names)?);
            if a > b {
                return Err(format!("the range {range} runs backwards"));
            }
            (a, b)
        } else {
            let a = value(range, min, max, names)?;
            // `5/15` means from 5 to the end, every 15.
            (a, if step.is_some() { max } else { a })
        };
        out.extend((start..=end).step_by(step.unwrap_or(1) as usize));
    }
    Ok(out)
}

/// Prefixes a field's parse error with the field's name.
fn field<T>(name: &str, r: Result<T, String>) -> Result<T, String> {
    r.map_err(|e| format!("{name}: {e}"))
}

fn mask(values: &[u32]) -> u64 {
    values.iter().fold(0, |m, v| m | 1 << v)
}

fn parse_day_of_month(field: &str) -> Result<DayOfMonth, String> {
    match field {
        "?" | "*" => return Ok(DayOfMonth::Any),
        "L" => return Ok(DayOfMonth::Last(0)),
        "LW" => return Ok(DayOfMonth::LastWeekday),
        _ => {}
    }
    if let Some(offset) = field.strip_prefix("L-") {
        return Ok(DayOfMonth::Last(value(offset, 1, 30, &[])?));
    }
    if let Some(day) = field.strip_suffix('W') {
        return Ok(DayOfMonth::NearestWeekday(value(day, 1, 31, &[])?));
    }
    Ok(DayOfMonth::Days(mask(&values(field, 1, 31, &[])?) as u32))
}

fn parse_day_of_week(field: &str) -> Result<DayOfWeek, String> {
    match field {
        "?" | "*" => return Ok(DayOfWeek::Any),
        "L" => return Ok(DayOfWeek::Days(1 << 7)),
        _ => {}
    }
    if let Some((day, nth)) = field.split_once('#') {
        let day = value(day, 1, 7, &WEEKDAYS)? as u8;
        let nth = value(nth, 1, 5, &[])? as u8;
        return Ok(DayOfWeek::Nth(day, nth));
    }
    if let Some(day) = field.strip_suffix('L') {
        return Ok(DayOfWeek::Last(value(day, 1, 7, &WEEKDAYS)? as u8));
    }
    Ok(DayOfWeek::Days(mask(&values(field, 1, 7, &WEEKDAYS)?) as u8))
}

impl Cron {
    pub fn parse(inner: &str) -> Result<Self, String> {
        let fields: Vec<&str> = inner.split_whitespace().collect();
        let [minutes, hours, dom, month, dow, year] = fields[..] else {
            return Err(format!(
                "cron(...) takes 6 fields (minutes hours day-of-month month day-of-week year), got {}",
                fields.len()
            ));
        };
        if (dom == "?") == (dow == "?") {
            return Err("exactly one of day-of-month and day-of-week must be '?'".into());
        }
        let mut years = vec![false; (YEAR_MAX - YEAR_MIN + 1) as usize];
        for y in field("year", values(year, YEAR_MIN as u32, YEAR_MAX as u32, &[]))? {
            years[(y as i32 - YEAR_MIN) as usize] = true;
        }
        Ok(Self {
            minutes: mask(&field("minutes", values(minutes, 0, 59, &[]))?),
            hours: mask(&field("hours", values(hours, 0, 23, &[]))?) as u32,
            day_of_month: field("day-of-month", parse_day_of_month(dom))?,
            months: mask(&field("month", values(month, 1, 12, &MONTHS))?) as u16,
            day_of_week: field("day-of-week", parse_day_of_week(dow))?,
            years,
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        let day = date.day() as u32;
        let last = time::util::days_in_month(date.month(), date.year()) as u32;
        let weekday = date.weekday().number_from_sunday();
        let dom = match &self.day_of_month {
            DayOfMonth::Any => true,
            DayOfMonth::Days(mask) => mask & (1 << day) != 0,
            DayOfMonth::Last(offset) => last.checked_sub(*offset) == Some(day),
            DayOfMonth::NearestWeekday(target) => {
                *target <= last && nearest_weekday(date, *target, last) == day
            }
            DayOfMonth::LastWeekday => nearest_weekday(date, last, last) == day,
        };
        let dow = match &self.day_of_week {
            DayOfWeek::Any => true,
            // `L` alone in the weekday field is Saturday (bit 7).
            DayOfWeek::Days(mask) => mask & (1 << weekday) != 0,
            DayOfWeek::Last(d) => *d == weekday && day + 7 > last,
            DayOfWeek::Nth(d, n) => *d == weekday && (day - 1) / 7 + 1 == *n as u32,
        };
        dom && dow
    }

    /// The first minute strictly after `after` (Unix seconds) that the expression selects.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let start = (after.div_euclid(60) + 1) * 60;
        let start = OffsetDateTime::from_unix_timestamp(start).ok()?;
        let mut date = start.date();
        let mut first_day = true;
        while date.year() <= YEAR_MAX {
            if date.year() < YEAR_MIN || !self.years[(date.year() - YEAR_MIN) as usize] {
                date = Date::from_calendar_date(date.year() + 1, Month::January, 1).ok()?;
                first_day = false;
                continue;
            }
            if self.months & (1 << date.month() as u8) == 0 {
                date = first_of_next_month(date)?;
                first_day = false;
                continue;
            }
            if self.day_matches(date) {
                let (from_hour, from_minute) = if first_day {
                    (start.hour() as u32, start.minute() as u32)
                } else {
                    (0, 0)
                };
                if let Some((h, m)) = self.first_time(from_hour, from_minute) {
                    let t = PrimitiveDateTime::new(date, Time::from_hms(h as u8, m as u8, 0).ok()?);
                    return Some(t.assume_utc().unix_timestamp());
                }
            }
            date = date.next_day()?;
            first_day = false;
        }
        None
    }

    fn first_time(&self, from_hour: u32, from_minute: u32) -> Option<(u32, u32)> {
        for h in from_hour..24 {
            if self.hours & (1 << h) == 0 {
                continue;
            }
            let from = if h == from_hour { from_minute } else { 0 };
            if let Some(m) = (from..60).find(|m| self.minutes & (1 << m) != 0) {
                return Some((h, m));
            }
        }
        None
    }
}

fn first_of_next_month(date: Date) -> Option<Date> {
    let (year, month) = match date.month() {
        Month::December => (date.year() + 1, Month::January),
        m => (date.year(), m.next()),
    };
    Date::from_calendar_date(year, month, 1).ok()
}

/// The weekday nearest to day `target` of `date`'s month, never leaving the month.
fn nearest_weekday(date: Date, target: u32, last: u32) -> u32 {
    let Ok(day) = date.replace_day(target as u8) else {
        return 0;
    };
    match day.weekday().number_from_sunday() {
        7 if target == 1 => 3,
        7 => target - 1,
        1 if target == last => target - 2,
        1 => target + 1,
        _ => target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn at(t: OffsetDateTime) -> i64 {
        t.unix_timestamp()
    }

    fn next(expr: &str, after: OffsetDateTime) -> OffsetDateTime {
        let s = Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        OffsetDateTime::from_unix_timestamp(s.next_after(at(after), 0).expect("fires")).unwrap()
    }

    #[test]
    fn rates() {
        assert_eq!(
            Schedule::parse("rate(1 minute)"),
            Ok(Schedule::Rate { seconds: 60 })
        );
        assert_eq!(
            Schedule::parse("rate(5 minutes)"),
            Ok(Schedule::Rate { seconds: 300 })
        );
        assert_eq!(
            Schedule::parse("rate(2 hours)"),
            Ok(Schedule::Rate { seconds: 7200 })
        );
        assert_eq!(
            Schedule::parse("rate(1 day)"),
            Ok(Schedule::Rate { seconds: 86_400 })
        );
        for bad in [
            "rate(1 minutes)",
            "rate(5 minute)",
            "rate(0 minutes)",
            "rate(-1 minutes)",
            "rate(1.5 hours)",
            "rate(30 seconds)",
            "rate(5)",
            "every 5 minutes",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad} accepted");
        }
        let s = Schedule::Rate { seconds: 60 };
        assert_eq!(s.next_after(1000, 1000), Some(1060));
        assert_eq!(s.next_after(1059, 1000), Some(1060));
        assert_eq!(s.next_after(1060, 1000), Some(1120));
        assert_eq!(s.next_after(10, 1000), Some(1060));
        assert_eq!(s.latest_due(1000, 1250, 1000), Some(1240));
        assert_eq!(s.latest_due(1000, 1059, 1000), None);
    }

    /// Each syntax feature against the next fire times it must produce.
    #[test]
    fn cron_next_fire_times() {
        let table: &[(&str, OffsetDateTime, OffsetDateTime)] = &[
            // Plain values.
            (
                "cron(15 10 * * ? *)",
                datetime!(2026-11-26 10:15 UTC),
                datetime!(2026-11-27 10:15 UTC),
            ),
            (
                "cron(15 10 * * ? *)",
                datetime!(2026-11-26 10:14:59 UTC),
                datetime!(2026-11-26 10:15 UTC),
            ),
            // Ranges and names in day-of-week.
            (
                "cron(0 18 ? * MON-FRI *)",
                datetime!(2026-11-27 18:00 UTC),
                datetime!(2026-11-30 18:00 UTC),
            ),
            // Steps.
            (
                "cron(0/10 * ? * MON-FRI *)",
                datetime!(2026-11-26 10:01 UTC),
                datetime!(2026-11-26 10:10 UTC),
            ),
            (
                "cron(*/15 * * * ? *)",
                datetime!(2026-11-26 10:46 UTC),
                datetime!(2026-11-26 11:00 UTC),
            ),
            (
                "cron(5-20/5 * * * ? *)",
                datetime!(2026-11-26 10:20 UTC),
                datetime!(2026-11-26 11:05 UTC),
            ),
            // Lists.
            (
                "cron(0 8,12,17 * * ? *)",
                datetime!(2026-11-26 12:00 UTC),
                datetime!(2026-11-26 17:00 UTC),
            ),
            // `#`: the first Monday of the month.
            (
                "cron(0 9 ? * 2#1 *)",
                datetime!(2026-11-26 00:00 UTC),
                datetime!(2026-12-07 09:00 UTC),
            ),
            (
                "cron(0 9 ? * MON#1 *)",
                datetime!(2026-12-07 09:00 UTC),
                datetime!(2027-01-04 09:00 UTC),
            ),
            // `L` in day-of-month: the last day, February of a leap year.
            (
                "cron(0 0 L * ? *)",
                datetime!(2028-02-01 00:00 UTC),
                datetime!(2028-02-29 00:00 UTC),
            ),
            (
                "cron(0 0 L-2 * ? *)",
                datetime!(2026-11-01 00:00 UTC),
                datetime!(2026-11-28 00:00 UTC),
            ),
            // `nL` in day-of-week: the last Friday.
            (
                "cron(0 12 ? * 6L *)",
                datetime!(2026-11-01 00:00 UTC),
                datetime!(2026-11-27 12:00 UTC),
            ),
            // `L` alone in day-of-week: Saturday.
            (
                "cron(0 12 ? * L *)",
                datetime!(2026-11-26 00:00 UTC),
                datetime!(2026-11-28 12:00 UTC),
            ),
            // `W`: the 1st of Nov 2026 is a Sunday, so the nearest weekday is Monday the 2nd.
            (
                "cron(0 6 1W * ? *)",
                datetime!(2026-10-31 00:00 UTC),
                datetime!(2026-11-02 06:00 UTC),
            ),
            // 14 Nov 2026 is a Saturday: Friday the 13th.
            (
                "cron(0 6 14W * ? *)",
                datetime!(2026-11-01 00:00 UTC),
                datetime!(2026-11-13 06:00 UTC),
            ),
            // `LW`: the last weekday of January 2027 (the 31st is a Sunday) is Friday the 29th.
            (
                "cron(0 6 LW * ? *)",
                datetime!(2027-01-01 00:00 UTC),
                datetime!(2027-01-29 06:00 UTC),
            ),
            // Months by name, and the year field.
            (
                "cron(0 0 1 JAN,JUL ? 2027-2030)",
                datetime!(2026-11-26 00:00 UTC),
                datetime!(2027-01-01 00:00 UTC),
            ),
            (
                "cron(0 0 29 2 ? *)",
                datetime!(2026-03-01 00:00 UTC),
                datetime!(2028-02-29 00:00 UTC),
            ),
            (
                "cron(30 23 31 12 ? 2199)",
                datetime!(2026-01-01 00:00 UTC),
                datetime!(2199-12-31 23:30 UTC),
            ),
        ];
        for (expr, after, expected) in table {
            assert_eq!(next(expr, *after), *expected, "{expr} after {after}");
        }
        let past = Schedule::parse("cron(0 0 1 1 ? 2020)").unwrap();
        assert_eq!(past.next_after(at(datetime!(2026-01-01 0:00 UTC)), 0), None);
    }

    #[test]
    fn cron_rejects_bad_expressions() {
        for bad in [
            "cron(0 0 * * * *)",
            "cron(0 0 ? * ? *)",
            "cron(0 0 * *)",
            "cron(60 0 * * ? *)",
            "cron(0 24 * * ? *)",
            "cron(0 0 32 * ? *)",
            "cron(0 0 ? 13 * *)",
            "cron(0 0 ? * 8 *)",
            "cron(0 0 ? * 2#6 *)",
            "cron(0 0 * * ? 1969)",
            "cron(0 0 * FOO ? *)",
            "cron(10-5 0 * * ? *)",
            "cron(0/0 0 * * ? *)",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad} accepted");
        }
    }

    /// What a Unix-cron library (croner) gets wrong for AWS: these must keep their AWS meaning.
    #[test]
    fn cron_keeps_aws_semantics() {
        for bad in [
            "cron(0 0 1 MON ? *)",
            "cron(0 0 * * ? 2200)",
            "cron(0 0 ? * +MON *)",
            "cron(0 0 ? * 5#L *)",
            "cron(0 0 ? * MON-FRI#2 *)",
            "cron(0 0 ? * 2#1,3#2 *)",
            "cron(0 0 ? * 0 *)",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad} accepted");
        }
        // `L-n` in February of a leap year, and `L` alone in day-of-week (Saturday).
        assert_eq!(
            next("cron(0 0 L-1 * ? *)", datetime!(2028-02-01 00:00 UTC)),
            datetime!(2028-02-28 00:00 UTC)
        );
        assert_eq!(
            next("cron(0 0 ? * L 2027)", datetime!(2026-12-30 00:00 UTC)),
            datetime!(2027-01-02 00:00 UTC)
        );
    }

    #[test]
    fn missed_firings_collapse() {
        let s = Schedule::parse("cron(* * * * ? *)").unwrap();
        let t0 = at(datetime!(2026-11-26 10:00 UTC));
        assert_eq!(s.latest_due(t0, t0 + 3600 + 30, 0), Some(t0 + 3600));
        assert_eq!(s.latest_due(t0, t0 + 59, 0), None);
        let daily = Schedule::parse("cron(0 10 * * ? *)").unwrap();
        let t1 = at(datetime!(2026-11-21 09:00 UTC));
        assert_eq!(
            daily.latest_due(t1, at(datetime!(2026-11-25 11:00 UTC)), 0),
            Some(at(datetime!(2026-11-25 10:00 UTC)))
        );
    }
}
