//! Range-checked numbers from command-line flags: durations in seconds and rates in
//! requests per second. The `mummer` binary and the example crawlers parse every such
//! flag here (as clap `value_parser`s), so `NaN`, `-1`, `1e30` or `inf` stop with a clear
//! error naming the flag instead of a panic in `Duration::from_secs_f64` or an overflowed
//! clock later.

use std::time::Duration;

/// The longest duration a flag may give: 30 days (a lease, an idle timeout or a
/// deadline longer than that is a typo, and far below any clock's overflow).
pub const MAX_SECONDS: f64 = 30.0 * 24.0 * 3600.0;

/// The highest rate a flag may give, in requests per second.
pub const MAX_RATE: f64 = 1_000_000.0;

/// A positive duration in seconds, at most [`MAX_SECONDS`], with fractions (`0.25`).
///
/// # Errors
///
/// Text that is not a number, or a number that is not finite, not positive or too large.
pub fn seconds(text: &str) -> Result<Duration, String> {
    let value = number(text)?;
    if !(value > 0.0 && value <= MAX_SECONDS) {
        return Err(format!(
            "`{text}` is not a number of seconds above 0 and at most {MAX_SECONDS}"
        ));
    }
    // In range, so this cannot fail; the error path stays for form's sake.
    Duration::try_from_secs_f64(value).map_err(|e| format!("`{text}`: {e}"))
}

/// A positive rate in requests per second, at most [`MAX_RATE`].
///
/// # Errors
///
/// Text that is not a number, or a number that is not finite, not positive or too large.
pub fn rate(text: &str) -> Result<f64, String> {
    let value = number(text)?;
    if !(value > 0.0 && value <= MAX_RATE) {
        return Err(format!(
            "`{text}` is not a rate above 0 and at most {MAX_RATE} per second"
        ));
    }
    Ok(value)
}

fn number(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if !value.is_finite() {
        return Err(format!("`{text}` is not a finite number"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_in_range_parse_with_fractions() {
        assert_eq!(seconds("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(seconds("30"), Ok(Duration::from_secs(30)));
        assert!(seconds(&MAX_SECONDS.to_string()).is_ok());
    }

    #[test]
    fn bad_seconds_are_refused_not_panicked_on() {
        for bad in [
            "-1", "0", "NaN", "nan", "inf", "-inf", "1e30", "1e19", "", "ten", "2592001",
        ] {
            let err = seconds(bad).expect_err(bad);
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_rates_are_refused() {
        assert_eq!(rate("0.2"), Ok(0.2));
        for bad in ["0", "-3", "NaN", "inf", "1e30", "x"] {
            assert!(rate(bad).is_err(), "{bad}");
        }
    }
}
