//! `--compare FILE`: this run's figures next to those of a run saved earlier with
//! `--json`, row by row.
//!
//! A row is a workload reached by one path (`W3/100` through the gater, say: the id
//! carries the batch size or variant, the via the path), compared by its ratio to raw
//! redb measured in its own run, since absolute figures drift between runs on a shared
//! machine and ratios taken in one run much less; or one part of the disk table at one
//! moment (`log` right after the load), compared by bytes per event. The change is
//! this run's figure divided by the saved one's; a ratio that fell, or a disk figure
//! that rose, by more than [`WORSE_SHARE`] is marked.
//!
//! The saved file is read before anything runs, and refused when it cannot be read,
//! is not JSON, or is not what `reckon-bench --json` writes. Files from before the
//! `"tool"` and `"format"` fields (format 1: no disk table) are read when they have
//! that older shape; files of a format newer than [`FORMAT`] are refused.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use super::report::{fmt_ratio, thousands, FORMAT, TOOL};
use super::{Via, PAYLOAD_BYTES};

/// The format of files written before the `"format"` field.
const FORMAT_UNMARKED: u64 = 1;
/// A change worse than this share of the saved figure is marked.
pub const WORSE_SHARE: f64 = 0.10;
/// Largest saved file `--compare` reads: a full run writes some tens of kilobytes.
pub const SAVED_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// The disk table's parts `--compare` compares, as the JSON names them.
const DISK_PARTS: [&str; 4] = ["total", "log", "state", "snapshots"];
/// The settings whose difference the comparison points out.
const SETTINGS_COMPARED: [&str; 10] = [
    "runs",
    "warmup_secs",
    "secs",
    "w4_events",
    "s1_events",
    "s2_rate",
    "via",
    "cluster",
    "quick",
    "cpus",
];

/// What a row's figure is, and which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A ratio to raw redb; higher is better.
    Ratio,
    /// Bytes on disk per event; lower is better.
    BytesPerEvent,
}

impl Unit {
    fn show(self, value: f64) -> String {
        match self {
            Unit::Ratio => fmt_ratio(value),
            Unit::BytesPerEvent => format!("{} B", thousands(value.round() as u64)),
        }
    }
}

/// What rows are matched by: a workload's id (with its batch size or variant) and
/// path, or a disk part and when it was looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// `W3/100`, `S2/10`, `disk/log`, ...
    pub row: String,
    /// `node`, `gater`, `cluster`; `after-load`, ... for disk rows.
    pub via: String,
}

/// One row's figure in one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// What it is matched by.
    pub key: Key,
    /// The row, for the table.
    pub label: String,
    /// The path or moment, for the table.
    pub via_label: String,
    /// What the figure is.
    pub unit: Unit,
    /// The figure; `None` when the row has none (S2 has no ratio to raw redb).
    pub value: Option<f64>,
}

/// A run saved with `--json`, as `--compare` reads it.
#[derive(Debug, Clone)]
pub struct Saved {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its format (1 for files from before the field).
    pub format: u64,
    /// The command line that wrote it.
    pub command: Option<String>,
    /// Its settings, to point out those that differ.
    pub settings: Value,
    /// Its rows.
    pub figures: Vec<Figure>,
}

/// Reads a run saved with `--json` from `path`; the error names the file and what is
/// wrong with it.
pub fn load(path: &Path) -> anyhow::Result<Saved> {
    let read = || -> anyhow::Result<String> {
        let file = std::fs::File::open(path).context("cannot open it")?;
        let mut text = String::new();
        file.take(SAVED_BYTES_MAX + 1)
            .read_to_string(&mut text)
            .context("cannot read it as text")?;
        anyhow::ensure!(
            text.len() as u64 <= SAVED_BYTES_MAX,
            "it is larger than {SAVED_BYTES_MAX} bytes, far more than reckon-bench writes"
        );
        Ok(text)
    };
    let what = || format!("--compare {}", path.display());
    let text = read().with_context(what)?;
    parse(&text, path)
        .map_err(anyhow::Error::msg)
        .with_context(what)
}

/// Reads the text of a run saved with `--json`.
pub fn parse(text: &str, path: &Path) -> Result<Saved, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Some(top) = v.as_object() else {
        return Err(format!(
            "not a reckon-bench JSON: it is {}, not an object",
            kind(&v)
        ));
    };
    let format = match top.get("tool") {
        Some(Value::String(t)) if t == TOOL => match top.get("format").and_then(Value::as_u64) {
            Some(f) if (FORMAT_UNMARKED..=FORMAT).contains(&f) => f,
            Some(f) if f > FORMAT => {
                return Err(format!(
                    "written by a newer reckon-bench (format {f}; this one reads formats \
                     {FORMAT_UNMARKED} to {FORMAT})"
                ))
            }
            _ => {
                return Err(format!(
                    "its \"format\" is {}, not a format from {FORMAT_UNMARKED} to {FORMAT}",
                    top.get("format")
                        .map_or("missing".to_string(), Value::to_string)
                ))
            }
        },
        Some(other) => {
            return Err(format!(
                "not a reckon-bench JSON: its \"tool\" is {other}, not \"{TOOL}\""
            ))
        }
        None => {
            let old_shape = top.get("command").is_some_and(Value::is_string)
                && top.get("workloads").is_some_and(Value::is_array)
                && v["settings"]
                    .get("payload_bytes")
                    .is_some_and(Value::is_u64);
            if !old_shape {
                return Err(format!(
                    "not a reckon-bench JSON: it has no \"tool\": \"{TOOL}\" field, nor the \
                     \"command\", \"settings\" and \"workloads\" an older reckon-bench wrote"
                ));
            }
            FORMAT_UNMARKED
        }
    };
    if let Some(bytes) = v["settings"].get("payload_bytes") {
        if bytes.as_u64() != Some(PAYLOAD_BYTES as u64) {
            return Err(format!(
                "it measured events of {bytes} bytes of data, this bench {PAYLOAD_BYTES}: \
                 the figures do not compare"
            ));
        }
    }
    Ok(Saved {
        path: path.to_path_buf(),
        format,
        command: v["command"].as_str().map(str::to_string),
        settings: v["settings"].clone(),
        figures: figures(&v)?,
    })
}

/// What kind of JSON value `v` is, for an error message ("an array").
fn kind(v: &Value) -> &'static str {
    let kinds = [
        (v.is_null(), "null"),
        (v.is_boolean(), "a boolean"),
        (v.is_number(), "a number"),
        (v.is_string(), "a string"),
        (v.is_array(), "an array"),
    ];
    kinds
        .into_iter()
        .find_map(|(is, name)| is.then_some(name))
        .unwrap_or("an object")
}

/// `v[field]` as a figure: `None` when absent or null, an error when not a number.
fn number(v: &Value, field: &str, at: &str) -> Result<Option<f64>, String> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("{at}: \"{field}\" is {n}, not a number")),
    }
}

/// The rows of a report as `--json` writes it (this run's or a saved one): every
/// workload by its ratio to raw redb, and every look of the disk table by bytes per
/// event of each part.
pub fn figures(v: &Value) -> Result<Vec<Figure>, String> {
    let mut out: Vec<Figure> = Vec::new();
    let workloads = v
        .get("workloads")
        .and_then(Value::as_array)
        .ok_or("it has no \"workloads\" list")?;
    for (i, w) in workloads.iter().enumerate() {
        let at = format!("workloads[{i}]");
        let id = w
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{at} has no \"id\""))?;
        let at = format!("{at} ({id})");
        let via = match w.get("via") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(via)) => via.clone(),
            Some(other) => return Err(format!("{at}: \"via\" is {other}, not a string")),
        };
        out.push(Figure {
            label: w
                .get("label")
                .and_then(Value::as_str)
                .unwrap_or(id)
                .to_string(),
            via_label: via_label(&via),
            key: Key {
                row: id.to_string(),
                via,
            },
            unit: Unit::Ratio,
            value: number(w, "ratio_to_baseline", &at)?,
        });
    }
    match v.get("disk") {
        None | Some(Value::Null) => {}
        Some(disk) => {
            let event_bytes = disk
                .get("event_bytes")
                .and_then(Value::as_u64)
                .unwrap_or(PAYLOAD_BYTES as u64);
            let looks = disk
                .get("looks")
                .and_then(Value::as_array)
                .ok_or("its \"disk\" has no \"looks\" list")?;
            for (i, look) in looks.iter().enumerate() {
                let at = format!("disk.looks[{i}]");
                let when = look
                    .get("when")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{at} has no \"when\""))?;
                let per = look
                    .get("allocated_bytes_per_event")
                    .ok_or_else(|| format!("{at} has no \"allocated_bytes_per_event\""))?;
                for part in DISK_PARTS {
                    out.push(Figure {
                        key: Key {
                            row: format!("disk/{part}"),
                            via: when.to_string(),
                        },
                        label: format!("disk per {event_bytes}-byte event: {part}"),
                        via_label: look
                            .get("label")
                            .and_then(Value::as_str)
                            .unwrap_or(when)
                            .to_string(),
                        unit: Unit::BytesPerEvent,
                        value: number(per, part, &format!("{at}.allocated_bytes_per_event"))?,
                    });
                }
            }
        }
    }
    for (i, f) in out.iter().enumerate() {
        if out[..i].iter().any(|g| g.key == f.key) {
            return Err(format!(
                "the row {} {} is in it twice",
                f.key.row,
                if f.key.via.is_empty() {
                    "(no via)"
                } else {
                    &f.key.via
                }
            ));
        }
    }
    Ok(out)
}

/// How the table names a path given by its id.
fn via_label(id: &str) -> String {
    Via::ALL
        .into_iter()
        .find(|v| v.id() == id)
        .map_or_else(|| id.to_string(), |v| v.label().to_string())
}

/// One line of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The row, for the table.
    pub label: String,
    /// The path or moment, for the table.
    pub via_label: String,
    /// What the figures are.
    pub unit: Unit,
    /// The saved run's figure: `None` when the row is not in it, `Some(None)` when the
    /// row is but has no figure.
    pub saved: Option<Option<f64>>,
    /// This run's, the same way.
    pub current: Option<Option<f64>>,
}

impl Line {
    /// This run's figure divided by the saved one, when both have one.
    pub fn change(&self) -> Option<f64> {
        match (self.saved, self.current) {
            (Some(Some(s)), Some(Some(c))) if s > 0.0 && c.is_finite() => Some(c / s),
            _ => None,
        }
    }

    /// Whether the figure got worse by more than [`WORSE_SHARE`]: a ratio fell, or
    /// bytes per event rose (from none at all, too).
    pub fn worse(&self) -> bool {
        match self.change() {
            Some(c) => match self.unit {
                Unit::Ratio => c < 1.0 - WORSE_SHARE,
                Unit::BytesPerEvent => c > 1.0 + WORSE_SHARE,
            },
            None => self.unit == Unit::BytesPerEvent && self.grew_from_zero() == Some(true),
        }
    }

    /// Whether a saved figure of 0 became more than 0 (`None` unless the saved figure
    /// is 0 and this run has one).
    fn grew_from_zero(&self) -> Option<bool> {
        match (self.saved, self.current) {
            (Some(Some(0.0)), Some(Some(c))) => Some(c > 0.0),
            _ => None,
        }
    }

    /// The change column: the factor and the change in percent, in bold when worse.
    pub fn change_cell(&self) -> String {
        match (self.saved, self.current) {
            (None, _) => "only in this run".to_string(),
            (_, None) => "only in the saved run".to_string(),
            (Some(None), Some(None)) => match self.unit {
                Unit::Ratio => "– (no ratio to raw redb)".to_string(),
                Unit::BytesPerEvent => "– (no figure)".to_string(),
            },
            (Some(None), Some(Some(_))) => "– (no figure in the saved run)".to_string(),
            (Some(Some(_)), Some(None)) => "– (no figure in this run)".to_string(),
            (Some(Some(_)), Some(Some(_))) => match self.change() {
                Some(c) => {
                    let pct = percent(c);
                    if self.worse() {
                        format!("{} **{pct}**", fmt_ratio(c))
                    } else {
                        format!("{} ({pct})", fmt_ratio(c))
                    }
                }
                None => match (self.unit, self.grew_from_zero()) {
                    (_, Some(false)) => "– (0 in both)".to_string(),
                    (Unit::BytesPerEvent, Some(true)) => "**up from 0**".to_string(),
                    _ => "– (the saved figure is 0)".to_string(),
                },
            },
        }
    }
}

/// A factor as a change in percent, signed: whole percent, but with a tenth near the
/// mark ([`WORSE_SHARE`]), so that a row marked as worse by more than 10% does not
/// read `-10%`.
fn percent(factor: f64) -> String {
    let pct = (factor - 1.0) * 100.0;
    let mark = WORSE_SHARE * 100.0;
    if (pct.abs().round() - mark).abs() < 1.0 {
        format!("{pct:+.1}%")
    } else {
        format!("{:+}%", pct.round() as i64)
    }
}

/// The lines comparing `saved` with `current`: this run's rows in its order (matched
/// by [`Key`] or only in this run), then those only in the saved run, in its order.
pub fn lines(saved: &[Figure], current: &[Figure]) -> Vec<Line> {
    let mut out: Vec<Line> = current
        .iter()
        .map(|c| Line {
            label: c.label.clone(),
            via_label: c.via_label.clone(),
            unit: c.unit,
            saved: saved.iter().find(|s| s.key == c.key).map(|s| s.value),
            current: Some(c.value),
        })
        .collect();
    out.extend(
        saved
            .iter()
            .filter(|s| !current.iter().any(|c| c.key == s.key))
            .map(|s| Line {
                label: s.label.clone(),
                via_label: s.via_label.clone(),
                unit: s.unit,
                saved: Some(s.value),
                current: None,
            }),
    );
    out
}

fn cell(unit: Unit, value: Option<Option<f64>>) -> String {
    match value {
        Some(Some(v)) => unit.show(v),
        _ => "–".to_string(),
    }
}

impl Saved {
    /// The comparison table of `current` (this run's report as `--json` writes it)
    /// with this saved run, in markdown, and the settings that differ.
    pub fn markdown(&self, current: &Value) -> Result<String, String> {
        let lines = lines(&self.figures, &figures(current)?);
        let mut out = String::new();
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Compared with {} (format {}{}):",
            self.path.display(),
            self.format,
            self.command
                .as_deref()
                .map_or(String::new(), |c| format!(", written by `{c}`"))
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| row | via / when | saved run | this run | change (this ÷ saved) |"
        );
        let _ = writeln!(out, "|---|---|--:|--:|--:|");
        for l in &lines {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                l.label,
                if l.via_label.is_empty() {
                    "–"
                } else {
                    &l.via_label
                },
                cell(l.unit, l.saved),
                cell(l.unit, l.current),
                l.change_cell()
            );
        }
        let both = lines.iter().filter(|l| l.change().is_some()).count();
        let worse = lines.iter().filter(|l| l.worse()).count();
        let only_current = lines.iter().filter(|l| l.saved.is_none()).count();
        let only_saved = lines.iter().filter(|l| l.current.is_none()).count();
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Workload rows compare their ratio to raw redb, each taken in its own run (higher \
             is better); disk rows compare bytes per event by blocks allocated (lower is \
             better). In bold: a ratio that fell, or a disk figure that rose, by more than \
             {:.0}%. {both} row(s) compared, {worse} of them worse by more than that; {} only \
             in this run, {} only in the saved run.",
            WORSE_SHARE * 100.0,
            only_current,
            only_saved
        );
        let differ: Vec<String> = SETTINGS_COMPARED
            .iter()
            .filter_map(|k| {
                let (then, now) = (self.settings.get(k)?, current["settings"].get(k)?);
                (then != now).then(|| format!("{k} {then} then, {now} now"))
            })
            .collect();
        if !differ.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "Settings that differ: {}.", differ.join("; "));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::{json, Value};

    use super::super::disk::{DiskReport, DiskUse, Parts};
    use super::super::report::{test_settings, Report};
    use super::super::{test_series, Baseline, Via};
    use super::{figures, lines, load, parse, Figure, Key, Line, Unit, FORMAT, TOOL};

    fn w(id: &str, via: &str, ratio: Option<f64>) -> Value {
        json!({ "id": id, "label": format!("{id} label"), "via": via, "ratio_to_baseline": ratio })
    }

    fn file(workloads: Vec<Value>, disk: Value) -> Value {
        json!({
            "tool": TOOL,
            "format": FORMAT,
            "command": "reckon-bench --quick",
            "settings": { "payload_bytes": 200, "runs": 1, "w4_events": 200000 },
            "workloads": workloads,
            "disk": disk,
        })
    }

    fn disk(when: &str, total: f64, log: f64, state: f64, snapshots: f64) -> Value {
        json!({
            "event_bytes": 200,
            "looks": [{
                "when": when,
                "label": "right after the load",
                "allocated_bytes_per_event": {
                    "total": total, "log": log, "state": state, "snapshots": snapshots, "other": 0.0
                },
            }],
        })
    }

    fn parsed(v: &Value) -> Vec<Figure> {
        parse(&v.to_string(), Path::new("saved.json"))
            .unwrap()
            .figures
    }

    fn line<'a>(lines: &'a [Line], label: &str, via_label: &str) -> &'a Line {
        lines
            .iter()
            .find(|l| l.label == label && l.via_label == via_label)
            .unwrap_or_else(|| panic!("no line {label} {via_label} in {lines:#?}"))
    }

    #[test]
    fn rows_match_by_workload_batch_and_via() {
        let saved = parsed(&file(
            vec![
                w("W3/100", "node", Some(0.20)),
                w("W3/100", "gater", Some(0.10)),
                w("W3/1000", "node", Some(0.40)),
            ],
            Value::Null,
        ));
        let current = parsed(&file(
            vec![
                w("W3/1000", "node", Some(0.44)),
                w("W3/100", "gater", Some(0.10)),
                w("W3/100", "node", Some(0.19)),
            ],
            Value::Null,
        ));
        let ls = lines(&saved, &current);
        assert_eq!(ls.len(), 3);
        let l = line(&ls, "W3/100 label", "gater → node");
        assert_eq!((l.saved, l.current), (Some(Some(0.10)), Some(Some(0.10))));
        assert_eq!(l.change_cell(), "1.00× (+0%)");
        let l = line(&ls, "W3/100 label", "node, direct");
        assert_eq!((l.saved, l.current), (Some(Some(0.20)), Some(Some(0.19))));
        assert_eq!(l.change_cell(), "0.95× (-5%)");
        let l = line(&ls, "W3/1000 label", "node, direct");
        assert_eq!(l.change_cell(), "1.10× (+10.0%)");
        assert!(ls.iter().all(|l| !l.worse()));
    }

    #[test]
    fn a_fall_of_more_than_a_tenth_is_marked() {
        let saved = parsed(&file(
            vec![
                w("W1", "node", Some(0.5)),
                w("W2", "node", Some(4.0)),
                w("W3/100", "node", Some(0.1)),
                w("S2/1", "gater", None),
            ],
            disk("after-load", 1000.0, 400.0, 600.0, 0.0),
        ));
        let current = parsed(&file(
            vec![
                w("W1", "node", Some(0.385)),
                w("W2", "node", Some(3.6)),
                w("W3/100", "node", Some(0.0897)),
                w("S2/1", "gater", None),
            ],
            disk("after-load", 1150.0, 300.0, 650.0, 0.0),
        ));
        let ls = lines(&saved, &current);
        let l = line(&ls, "W1 label", "node, direct");
        assert!(l.worse());
        assert_eq!(l.change_cell(), "0.77× **-23%**");
        // Exactly a tenth is not more than a tenth.
        let l = line(&ls, "W2 label", "node, direct");
        assert!(!l.worse(), "{l:?}");
        assert_eq!(l.change_cell(), "0.90× (-10.0%)");
        // Just past a tenth, the percent says so.
        let l = line(&ls, "W3/100 label", "node, direct");
        assert!(l.worse(), "{l:?}");
        assert_eq!(l.change_cell(), "0.90× **-10.3%**");
        let l = line(&ls, "S2/1 label", "gater → node");
        assert!(!l.worse());
        assert_eq!(l.change_cell(), "– (no ratio to raw redb)");
        // On disk, lower is better: a rise is marked, a fall is not.
        let when = "right after the load";
        let total = line(&ls, "disk per 200-byte event: total", when);
        assert_eq!(total.unit, Unit::BytesPerEvent);
        assert!(total.worse());
        assert_eq!(total.change_cell(), "1.15× **+15%**");
        let log = line(&ls, "disk per 200-byte event: log", when);
        assert!(!log.worse());
        assert_eq!(log.change_cell(), "0.75× (-25%)");
        let snapshots = line(&ls, "disk per 200-byte event: snapshots", when);
        assert!(!snapshots.worse());
        assert_eq!(snapshots.change_cell(), "– (0 in both)");
        let grown = lines(
            &saved,
            &parsed(&file(
                vec![],
                disk("after-load", 1000.0, 400.0, 550.0, 50.0),
            )),
        );
        let snapshots = line(&grown, "disk per 200-byte event: snapshots", when);
        assert!(snapshots.worse());
        assert_eq!(snapshots.change_cell(), "**up from 0**");
    }

    #[test]
    fn rows_in_one_run_only_are_listed_as_such() {
        let saved = parsed(&file(
            vec![
                w("W1", "node", Some(0.4)),
                w("W3/1000", "cluster", Some(0.1)),
            ],
            disk("after-load", 1000.0, 400.0, 600.0, 0.0),
        ));
        let current = parsed(&file(
            vec![
                w("W1", "node", Some(0.4)),
                w("W3/100", "cluster", Some(0.1)),
            ],
            Value::Null,
        ));
        let ls = lines(&saved, &current);
        // This run's rows first, in its order, then the saved run's own.
        let cells: Vec<(&str, &str, String)> = ls
            .iter()
            .map(|l| (l.label.as_str(), l.via_label.as_str(), l.change_cell()))
            .collect();
        assert_eq!(cells[0].2, "1.00× (+0%)");
        assert_eq!(
            cells[1],
            (
                "W3/100 label",
                "gater → 3-node cluster",
                "only in this run".to_string()
            )
        );
        assert_eq!(
            cells[2],
            (
                "W3/1000 label",
                "gater → 3-node cluster",
                "only in the saved run".to_string()
            )
        );
        assert_eq!(cells.len(), 3 + 4, "{cells:#?}");
        assert!(cells[3..].iter().all(|c| c.2 == "only in the saved run"));
        let text = parse(
            &file(vec![], Value::Null).to_string(),
            Path::new("saved.json"),
        )
        .unwrap()
        .markdown(&file(vec![w("W1", "node", Some(0.4))], Value::Null))
        .unwrap();
        assert!(
            text.contains("| W1 label | node, direct | – | 0.40× | only in this run |"),
            "{text}"
        );
        assert!(
            text.contains("1 only in this run, 0 only in the saved run"),
            "{text}"
        );
    }

    #[test]
    fn bad_files_are_refused_naming_the_file_and_the_fault() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let e = format!("{:#}", load(&missing).unwrap_err());
        assert!(
            e.contains("missing.json") && e.contains("cannot open"),
            "{e}"
        );

        let cases: Vec<(&str, String, &str)> = vec![
            ("empty.json", String::new(), "not JSON"),
            ("garbage.json", "{\"tool\": ".to_string(), "not JSON"),
            (
                "array.json",
                "[1, 2]".to_string(),
                "it is an array, not an object",
            ),
            (
                "other.json",
                json!({ "name": "something else" }).to_string(),
                "no \"tool\": \"reckon-bench\" field",
            ),
            (
                "tool.json",
                json!({ "tool": "other-bench", "format": 2 }).to_string(),
                "its \"tool\" is \"other-bench\"",
            ),
            (
                "newer.json",
                json!({ "tool": TOOL, "format": FORMAT + 1, "workloads": [] }).to_string(),
                "newer reckon-bench",
            ),
            (
                "noformat.json",
                json!({ "tool": TOOL, "workloads": [] }).to_string(),
                "its \"format\" is missing",
            ),
            (
                "noid.json",
                file(vec![json!({ "via": "node" })], Value::Null).to_string(),
                "workloads[0] has no \"id\"",
            ),
            (
                "ratio.json",
                file(
                    vec![json!({ "id": "W1", "ratio_to_baseline": "fast" })],
                    Value::Null,
                )
                .to_string(),
                "workloads[0] (W1): \"ratio_to_baseline\" is \"fast\", not a number",
            ),
            (
                "twice.json",
                file(
                    vec![w("W1", "node", Some(1.0)), w("W1", "node", Some(1.0))],
                    Value::Null,
                )
                .to_string(),
                "the row W1 node is in it twice",
            ),
            (
                "payload.json",
                json!({ "tool": TOOL, "format": 2, "settings": { "payload_bytes": 100 },
                        "workloads": [] })
                .to_string(),
                "events of 100 bytes",
            ),
        ];
        for (name, text, fault) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let e = format!("{:#}", load(&path).unwrap_err());
            assert!(e.contains(name), "{name}: {e}");
            assert!(e.contains(fault), "{name}: {e}");
        }
    }

    #[test]
    fn files_from_before_the_format_field_are_read() {
        let old = json!({
            "command": "reckon-bench --quick",
            "settings": { "payload_bytes": 200, "runs": 1 },
            "workloads": [w("W3/1000", "gater", Some(0.25))],
            "baselines": [],
            "notes": [],
        });
        let saved = parse(&old.to_string(), Path::new("old.json")).unwrap();
        assert_eq!(saved.format, 1);
        assert_eq!(
            saved.figures[0].key,
            Key {
                row: "W3/1000".to_string(),
                via: "gater".to_string()
            }
        );
    }

    #[test]
    fn what_json_writes_compare_reads() {
        let b = Some(Baseline::Batch);
        let allocated = Parts {
            total: 240_000,
            log: 100_000,
            state: 140_000,
            snapshots: 0,
            other: 0,
        };
        let report = Report {
            settings: test_settings(),
            workloads: vec![
                test_series("W3/100", Some(Via::Node), b, 70_000, 1_300),
                test_series("W3/100", Some(Via::Cluster), b, 30_000, 3_000),
                test_series("S2/1", Some(Via::Gater), None, 5_000, 2_000),
            ],
            baselines: vec![(
                Baseline::Batch,
                test_series("raw-1000", None, None, 500_000, 2_000),
            )],
            notes: Vec::new(),
            disk: Some(DiskReport {
                of: "W4",
                events: 1000,
                event_bytes: 200,
                looks: vec![DiskUse {
                    when: "after-load",
                    label: "right after the load".to_string(),
                    allocated,
                    apparent: allocated,
                    files: 3,
                }],
            }),
            backup: None,
            scavenge: None,
        };
        let v = report.json();
        let back = parse(&v.to_string(), Path::new("b.json")).unwrap();
        assert_eq!(back.format, FORMAT);
        assert_eq!(back.figures, figures(&v).unwrap());
        let values: Vec<(String, String, Option<f64>)> = back
            .figures
            .iter()
            .map(|f| (f.key.row.clone(), f.key.via.clone(), f.value))
            .collect();
        let row = |r: &str, v: &str, x: Option<f64>| (r.to_string(), v.to_string(), x);
        assert_eq!(
            values,
            [
                row("W3/100", "node", Some(0.14)),
                row("W3/100", "cluster", Some(0.06)),
                row("S2/1", "gater", None),
                row("disk/total", "after-load", Some(240.0)),
                row("disk/log", "after-load", Some(100.0)),
                row("disk/state", "after-load", Some(140.0)),
                row("disk/snapshots", "after-load", Some(0.0)),
            ]
        );
        // Against itself, nothing changes.
        let text = back.markdown(&v).unwrap();
        assert!(
            text.contains("5 row(s) compared, 0 of them worse"),
            "{text}"
        );
        assert!(!text.contains("Settings that differ"), "{text}");
    }
}
