//! Reading a training set from CSV: one example per line, a label column (class indices
//! 0, 1, 2, …, or class names such as `setosa`, numbered in sorted order) and numeric
//! feature columns, an optional header row; or rows of features alone, for prediction. Every rejection names the line and
//! the column (field, 1-based) at fault; nothing in a file can panic this code.
//!
//! Records are split by the `csv` crate (RFC 4180: quoted fields may hold commas, quotes
//! and line breaks); fields are trimmed; blank lines are skipped. What a field means (a
//! number, a label, a header) is decided here.
use csv::{ReaderBuilder, StringRecord, Trim};

use super::error::DataError;

#[derive(Debug, Clone, Copy)]
pub struct CsvOptions<'a> {
    /// The label column, 0-based; `None`: every column is a feature (rows to predict).
    pub label_column: Option<usize>,
    /// The class count if given; otherwise inferred as the largest label + 1.
    pub classes: Option<u32>,
    /// The model's class names, when it has them: labels are read as these names (or
    /// their indices).
    pub names: Option<&'a [String]>,
    /// Feature columns to leave out (`--drop`) or the only ones to keep (`--features`).
    pub columns: Option<&'a Columns>,
}

/// `--drop` and `--features`, for the commands that read labelled or feature CSVs.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ColumnArgs {
    /// Leave these feature columns out (header names or 1-based numbers, comma-separated),
    /// e.g. an id or a pandas index column.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "COLS",
        conflicts_with = "features"
    )]
    pub drop: Vec<String>,
    /// Read only these feature columns (header names or 1-based numbers, comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "COLS")]
    pub features: Vec<String>,
}

impl ColumnArgs {
    pub fn columns(&self) -> Option<Columns> {
        match (self.drop.is_empty(), self.features.is_empty()) {
            (false, _) => Some(Columns::Drop(self.drop.clone())),
            (_, false) => Some(Columns::Keep(self.features.clone())),
            _ => None,
        }
    }
}

/// A choice of feature columns, each by header name or 1-based number.
#[derive(Debug, Clone, PartialEq)]
pub enum Columns {
    Drop(Vec<String>),
    Keep(Vec<String>),
}

impl Columns {
    /// Which of `width` columns are read as features (the label column aside), or what
    /// is wrong with the choice.
    fn features(
        &self,
        header: Option<&[String]>,
        width: usize,
        label: usize,
    ) -> Result<Vec<bool>, String> {
        let (named, keep) = match self {
            Columns::Drop(n) => (n, false),
            Columns::Keep(n) => (n, true),
        };
        let mut chosen = vec![false; width];
        for name in named {
            let at = match name.parse::<usize>() {
                Ok(n) if (1..=width).contains(&n) => n - 1,
                Ok(n) => return Err(format!("column {n}: the rows have {width} columns")),
                Err(_) => header
                    .and_then(|h| h.iter().position(|c| c == name))
                    .ok_or_else(|| match header {
                        Some(h) => format!("no column {name:?} (the header has {})", h.join(", ")),
                        None => format!(
                            "no column {name:?}: the file has no header; give column numbers"
                        ),
                    })?,
            };
            if at == label {
                return Err(format!("column {name:?} is the label column"));
            }
            chosen[at] = true;
        }
        Ok((0..width)
            .map(|j| j != label && chosen[j] == keep)
            .collect())
    }
}

#[derive(Debug, Clone)]
pub struct Dataset {
    /// Row-major `rows × dim` features.
    pub features: Vec<f64>,
    pub labels: Vec<u32>,
    pub dim: usize,
    pub classes: u32,
    /// The class names when the labels were names (label i is `class_names[i]`, sorted),
    /// or the model's names that were given; empty for index labels.
    pub class_names: Vec<String>,
    /// The header's column names, when line 1 was a header.
    pub header: Option<Vec<String>>,
}

impl Dataset {
    pub fn rows(&self) -> usize {
        self.features.len() / self.dim.max(1)
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.features[i * self.dim..(i + 1) * self.dim]
    }
}

/// Parses `text`, naming `path` in errors.
pub fn parse(path: &str, text: &str, opts: CsvOptions) -> Result<Dataset, DataError> {
    let err = |line: Option<usize>, col: Option<usize>, message: String| DataError {
        path: path.to_string(),
        line,
        col,
        message,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Flexible: rows of another width are reported here, with their line and column.
    let mut reader = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(Trim::All)
        .from_reader(text.as_bytes());
    let mut records = reader.records().filter_map(|r| match r {
        // A line of blanks is one empty field: skipped like an empty line.
        Ok(rec) if rec.len() == 1 && rec[0].is_empty() => None,
        Ok(rec) => Some(Ok((rec.position().map_or(0, |p| p.byte()), rec))),
        Err(e) => Some(Err(e)),
    });
    // The line a record starts on, counting every line of the file (the reader's own
    // count skips blank lines). Only needed for messages.
    let line_at = |byte: u64| {
        let bytes = text.as_bytes();
        let mut end = (byte as usize).min(bytes.len());
        // A record after blank lines is reported from where the blank lines begin.
        while end < bytes.len() && matches!(bytes[end], b'\n' | b'\r') {
            end += 1;
        }
        bytes[..end].iter().filter(|&&b| b == b'\n').count() + 1
    };
    let csv_error = |e: csv::Error| {
        let line = e.position().map(|p| line_at(p.byte()));
        err(line, None, format!("not readable as CSV: {e}"))
    };

    let (first_byte, first) = match records.next() {
        None => return Err(err(None, None, "empty file: no rows".into())),
        Some(r) => r.map_err(csv_error)?,
    };
    let first_no = line_at(first_byte);
    let first_fields: Vec<&str> = first.iter().collect();
    let width = first_fields.len();
    let label_column = opts.label_column.unwrap_or(usize::MAX);
    if opts.label_column.is_some() && width < 2 {
        return Err(err(
            Some(first_no),
            None,
            format!(
                "found {width} column; need a label column and at least one feature column (comma-separated)"
            ),
        ));
    }
    if let Some(c) = opts.label_column
        && c >= width
    {
        return Err(err(
            Some(first_no),
            None,
            format!("--label-column {} but the rows have {width} columns", c + 1),
        ));
    }
    // A header is a first row with a feature field that is not a number (labels may be
    // names in every row).
    let is_header = first_fields
        .iter()
        .enumerate()
        .any(|(j, f)| j != label_column && number(f).is_err());
    let header: Option<Vec<String>> =
        is_header.then(|| first_fields.iter().map(|f| f.to_string()).collect());
    let read: Vec<bool> = match opts.columns {
        None => (0..width).map(|j| j != label_column).collect(),
        Some(c) => c
            .features(header.as_deref(), width, label_column)
            .map_err(|m| err(Some(first_no), None, m))?,
    };
    if !read.iter().any(|&r| r) {
        return Err(err(Some(first_no), None, "no feature column left".into()));
    }

    let mut features = Vec::new();
    // Each row's label field and where it is, read once every row is in.
    let mut raw_labels: Vec<(String, usize, usize)> = Vec::new();
    let mut index_labels = false;
    // Their values, when they are index labels.
    let mut indexed: Vec<u32> = Vec::new();
    let first_row: Option<Result<(u64, StringRecord), csv::Error>> =
        (!is_header).then(|| Ok((first_byte, first.clone())));
    for r in first_row.into_iter().chain(records) {
        let (byte, record) = r.map_err(csv_error)?;
        let line_no = line_at(byte);
        let fields: Vec<&str> = record.iter().collect();
        if fields.len() != width {
            let col = fields.len().min(width) + 1;
            let what = if fields.len() < width {
                "too few"
            } else {
                "too many"
            };
            return Err(err(
                Some(line_no),
                Some(col),
                format!(
                    "{what} columns: found {}, expected {width} (as on line {first_no})",
                    fields.len()
                ),
            ));
        }
        for (j, field) in fields.iter().enumerate() {
            let at = |message| err(Some(line_no), Some(j + 1), message);
            if j == label_column {
                // Index labels (the first label is a number, and the model has no names)
                // are checked as they come, so errors are reported in file order.
                if raw_labels.is_empty() {
                    index_labels =
                        opts.names.is_none_or(<[String]>::is_empty) && number(field).is_ok();
                }
                if index_labels {
                    indexed.push(label(field, opts.classes).map_err(at)?);
                }
                raw_labels.push((field.to_string(), line_no, j + 1));
            } else if read[j] {
                features.push(number(field).map_err(at)?);
            }
        }
    }
    let dim = read.iter().filter(|&&r| r).count();
    let rows = if opts.label_column.is_some() {
        raw_labels.len()
    } else {
        features.len() / dim.max(1)
    };
    if rows == 0 {
        return Err(err(
            Some(first_no),
            None,
            "only a header row, no data rows".into(),
        ));
    }
    if opts.label_column.is_none() {
        return Ok(Dataset {
            features,
            labels: Vec::new(),
            dim,
            classes: 0,
            class_names: opts.names.map(<[String]>::to_vec).unwrap_or_default(),
            header,
        });
    }
    let at =
        |&(_, line, col): &(String, usize, usize), message| err(Some(line), Some(col), message);
    let (labels, class_names) = match opts.names {
        // The model's names: a label is one of them, or its index.
        Some(names) if !names.is_empty() => {
            let mut labels = Vec::with_capacity(raw_labels.len());
            for r in &raw_labels {
                let by_name = names.iter().position(|n| *n == r.0);
                let by_index = label(&r.0, Some(names.len() as u32)).ok();
                match by_name.map(|i| i as u32).or(by_index) {
                    Some(l) => labels.push(l),
                    None => {
                        return Err(at(
                            r,
                            format!(
                                "label {:?} is none of the model's classes ({})",
                                r.0,
                                names.join(", ")
                            ),
                        ));
                    }
                }
            }
            (labels, names.to_vec())
        }
        // Index labels when every one is a number (read as they came); class names when
        // none is; a mix is a mistake (a typo among indices), reported where the first
        // non-number is.
        _ if index_labels => (indexed, Vec::new()),
        _ if raw_labels.iter().any(|r| number(&r.0).is_ok()) => {
            let mut labels = Vec::with_capacity(raw_labels.len());
            for r in &raw_labels {
                labels.push(label(&r.0, opts.classes).map_err(|m| at(r, m))?);
            }
            (labels, Vec::new())
        }
        _ => {
            let mut names: Vec<String> = raw_labels.iter().map(|r| r.0.clone()).collect();
            names.sort();
            names.dedup();
            if let Some(r) = raw_labels.iter().find(|r| r.0.is_empty()) {
                return Err(at(r, "empty label; every row needs its class".into()));
            }
            let labels = raw_labels
                .iter()
                .map(|r| names.binary_search(&r.0).unwrap_or(0) as u32)
                .collect();
            (labels, names)
        }
    };
    let classes = match opts.classes {
        Some(c) => c,
        None if !class_names.is_empty() => class_names.len() as u32,
        None => labels.iter().max().map_or(0, |&m| m.saturating_add(1)),
    };
    if classes < 2 {
        return Err(err(
            None,
            None,
            "every label is the same, so there is only one class; a classifier needs at least two (--classes N if this file is a subset)"
                .into(),
        ));
    }
    Ok(Dataset {
        features,
        labels,
        dim,
        classes,
        class_names,
        header,
    })
}

fn number(field: &str) -> Result<f64, String> {
    if field.is_empty() {
        return Err("empty field, expected a number".into());
    }
    match field.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("{field:?} is not a finite number")),
        Err(_) => Err(format!("{field:?} is not a number")),
    }
}

/// A class index: a non-negative integer (`3` or `3.0`), below `classes` when given.
fn label(field: &str, classes: Option<u32>) -> Result<u32, String> {
    let value = match field.parse::<u32>() {
        Ok(v) => v,
        Err(_) => {
            let v = number(field).map_err(|e| format!("label: {e}"))?;
            if v < 0.0 {
                return Err(format!(
                    "label {field:?} is negative; labels are class indices 0, 1, 2, …"
                ));
            }
            if v.fract() != 0.0 {
                return Err(format!(
                    "label {field:?} is not an integer; labels are class indices 0, 1, 2, …"
                ));
            }
            if v > f64::from(u32::MAX - 1) {
                return Err(format!("label {field:?} is too large"));
            }
            v as u32
        }
    };
    match classes {
        Some(c) if value >= c => Err(format!(
            "label {value} is out of range for --classes {c} (labels must be 0..{})",
            c - 1
        )),
        _ => Ok(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: CsvOptions = CsvOptions {
        label_column: Some(0),
        classes: None,
        names: None,
        columns: None,
    };

    fn fail(text: &str, opts: CsvOptions) -> String {
        parse("d.csv", text, opts).unwrap_err().to_string()
    }

    #[test]
    fn header_and_rows() {
        let d = parse("d.csv", "y, a ,\"b\"\r\n1,2,3\n\n0,-1.5,4e2\n", OPTS).unwrap();
        assert_eq!(
            d.header.as_deref(),
            Some(&["y", "a", "b"].map(String::from)[..])
        );
        assert_eq!(d.labels, [1, 0]);
        assert_eq!(d.features, [2.0, 3.0, -1.5, 400.0]);
        assert_eq!((d.dim, d.classes), (2, 2));
    }

    #[test]
    fn quoted_fields_may_hold_commas_quotes_and_line_breaks() {
        let t = "label,\"height, cm\",\"say \"\"hi\"\"\"\n1,\"2\",3\n0,\" 4 \",5\n";
        let d = parse("d.csv", t, OPTS).unwrap();
        assert_eq!(
            d.header.as_deref(),
            Some(&["label", "height, cm", "say \"hi\""].map(String::from)[..])
        );
        assert_eq!(d.features, [2.0, 3.0, 4.0, 5.0]);
        // A quoted comma is one field, so this row has two columns, not three.
        let e = fail("0,1,2\n1,\"2,5\"\n", OPTS);
        assert_eq!(
            e,
            "d.csv:2:3: too few columns: found 2, expected 3 (as on line 1)"
        );
        // A quoted line break keeps the next record's line number right (the label "a\nb"
        // is a class name).
        let e = fail("name,x\n\"a\nb\",1\n0,zz\n", OPTS);
        assert_eq!(e, "d.csv:4:2: \"zz\" is not a number");
        // Index labels with a name among them: the name is the mistake, where it is.
        let e = fail("0,1\n1,2\nx,3\n", OPTS);
        assert_eq!(e, "d.csv:3:1: label: \"x\" is not a number");
        let e = fail("name,x\n0,1\n\n0,zz\n", OPTS);
        assert_eq!(
            e, "d.csv:4:2: \"zz\" is not a number",
            "blank lines still count"
        );
    }

    #[test]
    fn label_column_and_no_header() {
        let opts = CsvOptions {
            label_column: Some(2),
            classes: Some(4),
            names: None,
            columns: None,
        };
        let d = parse("d.csv", "1,2,3.0\n4,5,0\n", opts).unwrap();
        assert!(d.header.is_none());
        assert_eq!(d.labels, [3, 0]);
        assert_eq!(d.row(1), [4.0, 5.0]);
        assert_eq!(d.classes, 4);
    }

    #[test]
    fn errors_name_line_and_column() {
        let t = "label,x,y,z\n0,1,2,3\n1,1,2,abc\n";
        assert_eq!(fail(t, OPTS), "d.csv:3:4: \"abc\" is not a number");
        assert_eq!(
            fail("0,1,2\n1,2\n", OPTS),
            "d.csv:2:3: too few columns: found 2, expected 3 (as on line 1)"
        );
        assert_eq!(
            fail("0,1\n1,2,3\n", OPTS),
            "d.csv:2:3: too many columns: found 3, expected 2 (as on line 1)"
        );
        assert!(
            fail("0,1\n1.5,2\n", OPTS).starts_with("d.csv:2:1: label \"1.5\" is not an integer")
        );
        assert!(fail("0,1\n-1,2\n", OPTS).starts_with("d.csv:2:1: label \"-1\" is negative"));
        assert!(fail("0,1\nx,2\n", OPTS).starts_with("d.csv:2:1: label: \"x\" is not a number"));
        assert!(fail("0,1\n1,\n", OPTS).starts_with("d.csv:2:2: empty field"));
        assert!(fail("0,1\n1,nan\n", OPTS).starts_with("d.csv:2:2: \"nan\" is not a finite"));
        let opts = CsvOptions {
            classes: Some(2),
            ..OPTS
        };
        assert!(fail("0,1\n2,1\n", opts).starts_with("d.csv:2:1: label 2 is out of range"));
    }

    #[test]
    fn degenerate_files() {
        assert_eq!(fail("", OPTS), "d.csv: empty file: no rows");
        assert_eq!(fail(" \n\n", OPTS), "d.csv: empty file: no rows");
        assert!(fail("a,b\n", OPTS).starts_with("d.csv:1: only a header row"));
        assert!(fail("1\n2\n", OPTS).starts_with("d.csv:1: found 1 column"));
        assert!(fail("0,1\n0,2\n", OPTS).contains("only one class"));
        let opts = CsvOptions {
            label_column: Some(5),
            names: None,
            columns: None,
            classes: None,
        };
        assert!(fail("0,1\n", opts).starts_with("d.csv:1: --label-column 6"));
    }

    #[test]
    fn drop_and_features_choose_the_feature_columns() {
        let t = "id,label,a,b\n7,0,1.5,2.5\n8,1,3.5,4.5\n";
        let with = |c: Columns| {
            let opts = CsvOptions {
                label_column: Some(1),
                columns: Some(&c),
                ..OPTS
            };
            parse("d.csv", t, opts).map_err(|e| e.to_string())
        };
        let d = with(Columns::Drop(vec!["id".into()])).unwrap();
        assert_eq!((d.dim, d.features.clone()), (2, vec![1.5, 2.5, 3.5, 4.5]));
        let d = with(Columns::Keep(vec!["4".into()])).unwrap();
        assert_eq!((d.dim, d.features.clone()), (1, vec![2.5, 4.5]));
        assert_eq!(
            with(Columns::Drop(vec!["c".into()])).unwrap_err(),
            "d.csv:1: no column \"c\" (the header has id, label, a, b)"
        );
        assert_eq!(
            with(Columns::Keep(vec!["label".into()])).unwrap_err(),
            "d.csv:1: column \"label\" is the label column"
        );
        assert_eq!(
            with(Columns::Drop(vec!["1".into(), "3".into(), "4".into()])).unwrap_err(),
            "d.csv:1: no feature column left"
        );
        assert_eq!(
            with(Columns::Keep(vec!["9".into()])).unwrap_err(),
            "d.csv:1: column 9: the rows have 4 columns"
        );
    }
}
