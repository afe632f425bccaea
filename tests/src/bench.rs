//! Helpers of the benchmarks in `tests/benches` (figures, not assertions).

/// Median, minimum and maximum of `values` (sorted in place); `None` when empty.
pub fn median_min_max(values: &mut [f64]) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    Some((median, values[0], values[n - 1]))
}

/// The numbers `<prefix><number> ms` found at the start of lines of `output`.
pub fn ms_values(output: &str, prefix: &str) -> Vec<f64> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| l.trim().trim_end_matches(" ms").parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median_min_max(&mut []), None);
        assert_eq!(median_min_max(&mut [3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(
            median_min_max(&mut [4.0, 1.0, 3.0, 2.0]),
            Some((2.5, 1.0, 4.0))
        );
    }

    #[test]
    fn ms_values_reads_only_matching_lines() {
        let out = "x: 1 ms\nfirst-container: 12.5 ms\nfirst-container: failed run 2\n\
                   first-container: 7 ms\n";
        assert_eq!(ms_values(out, "first-container: "), vec![12.5, 7.0]);
    }
}
