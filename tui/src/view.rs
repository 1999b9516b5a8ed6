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

use crate::app::{
    role_name, App, Connection, Loading, Millis, Panel, StreamsMode, Tab, ALL_STREAM,
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
        render_help(frame, body);
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

fn render_stream_list(frame: &mut Frame, area: Rect, app: &App, now: Millis) {
    let v = &app.streams;
    let filter = if v.editing_filter {
        format!(" · filter /{}▏", v.filter)
    } else if !v.filter.is_empty() {
        format!(" · filter /{}", v.filter)
    } else {
        String::new()
    };
    let title = format!(
        "Streams of {} · page {}{filter} ({})",
        store_label(app),
        v.pages.len(),
        panel_state(&v.list, now, app.refresh_ms)
    );
    let outer = block(title);
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
    ];
    let header = Row::new(vec![
        "TYPE", "SELECTOR", "NAME", "CHECKPT", "HEAD", "LAG", "CONS",
    ])
    .style(BOLD.add_modifier(Modifier::UNDERLINED));
    let table = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(SELECTED)
        .highlight_symbol("▶");
    let mut state = TableState::default().with_selected(Some(app.subs_selected));
    frame.render_stateful_widget(table, inner, &mut state);
}

fn render_telemetry(frame: &mut Frame, area: Rect, app: &App, now: Millis) {
    let title = format!(
        "Append rate per store, events/s ({})",
        panel_state(&app.cluster, now, app.refresh_ms)
    );
    let stores: Vec<_> = app.rates.iter().collect();
    let [rates_area, changes_area] =
        Layout::vertical([Constraint::Min(4), Constraint::Length(7)]).areas(area);
    let outer = block(title);
    let inner = outer.inner(rates_area);
    frame.render_widget(outer, rates_area);
    if stores.is_empty() {
        placeholder(frame, inner, &app.cluster, "rates");
    } else {
        let per = (inner.height / stores.len() as u16).max(2);
        let areas = Layout::vertical(vec![Constraint::Length(per); stores.len()]).split(inner);
        for ((store, rates), a) in stores.iter().zip(areas.iter()) {
            let last = rates.samples.back().copied().unwrap_or(0);
            let max = rates.samples.iter().copied().max().unwrap_or(0);
            let [label, spark] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(*a);
            frame.render_widget(
                Line::from(vec![
                    Span::styled(store.to_string(), BOLD),
                    Span::raw(format!("  now {last}/s · max {max}/s")),
                ]),
                label,
            );
            let width = usize::from(spark.width);
            let data: Vec<u64> = rates
                .samples
                .iter()
                .skip(rates.samples.len().saturating_sub(width))
                .copied()
                .collect();
            frame.render_widget(Sparkline::default().data(data), spark);
        }
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
                    "term {} · changes seen {}",
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
    frame.render_widget(
        Paragraph::new(lines).block(block("Leader changes".into())),
        changes_area,
    );
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
    ("/", "filter streams (Enter keeps, Esc clears)"),
    ("Enter", "open stream events"),
    ("Esc", "back to stream list"),
    ("PgUp/PgDn", "previous / next page"),
    ("d / D", "soft / hard delete stream"),
    ("a", "append a test event"),
    ("x", "remove subscription"),
    ("R", "remove node (cluster view)"),
    ("?", "this help"),
    ("q", "quit"),
];

fn render_help(frame: &mut Frame, area: Rect) {
    let a = centered(area, 58, KEYS.len() as u16 + 2);
    frame.render_widget(Clear, a);
    let lines: Vec<Line> = KEYS
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
