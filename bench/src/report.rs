//! Results: the samples and errors of each (row, column) cell, the printed table (median, p10,
//! p90 in ms, ratio of medians vs runc and vs crun, or vs raw criu in the checkpoint/restore rows,
//! vs runtime plain in the migration rows) and the raw JSON written to target/bench/. Sub-lines
//! that are not times (`Sample::values`, e.g. "image MiB") are printed in their own unit.

use crate::rows::Sample;
use serde_json::{json, Value};
use std::fmt::Write as _;

pub struct Cell {
    pub label: String,
    /// Why the cell has no (or fewer) samples: "not found", "setup failed: ...", "gave up ...".
    pub note: Option<String>,
    pub samples: Vec<Sample>,
    pub errors: Vec<String>,
}

/// One line of the table.
pub struct RowResult {
    pub name: String,
    pub about: String,
    pub cells: Vec<Cell>,
    /// Iterations asked for.
    pub runs: usize,
    /// The columns the ratio columns compare with.
    pub ratios: [&'static str; 2],
}

impl Cell {
    /// Milliseconds of the total (`part == None`) or of one named part, per successful sample;
    /// for a named value (`Sample::values`), the value itself.
    fn ms(&self, part: Option<&str>) -> Vec<f64> {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let pick = |s: &Sample| match part {
            None => Some(ms(s.total)),
            Some(p) => s
                .parts
                .iter()
                .find(|(n, _)| *n == p)
                .map(|(_, d)| ms(*d))
                .or_else(|| s.values.iter().find(|(n, _)| *n == p).map(|(_, v)| *v)),
        };
        self.samples.iter().filter_map(pick).collect()
    }
}

/// Linear-interpolated percentile, `p` in 0..=1, of unsorted values.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let x = p * (v.len() - 1) as f64;
    let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (x - lo as f64))
}

fn median_of(row: &RowResult, label: &str, part: Option<&str>) -> Option<f64> {
    let cell = row.cells.iter().find(|c| c.label == label)?;
    percentile(&cell.ms(part), 0.5)
}

/// Part names in first-seen order, then value names (`values == true`).
fn part_names(row: &RowResult, values: bool) -> Vec<&'static str> {
    let mut names = Vec::new();
    let samples = row.cells.iter().flat_map(|c| &c.samples);
    let found: Vec<&'static str> = if values {
        samples.flat_map(|s| &s.values).map(|(n, _)| *n).collect()
    } else {
        samples.flat_map(|s| &s.parts).map(|(n, _)| *n).collect()
    };
    for n in found {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// Column widths: the column label (at least 12) and the two ratio columns (at least 8).
struct Widths {
    label: usize,
    ratios: [usize; 2],
}

/// The table; a header starts it and each run of rows with other ratio columns.
pub fn table(rows: &[RowResult]) -> String {
    let mut out = String::new();
    let mut ratios = None;
    let label = rows
        .iter()
        .flat_map(|r| &r.cells)
        .map(|c| c.label.len())
        .fold(12, usize::max);
    let mut w = Widths {
        label,
        ratios: [8, 8],
    };
    for row in rows {
        if ratios != Some(row.ratios) {
            ratios = Some(row.ratios);
            let [a, b] = row.ratios.map(|r| format!("vs {r}"));
            w.ratios = [a.len().max(8), b.len().max(8)];
            let [wa, wb] = w.ratios;
            let head = format!(
                "{:<26} {:<lw$} {:>9} {:>9} {:>9} {a:>wa$} {b:>wb$} {:>9}",
                "row",
                "column",
                "median",
                "p10",
                "p90",
                "ok",
                lw = w.label
            );
            let gap = if out.is_empty() { "" } else { "\n" };
            let _ = writeln!(out, "{gap}{head}\n{}", "-".repeat(head.len()));
        }
        let parts = part_names(row, false)
            .into_iter()
            .chain(part_names(row, true));
        let lines = std::iter::once(None).chain(parts.map(Some));
        for part in lines {
            let title = match part {
                None => row.name.clone(),
                Some(p) => format!("   - {p}"),
            };
            for (i, cell) in row.cells.iter().enumerate() {
                let name = if i == 0 { title.as_str() } else { "" };
                let _ = writeln!(out, "{}", cell_line(row, cell, part, name, &w));
            }
        }
    }
    out
}

fn cell_line(row: &RowResult, cell: &Cell, part: Option<&str>, name: &str, w: &Widths) -> String {
    let ms = cell.ms(part);
    let prefix = format!("{name:<26} {:<lw$}", cell.label, lw = w.label);
    let Some(median) = percentile(&ms, 0.5) else {
        let why = cell.note.clone().unwrap_or_else(|| "no samples".into());
        return format!("{prefix} {why}");
    };
    let ratio = |other: &str| match median_of(row, other, part) {
        Some(m) if m > 0.0 => format!("{:.2}", median / m),
        _ => "-".into(),
    };
    let p = |q| percentile(&ms, q).unwrap_or(f64::NAN);
    let ok = format!("{}/{}", cell.samples.len(), row.runs);
    let [wa, wb] = w.ratios;
    let mut line = format!(
        "{prefix} {median:>9.2} {:>9.2} {:>9.2} {:>wa$} {:>wb$} {ok:>9}",
        p(0.1),
        p(0.9),
        ratio(row.ratios[0]),
        ratio(row.ratios[1])
    );
    if let Some(note) = &cell.note {
        let _ = write!(line, "  ({note})");
    }
    line
}

/// One line per cell with errors: how many, and the first message.
pub fn errors(rows: &[RowResult]) -> String {
    let mut out = String::new();
    for row in rows {
        for cell in row.cells.iter().filter(|c| !c.errors.is_empty()) {
            let _ = writeln!(
                out,
                "{} / {}: {} failed; first: {}",
                row.name,
                cell.label,
                cell.errors.len(),
                cell.errors[0]
            );
        }
    }
    out
}

pub fn to_json(meta: Value, rows: &[RowResult]) -> Value {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| {
            let cells: Vec<Value> = row
                .cells
                .iter()
                .map(|c| {
                    let named = |values| -> serde_json::Map<String, Value> {
                        part_names(row, values)
                            .into_iter()
                            .map(|p| (p.to_string(), json!(c.ms(Some(p)))))
                            .collect()
                    };
                    json!({
                        "column": c.label,
                        "note": c.note,
                        "samples_ms": c.samples.iter().map(|s| ms(s.total)).collect::<Vec<_>>(),
                        "parts_ms": named(false),
                        "values": named(true),
                        "errors": c.errors,
                    })
                })
                .collect();
            json!({"row": row.name, "about": row.about, "runs": row.runs, "cells": cells})
        })
        .collect();
    json!({"meta": meta, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_interpolate() {
        let v = [4.0, 1.0, 3.0, 2.0, 5.0];
        assert_eq!(percentile(&v, 0.5), Some(3.0));
        assert_eq!(percentile(&v, 0.1), Some(1.4));
        assert_eq!(percentile(&v, 1.0), Some(5.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
