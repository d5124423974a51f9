//! Byte sizes and rates as users write them (`1TB`, `500GiB`, `1.5TB`, `50Mbit/s for 30m`) and
//! as the dashboard and messages print them (`UNITS`: `si` or `iec`).
//!
//! Parsing is exact: the number is read as a decimal fraction and multiplied in integers, so
//! `1.5TB` is exactly 1 500 000 000 000 bytes and `0.5KiB` exactly 512. Knows nothing of the
//! configuration's sources, the store or HTTP.

use std::time::Duration;

/// A size, rate or duration that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{text:?} is not {expected}")]
pub struct UnitError {
    /// The rejected text.
    pub text: String,
    /// What was expected, with an example.
    pub expected: &'static str,
}

/// How byte counts are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Units {
    /// The seed's format (base 1024, `KB`/`MB` labels): the default, so existing `*_fmt`
    /// strings do not change.
    #[default]
    Seed,
    /// Base 1000: `kB`, `MB`, `GB`, `TB`, `PB`.
    Si,
    /// Base 1024: `KiB`, `MiB`, `GiB`, `TiB`, `PiB`.
    Iec,
}

impl Units {
    /// Reads `si`, `iec` or empty (the seed's format).
    pub fn parse(text: &str) -> Result<Units, UnitError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "seed" => Ok(Units::Seed),
            "si" => Ok(Units::Si),
            "iec" => Ok(Units::Iec),
            _ => Err(UnitError {
                text: text.to_owned(),
                expected: "`si` or `iec`",
            }),
        }
    }

    /// The name the dashboard gets (`seed`, `si`, `iec`).
    pub fn name(self) -> &'static str {
        match self {
            Units::Seed => "seed",
            Units::Si => "si",
            Units::Iec => "iec",
        }
    }

    /// `bytes` with two decimals in these units.
    pub fn format(self, bytes: u64) -> String {
        let (base, labels): (f64, [&str; 6]) = match self {
            Units::Seed => return crate::api::format::fmt_bytes(bytes),
            Units::Si => (1000.0, ["B", "kB", "MB", "GB", "TB", "PB"]),
            Units::Iec => (1024.0, ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]),
        };
        let mut value = bytes as f64;
        for label in &labels[..5] {
            if value < base {
                return format!("{value:.2} {label}");
            }
            value /= base;
        }
        format!("{value:.2} {}", labels[5])
    }
}

/// Splits `1.5TB` into the exact value `mantissa / 10^scale` and the unit text.
fn split_number(text: &str) -> Option<(u128, u32, &str)> {
    let t = text.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(end);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') || frac.len() > 12 {
        return None;
    }
    let mut mantissa: u128 = 0;
    for c in int.bytes().chain(frac.bytes()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(u128::from(c - b'0'))?;
    }
    Some((mantissa, frac.len() as u32, unit.trim()))
}

/// `mantissa / 10^scale * factor`, exact; `None` when it is not a whole number or too large.
fn scaled(mantissa: u128, scale: u32, factor: u128) -> Option<u64> {
    let product = mantissa.checked_mul(factor)?;
    let div = 10u128.checked_pow(scale)?;
    if product % div != 0 {
        return None;
    }
    u64::try_from(product / div).ok()
}

/// Multiplier of a byte unit (`B`, `KB`..`PB` decimal, `KiB`..`PiB` binary; case-insensitive).
fn byte_factor(unit: &str) -> Option<u128> {
    let u = unit.to_ascii_lowercase();
    let (prefix, binary) = match u.strip_suffix("ib") {
        Some(p) => (p, true),
        None => (u.strip_suffix('b').unwrap_or(&u), false),
    };
    let power = match prefix {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return None,
    };
    if binary && power == 0 {
        return None;
    }
    Some(if binary { 1024u128 } else { 1000u128 }.pow(power))
}

const SIZE_EXPECTED: &str = "a size such as 1TB, 500GiB, 1.5TB or 300000000 (bytes)";

/// Reads a byte size: a plain number is bytes; `KB`/`MB`/`GB`/`TB`/`PB` are powers of 1000,
/// `KiB`..`PiB` powers of 1024 (the unit may be lower case).
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let bad = || UnitError {
        text: text.to_owned(),
        expected: SIZE_EXPECTED,
    };
    let (mantissa, scale, unit) = split_number(text).ok_or_else(bad)?;
    let factor = byte_factor(unit).ok_or_else(bad)?;
    scaled(mantissa, scale, factor).ok_or_else(bad)
}

/// Reads a signed size (`QUOTA_ADJUST`: `-20GB` takes bytes off).
pub fn parse_signed_size(text: &str) -> Result<i64, UnitError> {
    let t = text.trim();
    let (negative, rest) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let bytes = i64::try_from(parse_size(rest)?).map_err(|_| UnitError {
        text: text.to_owned(),
        expected: SIZE_EXPECTED,
    })?;
    Ok(if negative { -bytes } else { bytes })
}

/// A sustained-rate rule: upload faster than `bytes_per_sec` for at least `duration`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateRule {
    /// Threshold in bytes per second (rates given in bits are divided by 8, rounding up).
    pub bytes_per_sec: u64,
    /// How long the rate must hold.
    pub duration: Duration,
}

const RATE_EXPECTED: &str = "a rate and a duration such as `50Mbit/s for 30m` (units bit/s, kbit/s, Mbit/s, Gbit/s, B/s, \
     KB/s, MB/s, GB/s; durations s, m, h)";

/// Reads `50Mbit/s for 30m`.
pub fn parse_rate_rule(text: &str) -> Result<RateRule, UnitError> {
    let bad = || UnitError {
        text: text.to_owned(),
        expected: RATE_EXPECTED,
    };
    let lower = text.trim().to_ascii_lowercase();
    let (rate, duration) = lower.split_once(" for ").ok_or_else(bad)?;
    let (mantissa, scale, unit) = split_number(rate).ok_or_else(bad)?;
    // `Mbps` is bits (the network convention); `MB/s` bytes, `Mbit/s` bits.
    let (bits, prefix) = if let Some(p) = unit.strip_suffix("bps") {
        (true, p)
    } else if let Some(p) = unit.strip_suffix("bit/s") {
        (true, p)
    } else if let Some(p) = unit.strip_suffix("b/s") {
        (false, p)
    } else {
        return Err(bad());
    };
    let power = match prefix {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        _ => return Err(bad()),
    };
    let per_sec = mantissa
        .checked_mul(1000u128.pow(power))
        .ok_or_else(bad)?
        .div_ceil(10u128.pow(scale));
    let bytes_per_sec = if bits { per_sec.div_ceil(8) } else { per_sec };
    let duration = parse_duration(duration.trim()).ok_or_else(bad)?;
    if bytes_per_sec == 0 || duration.is_zero() || duration > Duration::from_secs(86_400) {
        return Err(bad());
    }
    Ok(RateRule {
        bytes_per_sec: u64::try_from(bytes_per_sec).map_err(|_| bad())?,
        duration,
    })
}

/// `90s`, `30m`, `2h` (a whole number and one unit).
fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "s" | "sec" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(factor)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_exact_in_both_unit_families() {
        let table: &[(&str, u64)] = &[
            ("1TB", 1_000_000_000_000),
            ("1.5TB", 1_500_000_000_000),
            ("500GiB", 500 * (1 << 30)),
            ("0.5KiB", 512),
            ("300GB", 300_000_000_000),
            ("300 gb", 300_000_000_000),
            ("1PiB", 1 << 50),
            ("12345", 12345),
            ("7B", 7),
            ("1.000000000001TB", 1_000_000_000_001),
        ];
        for (text, want) in table {
            assert_eq!(parse_size(text), Ok(*want), "{text}");
        }
        for bad in [
            "",
            "TB",
            "1.5",
            "1.5B",
            "1..5GB",
            "-1GB",
            "1XB",
            "1iB",
            "0.1B",
            "99999999EB",
            "20000PB",
            "1 TB x",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_signed_size("-20GB"), Ok(-20_000_000_000));
        assert_eq!(parse_signed_size("+1KiB"), Ok(1024));
    }

    #[test]
    fn rate_rules_read_bits_and_bytes() {
        assert_eq!(
            parse_rate_rule("50Mbit/s for 30m"),
            Ok(RateRule {
                bytes_per_sec: 6_250_000,
                duration: Duration::from_secs(1800)
            })
        );
        assert_eq!(
            parse_rate_rule("2MB/s for 1h").map(|r| r.bytes_per_sec),
            Ok(2_000_000)
        );
        assert_eq!(
            parse_rate_rule("1.5 Gbps for 90s").map(|r| (r.bytes_per_sec, r.duration)),
            Ok((187_500_000, Duration::from_secs(90)))
        );
        for bad in [
            "50Mbit/s",
            "50 for 30m",
            "0Mbit/s for 30m",
            "5Mbit/s for 0m",
            "5Xbit/s for 1m",
            "5Mbit/s for 2d",
        ] {
            assert!(parse_rate_rule(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn formats_follow_the_unit_family() {
        assert_eq!(Units::Si.format(1_500_000_000_000), "1.50 TB");
        assert_eq!(Units::Iec.format(1 << 30), "1.00 GiB");
        assert_eq!(Units::Iec.format(1023), "1023.00 B");
        assert_eq!(Units::Si.format(999), "999.00 B");
        assert_eq!(Units::Seed.format(1 << 30), "1.00 GB");
        assert_eq!(Units::parse("IEC"), Ok(Units::Iec));
        assert!(Units::parse("metric").is_err());
    }
}
