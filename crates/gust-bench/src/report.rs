//! Results, each beside its floor, as a table, JSON and Markdown.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

/// Latency samples.
#[derive(Debug, Clone)]
pub struct Stats {
    sorted_ms: Vec<f64>,
}

impl Stats {
    pub fn new(samples: Vec<Duration>) -> Self {
        let mut sorted_ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        sorted_ms.sort_by(|a, b| a.total_cmp(b));
        Self { sorted_ms }
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.sorted_ms.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * (self.sorted_ms.len() - 1) as f64).round() as usize;
        self.sorted_ms[rank.min(self.sorted_ms.len() - 1)]
    }

    pub fn p50(&self) -> f64 {
        self.percentile(50.0)
    }

    pub fn p99(&self) -> f64 {
        self.percentile(99.0)
    }
}

pub enum Figure {
    Latency(Stats),
    Rate(f64),
    Value(f64, &'static str),
    /// A count, out of a total where there is one (`12 of 300 warm`).
    Count(u64, Option<u64>, String),
}

struct Row {
    name: String,
    figure: Figure,
    floor: Option<String>,
    /// The section the row belongs to (an index into `sections`); `None`: the main table.
    section: Option<usize>,
    /// A target the figure is held to, and whether this run met it.
    target: Option<Target>,
}

/// A target from an issue, and whether the figure met it.
pub struct Target {
    pub text: String,
    pub met: bool,
}

impl Target {
    pub fn new(text: impl Into<String>, met: bool) -> Self {
        Self {
            text: text.into(),
            met,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{}: {}",
            self.text,
            if self.met { "met" } else { "not met" }
        )
    }
}

/// A section of its own after the main table, with a paragraph saying what it measures.
struct Section {
    title: String,
    paragraph: String,
}

#[derive(Default)]
pub struct Report {
    floors: BTreeMap<String, Figure>,
    floor_order: Vec<String>,
    rows: Vec<Row>,
    notes: Vec<(String, String)>,
    sections: Vec<Section>,
    /// The section rows are added to (`None`: the main table).
    current: Option<usize>,
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map(|kib| format!("{:.0} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem}, Linux {}", kernel.trim())
}

impl Report {
    pub fn new() -> Self {
        let mut report = Self::default();
        report.note("machine", machine());
        let now = time::OffsetDateTime::now_utc();
        report.note(
            "date",
            format!(
                "{:04}-{:02}-{:02}",
                now.year(),
                now.month() as u8,
                now.day()
            ),
        );
        report
    }

    pub fn note(&mut self, key: &str, value: String) {
        self.notes.push((key.to_string(), value));
    }

    pub fn floor(&mut self, name: &str, stats: Stats) {
        self.floor_order.push(name.to_string());
        self.floors.insert(name.to_string(), Figure::Latency(stats));
    }

    pub fn floor_rate(&mut self, name: &str, rate: f64) {
        self.floor_order.push(name.to_string());
        self.floors.insert(name.to_string(), Figure::Rate(rate));
    }

    pub fn measure(&mut self, name: &str, stats: Stats, floor: &str) {
        self.row(name, Figure::Latency(stats), Some(floor), None);
    }

    pub fn rate(&mut self, name: &str, rate: f64, floor: &str) {
        self.row(name, Figure::Rate(rate), Some(floor), None);
    }

    pub fn value(&mut self, name: &str, value: f64, unit: &'static str) {
        self.row(name, Figure::Value(value, unit), None, None);
    }

    /// Any figure, with or without a floor and a target, in the current section.
    pub fn row(&mut self, name: &str, figure: Figure, floor: Option<&str>, target: Option<Target>) {
        self.rows.push(Row {
            name: name.to_string(),
            figure,
            floor: floor.map(str::to_string),
            section: self.current,
            target,
        });
    }

    /// Starts a section of its own: the rows added from now on are reported under `title`,
    /// after the main table, with `paragraph` saying what they measure.
    pub fn section(&mut self, title: &str, paragraph: &str) {
        self.sections.push(Section {
            title: title.to_string(),
            paragraph: paragraph.to_string(),
        });
        self.current = Some(self.sections.len() - 1);
    }

    /// Back to the main table.
    pub fn end_section(&mut self) {
        self.current = None;
    }

    fn describe(figure: &Figure) -> String {
        match figure {
            Figure::Latency(s) => format!("p50 {:.3} ms, p99 {:.3} ms", s.p50(), s.p99()),
            Figure::Rate(r) => format!("{r:.0}/s"),
            Figure::Value(v, unit) => format!("{v:.2} {unit}"),
            Figure::Count(n, Some(of), unit) => format!("{n} of {of} {unit}"),
            Figure::Count(n, None, unit) => format!("{n} {unit}"),
        }
    }

    /// The rows of the main table (`None`) or of a section.
    fn rows_in(&self, section: Option<usize>) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(move |r| r.section == section)
    }

    /// (floor description, ratio to the floor, difference of the medians in ms).
    fn compare(&self, row: &Row) -> (String, String, String) {
        let Some(floor_name) = &row.floor else {
            return ("-".into(), "-".into(), "-".into());
        };
        let Some(floor) = self.floors.get(floor_name) else {
            return (
                format!("{floor_name}: not measured"),
                "-".into(),
                "-".into(),
            );
        };
        let described = format!("{floor_name}: {}", Self::describe(floor));
        match (&row.figure, floor) {
            (Figure::Latency(s), Figure::Latency(f)) => (
                described,
                format!("{:.2}× (p50)", s.p50() / f.p50()),
                format!(
                    "+{:.3} ms p50, +{:.3} ms p99",
                    s.p50() - f.p50(),
                    s.p99() - f.p99()
                ),
            ),
            (Figure::Rate(r), Figure::Rate(f)) => (described, format!("{:.2}×", r / f), "-".into()),
            _ => (described, "-".into(), "-".into()),
        }
    }

    pub fn print(&self) {
        println!();
        for (k, v) in &self.notes {
            println!("{k}: {v}");
        }
        println!();
        println!("FLOORS");
        for name in &self.floor_order {
            println!("  {name:<48} {}", Self::describe(&self.floors[name]));
        }
        for (index, title) in std::iter::once((None, "GUST".to_string()))
            .filter(|_| self.rows_in(None).next().is_some())
            .chain(
                self.sections
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (Some(i), s.title.to_uppercase())),
            )
        {
            println!();
            println!("{title}");
            for row in self.rows_in(index) {
                let (floor, ratio, over) = self.compare(row);
                println!("  {:<66} {}", row.name, Self::describe(&row.figure));
                if row.floor.is_some() {
                    println!("  {:<66}   vs {floor}: {ratio}; {over}", "");
                }
                if let Some(target) = &row.target {
                    println!("  {:<66}   target {}", "", target.describe());
                }
            }
        }
    }

    fn figure_json(figure: &Figure) -> Value {
        match figure {
            Figure::Latency(s) => {
                json!({ "p50_ms": s.p50(), "p99_ms": s.p99(), "samples": s.sorted_ms.len() })
            }
            Figure::Rate(r) => json!({ "per_second": r }),
            Figure::Value(v, unit) => json!({ "value": v, "unit": unit }),
            Figure::Count(n, of, unit) => json!({ "count": n, "of": of, "unit": unit }),
        }
    }

    pub fn to_json(&self) -> Value {
        let notes: serde_json::Map<String, Value> = self
            .notes
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let floors: serde_json::Map<String, Value> = self
            .floor_order
            .iter()
            .map(|n| (n.clone(), Self::figure_json(&self.floors[n])))
            .collect();
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let (_, ratio, over) = self.compare(r);
                let section = r.section.map(|i| self.sections[i].title.clone());
                let target = r.target.as_ref().map(|t| json!({ "target": t.text, "met": t.met }));
                json!({ "name": r.name, "result": Self::figure_json(&r.figure), "floor": r.floor, "ratio": ratio, "over_floor": over, "section": section, "target": target })
            })
            .collect();
        json!({ "notes": notes, "floors": floors, "results": rows })
    }

    pub fn to_markdown(&self) -> String {
        let mut md = String::from("# Gust benchmarks\n\n");
        md.push_str("Produced by `gust-bench` (see README): one run, medians and p99s, each figure beside the floor measured in the same run.\n\n");
        for (k, v) in &self.notes {
            md.push_str(&format!("- **{k}**: {v}\n"));
        }
        md.push_str("\n## Floors\n\n| floor | measured |\n|---|---|\n");
        for name in &self.floor_order {
            md.push_str(&format!(
                "| {name} | {} |\n",
                Self::describe(&self.floors[name])
            ));
        }
        if self.rows_in(None).next().is_some() {
            md.push_str("\n## Gust\n\n| figure | measured | floor | ratio | over the floor |\n|---|---|---|---|---|\n");
        }
        for row in self.rows_in(None) {
            let (floor, ratio, over) = self.compare(row);
            md.push_str(&format!(
                "| {} | {} | {floor} | {ratio} | {over} |\n",
                row.name,
                Self::describe(&row.figure)
            ));
        }
        for (i, section) in self.sections.iter().enumerate() {
            md.push_str(&format!(
                "\n## {}\n\n{}\n\n| figure | measured | floor | ratio | over the floor | target |\n|---|---|---|---|---|---|\n",
                section.title, section.paragraph
            ));
            for row in self.rows_in(Some(i)) {
                let (floor, ratio, over) = self.compare(row);
                let target = row.target.as_ref().map_or("-".into(), Target::describe);
                md.push_str(&format!(
                    "| {} | {} | {floor} | {ratio} | {over} | {target} |\n",
                    row.name,
                    Self::describe(&row.figure)
                ));
            }
        }
        md
    }
}
