//! Time as the store keeps it: UTC milliseconds since the Unix epoch. One
//! integer type on both databases keeps the SQL portable and the TTx
//! arithmetic exact.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// UTC milliseconds since the Unix epoch.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub i64);

impl Millis {
    pub fn from_datetime(dt: DateTime<Utc>) -> Millis {
        Millis(dt.timestamp_millis())
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-23T06:40:00.123Z`.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Parses RFC 3339; Go's zero time (`0001-01-01T00:00:00Z`, which
    /// Alertmanager sends as `endsAt` of a firing alert) and anything before
    /// 1970 count as "not set".
    pub fn parse_rfc3339(s: &str) -> Result<Option<Millis>, chrono::ParseError> {
        let dt = DateTime::parse_from_rfc3339(s)?;
        let ms = dt.timestamp_millis();
        Ok(if ms <= 0 { None } else { Some(Millis(ms)) })
    }
}

/// The source of "now". Injected so that tests and the pure core never read
/// the wall clock themselves.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        Millis(Utc::now().timestamp_millis())
    }
}
