//! Sizes written as Prometheus writes `body_size_limit`.

use serde_saphyr::Spanned;

use super::Collector;

/// Reads a size: a whole number of bytes, or one with a unit `B`, `KB`, `MB`, `GB`
/// (powers of 1024, as in Prometheus) or `KiB`, `MiB`, `GiB`.
pub fn parse(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KB" | "KiB" => 10,
        "MB" | "MiB" => 20,
        "GB" | "GiB" => 30,
        _ => {
            return Err(format!(
                "invalid size {text:?}: a whole number with B, KB, MB or GB (like 10MB)"
            ));
        }
    };
    n.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("invalid size {text:?}: a whole number with B, KB, MB or GB"))
}

/// The size written in `value`, if any; a malformed one is a problem at its position.
pub fn at(value: Option<&Spanned<String>>, c: &mut Collector) -> Option<usize> {
    let v = value?;
    parse(&v.value).map_err(|e| c.at(v.referenced, e)).ok()
}
