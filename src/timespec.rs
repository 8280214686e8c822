//! IDs and times as people type them (the CLI, the HTTP API's `from`/`to`): shared by the
//! fronts and the CLI, so neither imports the other.

/// Unix ms now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `ms-seq` (both parts required, so a bare number is never mistaken for an ID).
pub fn parse_id(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A time: `@UNIX_MS`, `-30s` / `-10m` / `-2h` / `-1d` (ago), or UTC
/// `YYYY-MM-DDTHH:MM[:SS][Z]` / `YYYY-MM-DD`. Unix ms.
pub fn parse_time(s: &str, now_ms: u64) -> Option<u64> {
    if let Some(ms) = s.strip_prefix('@') {
        return ms.parse().ok();
    }
    if let Some(ago) = s.strip_prefix('-') {
        let (n, unit) = ago.split_at(ago.len().checked_sub(1)?);
        let n: u64 = n.parse().ok()?;
        let ms = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        return Some(now_ms.saturating_sub(n.checked_mul(ms)?));
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, clock) = s.split_once('T').unwrap_or((s, "00:00:00"));
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    if d.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return None;
    }
    let mut c = clock.split(':').map(|x| x.parse::<i64>().ok());
    let h = c.next()??;
    let mi = c.next()??;
    let sec = c.next().unwrap_or(Some(0))?;
    if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..61).contains(&sec) {
        return None;
    }
    let secs = days_from_civil(y, mo, da) * 86_400 + h * 3_600 + mi * 60 + sec;
    u64::try_from(secs).ok().map(|s| s * 1_000)
}

/// A duration: `500ms`, `30s`, `10m`, `2h`, `1d`, or a bare number of ms. In ms.
pub fn parse_duration(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let ms = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250"), Some(250));
        assert_eq!(parse_duration("250ms"), Some(250));
        assert_eq!(parse_duration("30s"), Some(30_000));
        assert_eq!(parse_duration("10m"), Some(600_000));
        assert_eq!(parse_duration("2h"), Some(7_200_000));
        assert_eq!(parse_duration("1d"), Some(86_400_000));
        assert_eq!(parse_duration("1w"), None);
        assert_eq!(parse_duration("-5s"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn times_and_ids() {
        assert_eq!(parse_id("5-1"), Some((5, 1)));
        assert_eq!(parse_id("5"), None);
        assert_eq!(parse_time("@1234", 0), Some(1234));
        assert_eq!(parse_time("-2m", 1_000_000), Some(880_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z", 0), Some(1_000));
        assert_eq!(
            parse_time("2026-11-25T09:00:00Z", 0),
            Some(1_795_597_200_000)
        );
        assert_eq!(parse_time("2026-11-25", 0), Some(1_795_564_800_000));
        assert_eq!(parse_time("2026-13-25", 0), None);
        assert_eq!(parse_time("x", 0), None);
    }
}
