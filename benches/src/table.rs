//! Aligned text tables (Markdown pipe tables, readable as printed) and the
//! number formats the benches use.

/// A table: a header row and data rows; the first column (or the first
/// few, see [`Table::left_columns`]) is left-aligned, the others right-aligned.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Column headers; every row has this many cells.
    headers: Vec<String>,
    /// How many leading columns are left-aligned (labels); at least 1.
    left: usize,
    /// Data rows, each as long as `headers`.
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table { headers: headers.iter().map(|h| h.to_string()).collect(), left: 1, rows: Vec::new() }
    }

    /// Left-aligns the first `n` columns (labels) instead of only the first.
    pub fn left_columns(mut self, n: usize) -> Table {
        self.left = n.max(1);
        self
    }

    /// Adds a row; missing cells print empty, extra cells are an error.
    pub fn row(&mut self, cells: Vec<String>) {
        assert!(cells.len() <= self.headers.len(), "a row with more cells than headers");
        let mut cells = cells;
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// The table as text, one line per row.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|c| self.rows.iter().map(|r| r[c].len()).chain([self.headers[c].len(), 3]).max().unwrap_or(3))
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (cell, &w))| if c < self.left { format!("{cell:<w$}") } else { format!("{cell:>w$}") })
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let rule: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(c, &w)| if c < self.left { "-".repeat(w + 2) } else { format!("{}:", "-".repeat(w + 1)) })
            .collect();
        let mut text = line(&self.headers);
        text.push_str(&format!("|{}|\n", rule.join("|")));
        for row in &self.rows {
            text.push_str(&line(row));
        }
        text
    }

    /// Prints the table to stdout.
    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// Nanoseconds with thousands separators ("4,817").
pub fn ns(value: f64) -> String {
    if !value.is_finite() {
        return "—".into();
    }
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// GB/s with two decimals.
pub fn gbps(value: f64) -> String {
    format!("{value:.2}")
}

/// A ratio with two decimals and a trailing "×".
pub fn ratio(value: f64) -> String {
    format!("{value:.2}×")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_numbers_format() {
        let mut table = Table::new(&["placement", "p50 (ns)"]);
        table.row(vec!["same CPU".into(), ns(4817.4)]);
        table.row(vec!["cross".into(), ns(52608.0)]);
        assert_eq!(
            table.render(),
            "| placement | p50 (ns) |\n|-----------|---------:|\n| same CPU  |    4,817 |\n| cross     |   52,608 |\n"
        );
        let mut labels = Table::new(&["a", "b", "c"]).left_columns(2);
        labels.row(vec!["x".into(), "y".into(), "1".into()]);
        assert_eq!(labels.render(), "| a   | b   |   c |\n|-----|-----|----:|\n| x   | y   |   1 |\n");
        assert_eq!(ns(999.0), "999");
        assert_eq!(ns(1_234_567.0), "1,234,567");
        assert_eq!(ns(f64::NAN), "—");
        assert_eq!(gbps(3.404), "3.40");
        assert_eq!(ratio(1.1), "1.10×");
    }
}
