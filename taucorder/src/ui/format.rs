//! How figures read on screen: short peer ids, durations, sizes, clock times, sparklines.

use libp2p::PeerId;

/// The tail of a peer id: enough to tell nodes apart, short enough for a column.
pub fn short_peer(peer: &PeerId) -> String {
    short_id(&peer.to_string())
}

/// The last 10 characters of an id, after an ellipsis.
pub fn short_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 12 {
        id.to_string()
    } else {
        format!("…{}", chars[chars.len() - 10..].iter().collect::<String>())
    }
}

/// `45s`, `3m12s`, `2h05m`, `3d04h`.
pub fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3_600..86_400 => format!("{}h{:02}m", secs / 3_600, secs % 3_600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3_600),
    }
}

/// Milliseconds as `12.3 ms` or `1.20 s`.
pub fn millis(micros: u64) -> String {
    if micros < 1_000_000 {
        format!("{:.1} ms", micros as f64 / 1_000.0)
    } else {
        format!("{:.2} s", micros as f64 / 1_000_000.0)
    }
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A part of a whole as a percentage, `-` when the whole is unknown.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 { "-".into() } else { format!("{:.0}%", part as f64 * 100.0 / whole as f64) }
}

/// The UTC time of day of a Unix time in milliseconds, `HH:MM:SS`.
pub fn clock(unix_ms: u64) -> String {
    let secs = unix_ms / 1_000 % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3_600, secs % 3_600 / 60, secs % 60)
}

/// The last `width` values as a one-line sparkline scaled to `max`.
pub fn sparkline(values: &[f64], width: usize, max: f64) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let start = values.len().saturating_sub(width);
    values[start..]
        .iter()
        .map(|v| {
            let level = if max > 0.0 { (v / max * 7.0).round().clamp(0.0, 7.0) } else { 0.0 };
            BARS[level as usize]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(192), "3m12s");
        assert_eq!(duration(7_500), "2h05m");
        assert_eq!(duration(3 * 86_400 + 4 * 3_600), "3d04h");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(millis(1_234), "1.2 ms");
        assert_eq!(millis(1_200_000), "1.20 s");
        assert_eq!(percent(1, 4), "25%");
        assert_eq!(percent(1, 0), "-");
        assert_eq!(clock(1_700_000_000_000), "22:13:20");
        assert_eq!(sparkline(&[0.0, 50.0, 100.0], 2, 100.0), "▅█");
        assert_eq!(short_id("bafkreiabcdefghijklmnop"), "…ghijklmnop");
        assert_eq!(short_id("short"), "short");
    }
}
