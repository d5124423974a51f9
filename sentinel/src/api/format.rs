//! The seed's byte formatter (`fmt_bytes`, docs/compatibility.md "The byte formatter"), kept to the letter so
//! the `*_fmt` strings of existing scripts and Grafana panels do not change.

/// Base 1024, decimal-style labels, two decimals with ties to even, the unit chosen before
/// rounding (`1048575` is `"1024.00 KB"`), `PB` from 1024^5 up however large.
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    for unit in UNITS {
        if value < 1024.0 {
            return format!("{value:.2} {unit}");
        }
        value /= 1024.0;
    }
    format!("{value:.2} PB")
}

#[cfg(test)]
mod tests {
    use super::fmt_bytes;

    #[test]
    fn matches_the_seed_table() {
        // docs/compatibility.md "The byte formatter": the original's verified examples.
        let table: &[(u64, &str)] = &[
            (0, "0.00 B"),
            (1, "1.00 B"),
            (1023, "1023.00 B"),
            (1024, "1.00 KB"),
            (1152, "1.12 KB"),
            (1536, "1.50 KB"),
            (1_048_575, "1024.00 KB"),
            (1_048_576, "1.00 MB"),
            (1_073_741_823, "1024.00 MB"),
            (1_073_741_824, "1.00 GB"),
            (1 << 40, "1.00 TB"),
            (1 << 50, "1.00 PB"),
            (1 << 60, "1024.00 PB"),
            (u64::MAX, "16384.00 PB"),
        ];
        for (input, want) in table {
            assert_eq!(fmt_bytes(*input), *want, "{input}");
        }
    }
}
