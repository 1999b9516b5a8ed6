//! Pure rendering of the console: [`render`] draws an [`App`] at time `now` into a
//! frame, one function per view. Nothing here reads the clock or the network, so a
//! known state renders to the same screen every time (the snapshot tests rely on
//! it). Meaning never rests on colour alone: the selected tab is bracketed, the
//! leader starred and bold, the selected row marked with `▶`, states spelled out.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState, Wrap,
};
use ratatui::Frame;
use reckon_gater::access::Permission;
use reckon_gater::metrics::human_bytes;
use reckon_gater::types::ScavengePhase;

use crate::app::{
    role_name, App, Connection, Interval, Loading, Millis, Panel, StoreTelemetry, StreamsMode, Tab,
    ALL_STREAM,
};

const BOLD: Style = Style::new().add_modifier(Modifier::BOLD);
const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);

/// Draws the whole console.
pub fn render(frame: &mut Frame, app: &App, now: Millis) {
    let [tabs, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    render_tabs(frame, tabs, app);
    match app.tab {
        Tab::Cluster => render_cluster(frame, body, app, now),
        Tab::Streams => render_streams(frame, body, app, now),
        Tab::Subscriptions => render_subscriptions(frame, body, app, now),
        Tab::Telemetry => render_telemetry(frame, body, app, now),
    }
    render_status(frame, status, app, now);
    if let Some(confirm) = &app.confirm {
        render_confirm(frame, body, &confirm.prompt);
    } else if app.help {
        render_help(frame, body, app);
    }
}

fn render_tabs(frame: &mut Frame, area: Rect, app: &App) {
    let mut spans = vec![Span::styled(" reckon ", BOLD)];
    for (i, tab) in Tab::ALL.iter().enumerate() {
        let label = format!("{}:{}", i + 1, tab.title());
        if *tab == app.tab {
            spans.push(Span::styled(
                format!("[{label}]"),
                BOLD.add_modifier(Modifier::REVERSED),
            ));
        } else {
            spans.push(Span::raw(format!(" {label} ")));
        }
    }
    frame.render_widget(Line::from(spans), area);
}

/// "3.2s ago" style age.
pub fn ago(now: Millis, at: Millis) -> String {
    let ms = now.saturating_sub(at);
    if ms < 60_000 {
        format!("{}.{}s ago", ms / 1000, (ms % 1000) / 100)
    } else if ms < 3_600_000 {
        format!("{}m{}s ago", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{}h ago", ms / 3_600_000)
    }
}

/// A panel's state for its title: `loading`, `2.0s ago`, `stale`, `error: ...`.
fn panel_state<T>(panel: &Panel<T>, now: Millis, refresh_ms: Millis) -> String {
    match &panel.state {
        Loading::Idle => "idle".into(),
        Loading::Loading if panel.data.is_some() => "refreshing".into(),
        Loading::Loading => "loading…".into(),
        Loading::Loaded(at) if now.saturating_sub(*at) > refresh_ms.saturating_mul(3) => {
            format!("STALE, {}", ago(now, *at))
        }
        Loading::Loaded(at) => ago(now, *at),
        Loading::Error(e) if panel.data.is_some() => format!("STALE, error: {e}"),
        Loading::Error(e) => format!("error: {e}"),
    }
}

fn block(title: String) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(title, BOLD))
}

/// The message shown instead of a table when a panel has no data.
fn placeholder<T>(frame: &mut Frame, area: Rect, panel: &Panel<T>, what: &str) {
    let text = match &panel.state {
        Loading::Error(e) => format!("✖ could not load {what}: {e}"),
        Loading::Loaded(_) => format!("no {what}"),
        _ => format!("loading {what}…"),
    };
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
}

fn render_cluster(frame: &mut Frame, area: Rect, app: &App, now: Millis) {
    let timeline_h = if area.height >= 30 { 10 } else { 6 };
    let [nodes_area, timeline_area] =
        Layout::vertical([Constraint::Min(4), Constraint::Length(timeline_h)]).areas(area);
    let title = format!("Nodes ({})", panel_state(&app.cluster, now, app.refresh_ms));
    let outer = block(title);
    let inner = outer.inner(nodes_area);
    frame.render_widget(outer, nodes_area);
    match &app.cluster.data {
        None => placeholder(frame, inner, &app.cluster, "cluster status"),
        Some(data) => {
            // One section per store: a heading line, then its nodes.
            let heights: Vec<Constraint> = data
                .status
                .iter()
                .map(|s| Constraint::Length(s.nodes.len() as u16 + 2))
                .collect();
            let sections = Layout::vertical(heights).split(inner);
            let mut node_i = 0;
            for (s, section) in data.status.iter().zip(sections.iter()) {
                let [heading, table_area] =
                    Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(*section);
                let leader_applied = s
                    .nodes
                    .iter()
                    .find(|n| Some(n.node_id) == s.leader)
                    .map(|n| n.applied_index);
                let health = data.health.stores.iter().find(|h| h.store == s.store);
                let verdict = match health {
                    Some(h) if h.healthy => "healthy".to_string(),
                    Some(h) => format!("UNHEALTHY ({} suspect)", h.suspect),
                    None => "unknown".to_string(),
                };
                let leader = s.leader.map_or("none".to_string(), |l| l.to_string());
                frame.render_widget(
                    Line::from(Span::styled(
                        format!(
                            "store {} · leader {leader} · term {} · {verdict}",
                            s.store, s.term
                        ),
                        BOLD,
                    )),
                    heading,
                );
                let mut selected_row = None;
                let mut rows = Vec::new();
                for n in &s.nodes {
                    let is_leader = Some(n.node_id) == s.leader;
                    let lag = match leader_applied {
                        Some(l) => l.saturating_sub(n.applied_index).to_string(),
                        None => "?".into(),
                    };
                    let marker = if is_leader { "★" } else { " " };
                    let row = Row::new(vec![
                        Cell::from(marker),
                        Cell::from(n.node_id.to_string()),
                        Cell::from(n.address.clone()),
                        Cell::from(role_name(n.role, n.healthy)),
                        Cell::from(n.term.to_string()),
                        Cell::from(n.last_log_index.to_string()),
                        Cell::from(n.applied_index.to_string()),
                        Cell::from(lag),
                        Cell::from(format!("{}ms", n.last_heartbeat_ms)),
                    ]);
                    if node_i == app.cluster_selected {
                        selected_row = Some(rows.len());
                    }
                    rows.push(if is_leader { row.style(BOLD) } else { row });
                    node_i += 1;
                }
                let widths = [
                    Constraint::Length(1),
                    Constraint::Length(3),
                    Constraint::Min(15),
                    Constraint::Length(9),
                    Constraint::Length(5),
                    Constraint::Length(7),
                    Constraint::Length(7),
                    Constraint::Length(5),
                    Constraint::Length(7),
                ];
                let header = Row::new(vec![
                    "", "ID", "ADDRESS", "ROLE", "TERM", "LOG", "APPLIED", "LAG", "HB",
                ])
                .style(BOLD.add_modifier(Modifier::UNDERLINED));
                let table = Table::new(rows, widths)
                    .header(header)
                    .row_highlight_style(SELECTED)
                    .highlight_symbol("▶")
                    .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
                let mut state = TableState::default().with_selected(selected_row);
                frame.render_stateful_widget(table, table_area, &mut state);
            }
        }
    }
    let lines: Vec<Line> = app
        .timeline
        .iter()
        .rev()
        .take(usize::from(timeline_h.saturating_sub(2)))
        .map(|e| Line::from(format!("{:>9}  {}", ago(now, e.at), e.text)))
        .collect();
    let text = if lines.is_empty() {
        Text::from("no changes seen yet")
    } else {
        Text::from(lines)
    };
    frame.render_widget(
        Paragraph::new(text).block(block("Timeline (newest first)".into())),
        timeline_area,
    );
}

fn store_label(app: &App) -> String {
    app.store.clone().unwrap_or_else(|| "-".into())
}

fn render_streams(frame: &mut Frame, area: Rect, app: &App, now: Millis) {
    match &app.streams.mode {
        StreamsMode::List => render_stream_list(frame, area, app, now),
        StreamsMode::Events {
            stream,
            from,
            selected,
            events,
        } => render_events(frame, area, app, now, stream, *from, *selected, events),
    }
}

/// The stores table's height for `stores` stores in a body of `height` rows.
fn stores_height(stores: usize, height: u16) -> u16 {
    let cap = if height >= 30 { 8 } else { 3 };
    3 + (stores.max(1) as u16).min(cap)
}

fn render_stores(frame: &mut Frame, area: Rect, app: &App, now: Millis) {
    let outer = block(format!(
        "Stores · s selects ({})",
        panel_state(&app.stats, now, app.refresh_ms)
    ));
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let stores = app.store_rows();
    if stores.is_empty() {
        placeholder(frame, inner, &app.cluster, "stores");
        return;
    }
    let rows: Vec<Row> = stores
        .iter()
        .map(|r| {
            Row::new(vec![
                Cell::from(r.store.clone()),
                Cell::from(r.events.map_or("-".into(), thousands)),
                Cell::from(r.append_rate.map_or("-".into(), |n| n.to_string())),
                Cell::from(r.leader.map_or("none".into(), |l| format!("node {l}"))),
            ])
        })
        .collect();
    let name_w = stores
        .iter()
        .map(|r| r.store.chars().count())
        .max()
        .unwrap_or(0);
    let widths = [
        Constraint::Length(name_w.clamp(12, 40) as u16),
        Constraint::Length(14),
        Constraint::Length(10),
        Constraint::Length(10),
    ];
    let header = Row::new(vec!["STORE", "EVENTS HELD", "APPEND/S", "LEADER"])
        .style(BOLD.add_modifier(Modifier::UNDERLINED));
    let selected = stores
        .iter()
        .position(|r| Some(&r.store) == app.store.as_ref());
    let table = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(BOLD)
        .highlight_symbol("▶")
        .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut state = TableState::default().with_selected(selected);
    frame.render_stateful_widget(table, inner, &mut state);
}

fn render_stream_list(frame: &mut Frame, area: Rect, app: &App, now: Millis) {
    let stores_h = stores_height(app.store_rows().len(), area.height);
    let [stores_area, area] =
        Layout::vertical([Constraint::Length(stores_h), Constraint::Min(4)]).areas(area);
    render_stores(frame, stores_area, app, now);
    let v = &app.streams;
    let filter = match (&v.query, v.editing_filter) {
        (_, true) => format!(" · narrowing /{}▏ Enter searches", v.filter),
        (Some(q), false) => format!(" · filtered server-side: \"{q}\""),
        (None, false) => String::new(),
    };
    let title = format!(
        "Streams of {}{filter} · page {} ({})",
        store_label(app),
        v.pages.len(),
        panel_state(&v.list, now, app.refresh_ms)
    );
    let mut hints = Vec::new();
    if v.pages.len() > 1 {
        hints.push("PgUp back");
    }
    if v.next_cursor().is_some() {
        if v.query.is_some() && v.list.data.as_ref().is_some_and(|p| p.streams.is_empty()) {
            hints.push("no match yet · PgDn searches on");
        } else {
            hints.push("PgDn more");
        }
    }
    let mut outer = block(title);
    if !hints.is_empty() {
        outer = outer.title_bottom(format!(" {} ", hints.join(" · ")));
    }
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    if app.store.is_none() {
        frame.render_widget(Paragraph::new("no store known yet"), inner);
        return;
    }
    let rows: Vec<Row> = v
        .rows()
        .into_iter()
        .map(|(id, version)| {
            let (id_cell, version) = match version {
                None if id == ALL_STREAM => (
                    Cell::from(Span::styled(format!("{id} (global log)"), BOLD)),
                    "-".to_string(),
                ),
                _ => (
                    Cell::from(id),
                    version.map_or("-".into(), |v| v.to_string()),
                ),
            };
            Row::new(vec![id_cell, Cell::from(version)])
        })
        .collect();
    let header = Row::new(vec!["STREAM", "VERSION"]).style(BOLD.add_modifier(Modifier::UNDERLINED));
    let table = Table::new(rows, [Constraint::Min(20), Constraint::Length(10)])
        .header(header)
        .row_highlight_style(SELECTED)
        .highlight_symbol("▶");
    let mut state = TableState::default().with_selected(Some(v.selected));
    frame.render_stateful_widget(table, inner, &mut state);
}

#[allow(clippy::too_many_arguments)]
fn render_events(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    now: Millis,
    stream: &str,
    from: u64,
    selected: usize,
    events: &Panel<Vec<reckon_gater::EventRecord>>,
) {
    let [list_area, detail_area] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
    let unit = if stream == ALL_STREAM {
        "position"
    } else {
        "version"
    };
    let title = format!(
        "{} / {stream} · from {unit} {from} ({})",
        store_label(app),
        panel_state(events, now, app.refresh_ms)
    );
    let outer = block(title);
    let inner = outer.inner(list_area);
    frame.render_widget(outer, list_area);
    let Some(list) = &events.data else {
        placeholder(frame, inner, events, "events");
        frame.render_widget(block("Event".into()), detail_area);
        return;
    };
    if list.is_empty() {
        frame.render_widget(Paragraph::new("no events on this page"), inner);
        frame.render_widget(block("Event".into()), detail_area);
        return;
    }
    let all = stream == ALL_STREAM;
    let rows: Vec<Row> = list
        .iter()
        .map(|e| {
            let mut cells = vec![
                Cell::from(e.version.to_string()),
                Cell::from(e.position.to_string()),
            ];
            if all {
                cells.push(Cell::from(e.stream_id.clone()));
            }
            cells.push(Cell::from(e.event_type.clone()));
            cells.push(Cell::from(utc(e.timestamp_us)));
            Row::new(cells)
        })
        .collect();
    let mut widths = vec![Constraint::Length(7), Constraint::Length(8)];
    let mut header = vec!["VER", "POS"];
    if all {
        widths.push(Constraint::Min(10));
        header.push("STREAM");
    }
    widths.push(Constraint::Min(10));
    widths.push(Constraint::Length(23));
    header.extend(["TYPE", "TIME (UTC)"]);
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(BOLD.add_modifier(Modifier::UNDERLINED)))
        .row_highlight_style(SELECTED)
        .highlight_symbol("▶");
    let mut state = TableState::default().with_selected(Some(selected));
    frame.render_stateful_widget(table, inner, &mut state);

    let Some(e) = list.get(selected) else {
        return;
    };
    let mut lines = vec![
        Line::from(vec![
            Span::styled("id ", BOLD),
            Span::raw(e.event_id.to_string()),
        ]),
        Line::from(Span::styled("data", BOLD)),
    ];
    lines.extend(
        pretty(&e.data)
            .lines()
            .map(|l| Line::from(format!("  {l}"))),
    );
    if !e.metadata.is_empty() {
        lines.push(Line::from(Span::styled("metadata", BOLD)));
        lines.extend(
            pretty(&e.metadata)
                .lines()
                .map(|l| Line::from(format!("  {l}"))),
        );
    }
    if !e.tags.is_empty() {
        lines.push(Line::from(vec![
            Span::styled("tags ", BOLD),
            Span::raw(e.tags.join(", ")),
        ]));
    }
    frame.render_widget(
        Paragraph::new(lines).block(block(format!(
            "{} v{} · {}",
            e.stream_id, e.version, e.event_type
        ))),
        detail_area,
    );
}

/// Bytes pretty-printed as JSON when they are JSON, else as text or a byte count.
pub fn pretty(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "(empty)".into();
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string()),
        Err(_) => match std::str::from_utf8(bytes) {
            Ok(s) => s.to_string(),
            Err(_) => format!("({} bytes, not UTF-8)", bytes.len()),
        },
    }
}

/// Microseconds since the epoch as `YYYY-MM-DD HH:MM:SS.mmm` UTC.
pub fn utc(us: u64) -> String {
    let secs = us / 1_000_000;
    let ms = (us % 1_000_000) / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{ms:03}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn render_subscriptions(frame: &mut Frame, area: Rect, app: &App, now: Millis) {
    let title = format!(
        "Subscriptions of {} · by lag ({})",
        store_label(app),
        panel_state(&app.subscriptions, now, app.refresh_ms)
    );
    let outer = block(title);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    if app.subscriptions.data.as_ref().is_none_or(Vec::is_empty) {
        placeholder(frame, inner, &app.subscriptions, "subscriptions");
        return;
    }
    let rows: Vec<Row> = app
        .sorted_subscriptions()
        .into_iter()
        .map(|s| {
            Row::new(vec![
                Cell::from(s.kind.as_str()),
                Cell::from(s.selector.clone()),
                Cell::from(s.name.clone()),
                Cell::from(s.checkpoint().map_or("-".into(), |c| c.to_string())),
                Cell::from(s.head.to_string()),
                Cell::from(s.lag().to_string()),
                Cell::from(format!("{}/{}", s.consumers, s.pool_size)),
                Cell::from(
                    app.deliveries
                        .per_sec
                        .get(&s.key)
                        .map_or("-".into(), |r| r.to_string()),
                ),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(13),
        Constraint::Min(10),
        Constraint::Min(10),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Length(7),
    ];
    let header = Row::new(vec![
        "TYPE", "SELECTOR", "NAME", "CHECKPT", "HEAD", "LAG", "CONS", "DELIV/S",
    ])
    .style(BOLD.add_modifier(Modifier::UNDERLINED));
    let table = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(SELECTED)
        .highlight_symbol("▶");
    let mut state = TableState::default().with_selected(Some(app.subs_selected));
    frame.render_stateful_widget(table, inner, &mut state);
}

/// Microseconds as `850µs`, `1.2ms`, `45ms`, `1.5s`; `-` for none.
pub fn fmt_us(us: Option<u64>) -> String {
    match us {
        None => "-".into(),
        Some(us) if us < 1_000 => format!("{us}µs"),
        Some(us) if us < 10_000 => format!("{}.{}ms", us / 1000, (us % 1000) / 100),
        Some(us) if us < 1_000_000 => format!("{}ms", us / 1000),
        Some(us) => format!("{}.{}s", us / 1_000_000, (us % 1_000_000) / 100_000),
    }
}

/// A count with thousands separated: `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The last sample and the largest of a series, as `now 12/s · max 40/s`.
fn now_and_max(samples: &std::collections::VecDeque<u64>, unit: &str) -> String {
    match samples.back() {
        None => "now -".into(),
        Some(last) => {
            let max = samples.iter().copied().max().unwrap_or(0);
            format!("now {last}{unit} · max {max}{unit}")
        }
    }
}

/// One labelled sparkline; the newest samples that fit, oldest on the left.
fn spark<T: Copy>(
    frame: &mut Frame,
    area: Rect,
    label: Line,
    samples: &std::collections::VecDeque<T>,
) where
    ratatui::widgets::SparklineBar: From<T>,
{
    let [label_area, spark_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    frame.render_widget(label, label_area);
    let width = usize::from(spark_area.width);
    let data: Vec<ratatui::widgets::SparklineBar> = samples
        .iter()
        .skip(samples.len().saturating_sub(width))
        .map(|v| (*v).into())
        .collect();
    frame.render_widget(Sparkline::default().data(data), spark_area);
}

/// Lines of a store's errors by kind: `Kind total (+in the last interval)`.
fn error_lines(t: &StoreTelemetry) -> Vec<String> {
    let mut kinds: Vec<&String> = t.errors_total.keys().collect();
    if let Some(iv) = &t.last {
        kinds.extend(iv.errors.keys());
    }
    kinds.sort();
    kinds.dedup();
    if kinds.is_empty() {
        return vec!["none".into()];
    }
    kinds
        .into_iter()
        .map(|k| {
            let total = t.errors_total.get(k).copied().unwrap_or(0);
            match &t.last {
                Some(iv) => format!("{k} {total} (+{})", iv.errors.get(k).copied().unwrap_or(0)),
                None => format!("{k} {total}"),
            }
        })
        .collect()
}

/// Each node's share of the last interval, for a tall terminal.
fn render_node_telemetry(
    frame: &mut Frame,
    area: Rect,
    stores: &[(&String, &StoreTelemetry)],
    state: &str,
) {
    let rows: Vec<Row> = stores
        .iter()
        .flat_map(|(store, t)| {
            t.nodes.iter().map(move |n| {
                let iv = n.last.as_ref();
                let rate = |f: fn(&Interval) -> u64| {
                    iv.map_or("-".into(), |iv| format!("{}/s", iv.per_sec(f(iv))))
                };
                let p99 = |f: fn(&Interval) -> &reckon_gater::metrics::HistogramSnapshot| {
                    fmt_us(iv.and_then(|iv| f(iv).quantile_us(0.99)))
                };
                let new_errors: u64 = iv.map_or(0, |iv| iv.errors.values().sum());
                let note = match (n.restarted, iv) {
                    (true, _) => "restarted: counters since its start",
                    (false, None) => "new: rates from the next refresh",
                    (false, Some(_)) => "",
                };
                let role = n.role.map_or("?", |r| r.as_str());
                let row = Row::new(vec![
                    Cell::from(store.to_string()),
                    Cell::from(n.node_id.to_string()),
                    Cell::from(role),
                    Cell::from(thousands(n.events)),
                    Cell::from(rate(|iv| iv.appended_events)),
                    Cell::from(rate(|iv| iv.read_events)),
                    Cell::from(p99(|iv| &iv.append_latency)),
                    Cell::from(p99(|iv| &iv.read_latency)),
                    Cell::from(format!("{} (+{new_errors})", n.errors)),
                    Cell::from(n.leader_changes.to_string()),
                    Cell::from(note),
                ]);
                if n.role == Some(reckon_gater::types::Role::Leader) {
                    row.style(BOLD)
                } else {
                    row
                }
            })
        })
        .collect();
    let widths = [
        Constraint::Length(12),
        Constraint::Length(5),
        Constraint::Length(9),
        Constraint::Length(12),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Min(10),
    ];
    let header = Row::new(vec![
        "STORE",
        "NODE",
        "ROLE",
        "EVENTS",
        "APPEND",
        "READ",
        "APP p99",
        "READ p99",
        "ERRORS",
        "ELECTIONS",
        "",
    ])
    .style(BOLD.add_modifier(Modifier::UNDERLINED));
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(block(format!("Per node, last interval ({state})"))),
        area,
    );
}

fn render_telemetry(frame: &mut Frame, area: Rect, app: &App, now: Millis) {
    let stores: Vec<(&String, &StoreTelemetry)> = app.telemetry.iter().collect();
    let errors: Vec<Vec<String>> = stores.iter().map(|(_, t)| error_lines(t)).collect();
    let table_h = 3 + errors.iter().map(|e| e.len() as u16).sum::<u16>().max(1);
    let cluster_stores = app.cluster.data.as_ref().map_or(0, |c| c.status.len()) as u16;
    let scavenges = stores.iter().filter(|(_, t)| t.scavenge.is_some()).count() as u16;
    let elections_h = 3 + cluster_stores.max(1) + scavenges;
    // A tall terminal also gets each node's share of the last interval.
    let node_rows: usize = stores.iter().map(|(_, t)| t.nodes.len()).sum();
    let nodes_h = if area.height >= 40 && node_rows > 0 {
        3 + node_rows as u16
    } else {
        0
    };
    let [rates_area, nodes_area, latency_area, elections_area] = Layout::vertical([
        Constraint::Min(6),
        Constraint::Length(nodes_h),
        Constraint::Length(table_h),
        Constraint::Length(elections_h),
    ])
    .areas(area);
    let stats_state = panel_state(&app.stats, now, app.refresh_ms);

    let outer = block(format!("Append and read rates, events/s ({stats_state})"));
    let inner = outer.inner(rates_area);
    frame.render_widget(outer, rates_area);
    if stores.is_empty() {
        placeholder(frame, inner, &app.stats, "node stats");
    } else {
        // A third column, the append p99 over time, when the terminal is wide.
        let columns = if inner.width >= 120 { 3 } else { 2 };
        let per = (inner.height / stores.len() as u16).max(2);
        let areas = Layout::vertical(vec![Constraint::Length(per); stores.len()]).split(inner);
        for ((store, t), a) in stores.iter().zip(areas.iter()) {
            let cols = Layout::horizontal(vec![Constraint::Ratio(1, columns); columns as usize])
                .spacing(2)
                .split(*a);
            let label = |what: &str, rest: String| {
                Line::from(vec![
                    Span::styled(format!("{store} {what} "), BOLD),
                    Span::raw(rest),
                ])
            };
            spark(
                frame,
                cols[0],
                label("append", now_and_max(&t.append_rate, "/s")),
                &t.append_rate,
            );
            spark(
                frame,
                cols[1],
                label("read", now_and_max(&t.read_rate, "/s")),
                &t.read_rate,
            );
            if columns == 3 {
                let last = t.append_p99.back().copied().flatten();
                let max = t.append_p99.iter().copied().flatten().max();
                spark(
                    frame,
                    cols[2],
                    label(
                        "append p99",
                        format!("now {} · max {}", fmt_us(last), fmt_us(max)),
                    ),
                    &t.append_p99,
                );
            }
        }
    }

    if nodes_h > 0 {
        render_node_telemetry(frame, nodes_area, &stores, &stats_state);
    }

    let interval = stores
        .iter()
        .find_map(|(_, t)| t.last.as_ref())
        .map_or("(after a second refresh)".to_string(), |iv| {
            format!("{}.{}s", iv.ms / 1000, (iv.ms % 1000) / 100)
        });
    let outer = block(format!(
        "Latency over the last {interval} · errors since start (+last)"
    ));
    let inner = outer.inner(latency_area);
    frame.render_widget(outer, latency_area);
    if stores.is_empty() {
        placeholder(frame, inner, &app.stats, "node stats");
    } else {
        let rows: Vec<Row> = stores
            .iter()
            .zip(&errors)
            .map(|((store, t), errs)| {
                let q = |h: Option<&reckon_gater::metrics::HistogramSnapshot>, q: f64| {
                    fmt_us(h.and_then(|h| h.quantile_us(q)))
                };
                let app_h = t.last.as_ref().map(|iv| &iv.append_latency);
                let read_h = t.last.as_ref().map(|iv| &iv.read_latency);
                Row::new(vec![
                    Cell::from(Span::styled(store.to_string(), BOLD)),
                    Cell::from(q(app_h, 0.5)),
                    Cell::from(q(app_h, 0.99)),
                    Cell::from(q(read_h, 0.5)),
                    Cell::from(q(read_h, 0.99)),
                    Cell::from(Text::from(
                        errs.iter()
                            .map(|e| Line::from(e.clone()))
                            .collect::<Vec<_>>(),
                    )),
                ])
                .height(errs.len() as u16)
            })
            .collect();
        let name_w = stores
            .iter()
            .map(|(s, _)| s.chars().count())
            .max()
            .unwrap_or(0);
        let widths = [
            Constraint::Length(name_w.clamp(5, 20) as u16),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Min(20),
        ];
        let header = Row::new(vec![
            "STORE",
            "APP p50",
            "APP p99",
            "READ p50",
            "READ p99",
            "ERRORS BY KIND",
        ])
        .style(BOLD.add_modifier(Modifier::UNDERLINED));
        frame.render_widget(Table::new(rows, widths).header(header), inner);
    }

    let mut lines = Vec::new();
    if let Some(c) = &app.cluster.data {
        for s in &c.status {
            let per_node: Vec<String> = s
                .nodes
                .iter()
                .map(|n| format!("n{}:{}", n.node_id, n.leader_changes))
                .collect();
            lines.push(Line::from(vec![
                Span::styled(format!("{} ", s.store), BOLD),
                Span::raw(format!(
                    "term {} · changes seen by node {}",
                    s.term,
                    per_node.join(" ")
                )),
            ]));
        }
        lines.push(Line::from(format!(
            "leases expired since gater start: {}",
            c.health.leases_expired
        )));
    }
    for (store, t) in &app.telemetry {
        let Some(sc) = &t.scavenge else { continue };
        let phase = match sc.phase {
            ScavengePhase::Running => "running",
            ScavengePhase::Stopped => "stopped",
            ScavengePhase::Done => "done",
            ScavengePhase::Never => continue,
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{store} "), BOLD),
            Span::raw(format!(
                "scavenge {phase} {:.0}% · removed {} events ({}) · {} given back",
                sc.progress() * 100.0,
                sc.removed_events,
                human_bytes(sc.removed_bytes),
                human_bytes(sc.reclaimed_bytes)
            )),
        ]));
    }
    let outer = block(format!(
        "Leader elections, scavenges ({})",
        panel_state(&app.cluster, now, app.refresh_ms)
    ));
    let inner = outer.inner(elections_area);
    frame.render_widget(outer, elections_area);
    if lines.is_empty() {
        placeholder(frame, inner, &app.cluster, "cluster status");
    } else {
        frame.render_widget(Paragraph::new(lines), inner);
    }
}

fn render_status(frame: &mut Frame, area: Rect, app: &App, now: Millis) {
    let conn = match &app.connection {
        Connection::Connecting => Span::styled("… connecting", BOLD),
        Connection::Connected => Span::styled("● connected", BOLD),
        Connection::Disconnected(e) => Span::styled(
            format!("✖ DISCONNECTED, retrying ({e})"),
            BOLD.add_modifier(Modifier::REVERSED),
        ),
    };
    let mut spans = vec![
        conn,
        Span::raw(format!(
            " {} · store {} (s)",
            app.gaters.join(","),
            store_label(app)
        )),
    ];
    if let Some(who) = app.access_label() {
        spans.push(Span::raw(format!(" · {who}")));
    }
    if let Some((_, text)) = &app.flash {
        spans.push(Span::raw(" · "));
        spans.push(Span::styled(text.clone(), BOLD));
    } else {
        spans.push(Span::raw(" · ? keys · q quit"));
    }
    let _ = now;
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn render_confirm(frame: &mut Frame, area: Rect, prompt: &str) {
    let a = centered(area, 60, 6);
    frame.render_widget(Clear, a);
    let text = vec![
        Line::from(prompt.to_string()),
        Line::from(""),
        Line::from(Span::styled("[y] yes    [n] no", BOLD)),
    ];
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .block(block("Confirm".into())),
        a,
    );
}

/// The key map shown by `?`.
pub const KEYS: &[(&str, &str)] = &[
    ("1-4, Tab", "switch view"),
    ("↑↓ / j k", "move"),
    ("s", "next store"),
    ("r", "refresh now"),
    ("/", "filter (Enter: server-side, Esc: clear)"),
    ("Enter", "open stream events"),
    ("Esc", "back to stream list"),
    ("PgUp/PgDn", "previous / next page"),
    ("d / D", "soft / hard delete stream"),
    ("a", "append a test event"),
    ("x", "remove subscription"),
    ("R", "remove node (cluster view)"),
    ("L", "make the node leader (cluster view)"),
    ("?", "this help"),
    ("q", "quit"),
];

/// The keys of [`KEYS`] the console's principal may use on the selected store
/// (actions it may not do are not offered).
pub fn offered_keys(app: &App) -> Vec<(&'static str, &'static str)> {
    let store = app.store.as_deref().unwrap_or("");
    KEYS.iter()
        .copied()
        .filter(|(k, _)| match *k {
            "a" => app.may(store, Permission::Write),
            "d / D" | "x" => app.may(store, Permission::Admin),
            // The cluster view acts on the selected node's store.
            "R" | "L" => app
                .access
                .as_ref()
                .is_none_or(|p| p.holds_anywhere(Permission::Admin)),
            _ => true,
        })
        .collect()
}

fn render_help(frame: &mut Frame, area: Rect, app: &App) {
    let keys = offered_keys(app);
    let a = centered(area, 58, keys.len() as u16 + 2);
    frame.render_widget(Clear, a);
    let lines: Vec<Line> = keys
        .iter()
        .map(|(k, d)| {
            Line::from(vec![
                Span::styled(format!("{k:>10}  "), BOLD),
                Span::raw(*d),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(block("Keys (any key closes)".into())),
        a,
    );
}
