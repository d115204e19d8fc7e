//! SQL text shared by the bus tables and the services' multi-row writes.

/// The tuples of a multi-row `VALUES`: `rows` of `width` numbered
/// placeholders each, `($1, $2), ($3, $4)` for 2 × 2, bound row after row.
pub fn values(rows: usize, width: usize) -> String {
    let tuple = |row: usize| {
        let numbers: Vec<String> = (1..=width)
            .map(|n| format!("${}", row * width + n))
            .collect();
        format!("({})", numbers.join(", "))
    };
    (0..rows).map(tuple).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn rows_are_numbered_in_binding_order() {
        assert_eq!(super::values(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(super::values(1, 1), "($1)");
    }
}
