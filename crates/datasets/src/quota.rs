//! Quota arithmetic: UTC days and their resets.

use time::{Date, OffsetDateTime, Time};

/// The UTC day `now` falls in.
pub fn utc_day(now: OffsetDateTime) -> Date {
    now.to_offset(time::UtcOffset::UTC).date()
}

/// The next UTC midnight after `now`: when the day's quota resets.
pub fn resets_at(now: OffsetDateTime) -> OffsetDateTime {
    let day = utc_day(now);
    let next = day.next_day().unwrap_or(day);
    next.with_time(Time::MIDNIGHT).assume_utc()
}

/// Whole seconds until the reset, at least 1 (for `Retry-After`).
pub fn retry_after(now: OffsetDateTime) -> u64 {
    let secs = (resets_at(now) - now).whole_seconds();
    secs.max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn days_reset_at_utc_midnight() {
        let cases = [
            (
                datetime!(2026-11-29 10:00 UTC),
                datetime!(2026-11-30 00:00 UTC),
                50_400,
            ),
            (
                datetime!(2026-11-29 23:59:59.5 UTC),
                datetime!(2026-11-30 00:00 UTC),
                1,
            ),
            (
                datetime!(2026-11-29 23:30 -02:00),
                datetime!(2026-12-01 00:00 UTC),
                81_000,
            ),
            (
                datetime!(2026-12-31 12:00 UTC),
                datetime!(2027-01-01 00:00 UTC),
                43_200,
            ),
        ];
        for (now, reset, retry) in cases {
            assert_eq!(resets_at(now), reset, "{now}");
            assert_eq!(retry_after(now), retry, "{now}");
        }
    }
}
