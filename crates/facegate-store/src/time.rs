//! UTC timestamps with millisecond precision, and an injectable clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcMillis(pub i64);

impl UtcMillis {
    /// `YYYY-MM-DDTHH:MM:SS` (UTC, seconds truncated), the wire form of a
    /// group's createTime.
    pub fn to_wire_seconds(self) -> String {
        let (date, secs_of_day) = self.split();
        format!(
            "{date}T{:02}:{:02}:{:02}",
            secs_of_day / 3600,
            secs_of_day / 60 % 60,
            secs_of_day % 60
        )
    }

    /// RFC 3339 with milliseconds and `Z`, e.g. `2020-11-04T12:36:24.123Z`.
    pub fn to_rfc3339_millis(self) -> String {
        format!("{}.{:03}Z", self.to_wire_seconds(), self.0.rem_euclid(1000))
    }

    fn split(self) -> (String, i64) {
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        (format!("{y:04}-{m:02}-{d:02}"), secs.rem_euclid(86_400))
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (H. Hinnant's algorithm; avoids a date crate for one function).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Source of the current time; injectable so tests can expire tokens.
pub trait Clock: Send + Sync {
    /// Now, in milliseconds since the Unix epoch (UTC).
    fn now(&self) -> UtcMillis;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UtcMillis {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            // A clock before 1970 is a broken host; 0 keeps ordering sane.
            .unwrap_or(0);
        UtcMillis(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(UtcMillis(0).to_wire_seconds(), "1970-01-01T00:00:00");
        // 2020-11-04T12:36:24.123Z
        assert_eq!(
            UtcMillis(1_604_493_384_123).to_rfc3339_millis(),
            "2020-11-04T12:36:24.123Z"
        );
        // Leap day.
        assert_eq!(
            UtcMillis(951_782_400_000).to_wire_seconds(),
            "2000-02-29T00:00:00"
        );
        assert_eq!(
            UtcMillis(-1).to_rfc3339_millis(),
            "1969-12-31T23:59:59.999Z"
        );
    }
}
