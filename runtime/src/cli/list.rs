//! `runtime list`: every container under --root, as a table or JSON.

use super::Global;
use crate::container::Container;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output format: table or json
    #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Print only the ids
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<i32> {
    let mut views = Vec::new();
    for id in g.store.list()? {
        // A container deleted meanwhile is simply not listed.
        if let Ok(c) = Container::load(&g.store, &id) {
            views.push(super::state::view(&c));
        }
    }
    if a.quiet {
        for v in &views {
            println!("{}", v.id);
        }
        return Ok(0);
    }
    if a.format == "json" {
        println!("{}", serde_json::to_string(&views)?);
        return Ok(0);
    }
    let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
        .map(String::from)
        .to_vec()];
    for v in &views {
        rows.push(vec![
            v.id.clone(),
            v.pid.to_string(),
            v.status.clone(),
            v.bundle.display().to_string(),
            v.created.clone(),
            v.owner.clone(),
        ]);
    }
    print!("{}", table(&rows));
    Ok(0)
}

/// Columns padded like runc's tabwriter (min width 12, padding 3).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.len() + 3)
                .max()
                .unwrap_or(0)
                .max(12)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let last = r.len().saturating_sub(1);
        for (i, cell) in r.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}", w = widths[i]));
            }
        }
        out.push('\n');
    }
    out
}
