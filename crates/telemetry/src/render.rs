use std::fmt::Write;

use crate::{HistogramSnapshot, Snapshot};

/// Prometheus text exposition format (version 0.0.4).
pub fn render_prometheus(s: &Snapshot) -> String {
    let mut o = String::with_capacity(4096);
    let role = s.role;
    let gauge = |o: &mut String, name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(o, "# HELP cocoon_{name} {help}");
        let _ = writeln!(o, "# TYPE cocoon_{name} {kind}");
        let _ = writeln!(o, "cocoon_{name}{{role=\"{role}\"}} {value}");
    };
    gauge(
        &mut o,
        "uptime_seconds",
        "gauge",
        "Seconds since start.",
        s.uptime_seconds.to_string(),
    );
    gauge(
        &mut o,
        "requests_active",
        "gauge",
        "Requests in flight.",
        s.requests.active.to_string(),
    );
    gauge(
        &mut o,
        "requests_total",
        "counter",
        "Requests started.",
        s.requests.total.to_string(),
    );
    gauge(
        &mut o,
        "requests_succeeded_total",
        "counter",
        "Requests answered in full.",
        s.requests.succeeded.to_string(),
    );
    gauge(
        &mut o,
        "requests_failed_total",
        "counter",
        "Requests that failed.",
        s.requests.failed.to_string(),
    );

    let _ = writeln!(o, "# HELP cocoon_tokens_total Tokens served, by kind.");
    let _ = writeln!(o, "# TYPE cocoon_tokens_total counter");
    for (kind, v) in [
        ("prompt", s.tokens.prompt),
        ("cached", s.tokens.cached),
        ("completion", s.tokens.completion),
        ("reasoning", s.tokens.reasoning),
    ] {
        let _ = writeln!(
            o,
            "cocoon_tokens_total{{role=\"{role}\",kind=\"{kind}\"}} {v}"
        );
    }

    let _ = writeln!(o, "# HELP cocoon_errors_total Failed requests, by reason.");
    let _ = writeln!(o, "# TYPE cocoon_errors_total counter");
    for (reason, v) in &s.errors {
        let _ = writeln!(
            o,
            "cocoon_errors_total{{role=\"{role}\",reason=\"{}\"}} {v}",
            escape(reason)
        );
    }

    let _ = writeln!(
        o,
        "# HELP cocoon_peers_refused_total Peers refused at the handshake, by failed attestation check."
    );
    let _ = writeln!(o, "# TYPE cocoon_peers_refused_total counter");
    for (check, v) in &s.peers_refused {
        let _ = writeln!(
            o,
            "cocoon_peers_refused_total{{role=\"{role}\",check=\"{}\"}} {v}",
            escape(check)
        );
    }

    histogram(
        &mut o,
        role,
        "request_duration_seconds",
        "Whole-request latency.",
        &s.latency,
    );
    histogram(
        &mut o,
        role,
        "time_to_first_byte_seconds",
        "Time to first answer byte.",
        &s.time_to_first_byte,
    );

    if let Some(q) = &s.queue {
        queue_prometheus(&mut o, role, q);
    }

    type Field = fn(&crate::WorkerLoad) -> String;
    let families: [(&str, &str, &str, Field); 6] = [
        (
            "worker_running",
            "gauge",
            "Requests running on a worker.",
            |w| w.running.to_string(),
        ),
        ("worker_max_active", "gauge", "Capacity of a worker.", |w| {
            w.max_active.to_string()
        }),
        (
            "worker_coefficient",
            "gauge",
            "Price coefficient of a worker, per-mille.",
            |w| w.coefficient.to_string(),
        ),
        (
            "worker_requests_total",
            "counter",
            "Requests sent to a worker.",
            |w| w.total.to_string(),
        ),
        (
            "worker_avg_latency_seconds",
            "gauge",
            "Moving average of request duration on a worker.",
            |w| (w.avg_latency_ms / 1000.0).to_string(),
        ),
        (
            "worker_avg_time_to_first_byte_seconds",
            "gauge",
            "Moving average of the time to an answer's first byte on a worker.",
            |w| (w.avg_ttft_ms / 1000.0).to_string(),
        ),
    ];
    if !s.workers.is_empty() {
        for (name, kind, help, value) in families {
            let _ = writeln!(o, "# HELP cocoon_{name} {help}");
            let _ = writeln!(o, "# TYPE cocoon_{name} {kind}");
            for w in &s.workers {
                let _ = writeln!(
                    o,
                    "cocoon_{name}{{role=\"{role}\",worker=\"{}\",model=\"{}\"}} {}",
                    escape(&w.id),
                    escape(&w.model),
                    value(w)
                );
            }
        }
    }
    series_prometheus(&mut o, role, &s.series);
    o
}

/// A node's own labelled families.
fn series_prometheus(o: &mut String, role: &str, series: &[crate::Series]) {
    for f in series.iter().filter(|f| !f.samples.is_empty()) {
        let _ = writeln!(o, "# HELP cocoon_{} {}", f.name, f.help);
        let _ = writeln!(o, "# TYPE cocoon_{} {}", f.name, f.kind);
        for (labels, value) in &f.samples {
            let mut l = format!("role=\"{role}\"");
            for (k, v) in labels {
                let _ = write!(l, ",{k}=\"{}\"", escape(v));
            }
            let _ = writeln!(o, "cocoon_{}{{{l}}} {value}", f.name);
        }
    }
}

fn histogram(o: &mut String, role: &str, name: &str, help: &str, h: &HistogramSnapshot) {
    let _ = writeln!(o, "# HELP cocoon_{name} {help}");
    let _ = writeln!(o, "# TYPE cocoon_{name} histogram");
    for (bound_ms, count) in &h.buckets {
        let le = if bound_ms.is_infinite() {
            "+Inf".to_string()
        } else {
            format!("{}", bound_ms / 1000.0)
        };
        let _ = writeln!(
            o,
            "cocoon_{name}_bucket{{role=\"{role}\",le=\"{le}\"}} {count}"
        );
    }
    let _ = writeln!(o, "cocoon_{name}_sum{{role=\"{role}\"}} {}", h.sum_seconds);
    let _ = writeln!(o, "cocoon_{name}_count{{role=\"{role}\"}} {}", h.count);
}

fn queue_prometheus(o: &mut String, role: &str, q: &crate::QueueStats) {
    let _ = writeln!(
        o,
        "# HELP cocoon_queue_waiting Requests waiting for a worker slot, by model."
    );
    let _ = writeln!(o, "# TYPE cocoon_queue_waiting gauge");
    for (model, n) in &q.waiting {
        let _ = writeln!(
            o,
            "cocoon_queue_waiting{{role=\"{role}\",model=\"{}\"}} {n}",
            escape(model)
        );
    }
    let _ = writeln!(
        o,
        "# HELP cocoon_queue_max_waiting Most requests that may wait per model."
    );
    let _ = writeln!(o, "# TYPE cocoon_queue_max_waiting gauge");
    let _ = writeln!(
        o,
        "cocoon_queue_max_waiting{{role=\"{role}\"}} {}",
        q.max_waiting
    );
    let _ = writeln!(
        o,
        "# HELP cocoon_queue_ended_total Waits for a worker slot, by how they ended."
    );
    let _ = writeln!(o, "# TYPE cocoon_queue_ended_total counter");
    for (outcome, n) in [
        ("admitted", q.admitted),
        ("timed_out", q.timed_out),
        ("cancelled", q.cancelled),
        ("refused_full", q.refused_full),
    ] {
        let _ = writeln!(
            o,
            "cocoon_queue_ended_total{{role=\"{role}\",outcome=\"{outcome}\"}} {n}"
        );
    }
    histogram(
        o,
        role,
        "queue_wait_seconds",
        "Time requests waited for a worker slot.",
        &q.wait,
    );
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes `value` as indented `key: value` lines under `indent`; array
/// members are numbered from 1.
fn render_detail(o: &mut String, indent: usize, value: &serde_json::Value) {
    use serde_json::Value;
    let members: Vec<(String, &Value)> = match value {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{}", i + 1), v))
            .collect(),
        _ => return,
    };
    for (key, v) in members {
        let pad = "  ".repeat(indent);
        match v {
            Value::Object(m) if m.is_empty() => {}
            Value::Array(a) if a.is_empty() => {}
            Value::Object(_) | Value::Array(_) => {
                let _ = writeln!(o, "{pad}{key}:");
                render_detail(o, indent + 1, v);
            }
            Value::String(text) => {
                let _ = writeln!(o, "{pad}{key}: {text}");
            }
            Value::Null => {}
            other => {
                let _ = writeln!(o, "{pad}{key}: {other}");
            }
        }
    }
}

/// A plain-text page for people.
pub fn render_human(s: &Snapshot) -> String {
    let mut o = String::with_capacity(2048);
    let _ = writeln!(o, "cocoon {} {} — up {}s", s.role, s.node, s.uptime_seconds);
    for (k, v) in &s.info {
        let _ = writeln!(o, "  {k}: {v}");
    }
    let r = &s.requests;
    let _ = writeln!(
        o,
        "\nrequests: {} active, {} total, {} succeeded, {} failed",
        r.active, r.total, r.succeeded, r.failed
    );
    let t = &s.tokens;
    let _ = writeln!(
        o,
        "tokens:   {} prompt ({} cached), {} completion ({} reasoning)",
        t.prompt, t.cached, t.completion, t.reasoning
    );
    let _ = writeln!(
        o,
        "latency:  p50 ≤ {} ms, p99 ≤ {} ms over {} requests; first byte p50 ≤ {} ms",
        s.latency.p50_ms, s.latency.p99_ms, s.latency.count, s.time_to_first_byte.p50_ms
    );
    if s.errors.is_empty() {
        let _ = writeln!(o, "errors:   none");
    } else {
        let _ = writeln!(o, "errors:");
        for (reason, n) in &s.errors {
            let _ = writeln!(o, "  {reason:<24} {n}");
        }
    }
    if !s.peers_refused.is_empty() {
        let _ = writeln!(o, "peers refused:");
        for (check, n) in &s.peers_refused {
            let _ = writeln!(o, "  {check:<24} {n}");
        }
    }
    if let Some(q) = &s.queue {
        let waiting: u64 = q.waiting.values().sum();
        let _ = writeln!(
            o,
            "queue:    {waiting} waiting (at most {} per model); {} admitted after waiting (p50 ≤ {} ms, p99 ≤ {} ms), {} timed out, {} cancelled, {} refused as full",
            q.max_waiting, q.admitted, q.wait.p50_ms, q.wait.p99_ms, q.timed_out, q.cancelled, q.refused_full
        );
        for (model, n) in &q.waiting {
            let _ = writeln!(o, "  {model:<24} {n} waiting");
        }
    }
    if !s.workers.is_empty() {
        let _ = writeln!(
            o,
            "\n{:<24} {:<28} {:>6} {:>9} {:>8} {:>7} {:>10} {:>10}",
            "worker", "model", "coef", "running", "total", "failed", "avg ms", "ttft ms"
        );
        for w in &s.workers {
            let _ = writeln!(
                o,
                "{:<24} {:<28} {:>6} {:>4}/{:<4} {:>8} {:>7} {:>10.1} {:>10.1}",
                w.id,
                w.model,
                w.coefficient,
                w.running,
                w.max_active,
                w.total,
                w.failed,
                w.avg_latency_ms,
                w.avg_ttft_ms
            );
            if !w.identity.is_empty() {
                let _ = writeln!(o, "  └ {}", w.identity);
            }
        }
    }
    if !s.detail.is_null() {
        o.push('\n');
        render_detail(&mut o, 0, &s.detail);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;

    fn sample() -> Snapshot {
        Snapshot {
            role: "proxy",
            node: "p1".into(),
            uptime_seconds: 5,
            requests: RequestCounts {
                active: 1,
                total: 3,
                succeeded: 1,
                failed: 1,
            },
            tokens: TokenCounts {
                prompt: 10,
                cached: 2,
                completion: 20,
                reasoning: 0,
            },
            errors: [("worker_lost".to_string(), 1)].into_iter().collect(),
            peers_refused: [("image_hash".to_string(), 2)].into_iter().collect(),
            latency: Histogram::default().snapshot(),
            time_to_first_byte: Histogram::default().snapshot(),
            workers: vec![WorkerLoad {
                id: "w\"1".into(),
                identity: String::new(),
                model: "m".into(),
                coefficient: 1000,
                running: 1,
                max_active: 4,
                total: 3,
                failed: 0,
                avg_latency_ms: 12.5,
                avg_ttft_ms: 2.5,
            }],
            info: Default::default(),
            queue: None,
            detail: serde_json::Value::Null,
            series: Vec::new(),
        }
    }

    #[test]
    fn typed_figures_are_numbers_in_json_and_lines_on_the_page() {
        #[derive(serde::Serialize)]
        struct Record {
            identity: &'static str,
            agreed: u64,
        }
        let s = sample().with_detail(&serde_json::json!({
            "workers": [Record { identity: "key:ab", agreed: 3 }],
            "empty": [],
        }));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["detail"]["workers"][0]["agreed"], 3);
        let page = render_human(&s);
        // Members keep the order serde_json gives them (sorted, or as
        // declared when another crate asks it to preserve order).
        assert!(page.contains("workers:\n  1:\n"), "{page}");
        assert!(page.contains("\n    agreed: 3\n"), "{page}");
        assert!(page.contains("\n    identity: key:ab\n"), "{page}");
        assert!(!page.contains("empty"), "{page}");
    }

    #[test]
    fn prometheus_has_every_family() {
        let text = render_prometheus(&sample());
        for needle in [
            "cocoon_requests_active{role=\"proxy\"} 1",
            "cocoon_requests_total{role=\"proxy\"} 3",
            "cocoon_tokens_total{role=\"proxy\",kind=\"completion\"} 20",
            "cocoon_errors_total{role=\"proxy\",reason=\"worker_lost\"} 1",
            "cocoon_peers_refused_total{role=\"proxy\",check=\"image_hash\"} 2",
            "cocoon_request_duration_seconds_bucket{role=\"proxy\",le=\"+Inf\"} 0",
            "cocoon_worker_running{role=\"proxy\",worker=\"w\\\"1\",model=\"m\"} 1",
            "cocoon_worker_avg_latency_seconds{role=\"proxy\",worker=\"w\\\"1\",model=\"m\"} 0.0125",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn the_queue_is_on_both_pages() {
        let wait = Histogram::default();
        wait.observe(std::time::Duration::from_millis(30));
        let s = sample().with_queue(QueueStats {
            max_waiting: 1024,
            waiting: [("m".to_string(), 7)].into_iter().collect(),
            admitted: 5,
            refused_full: 2,
            timed_out: 1,
            cancelled: 0,
            wait: wait.snapshot(),
        });
        let text = render_prometheus(&s);
        for needle in [
            "cocoon_queue_waiting{role=\"proxy\",model=\"m\"} 7",
            "cocoon_queue_max_waiting{role=\"proxy\"} 1024",
            "cocoon_queue_ended_total{role=\"proxy\",outcome=\"refused_full\"} 2",
            "cocoon_queue_wait_seconds_count{role=\"proxy\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        let human = render_human(&s);
        assert!(
            human.contains("7 waiting (at most 1024 per model)"),
            "{human}"
        );
        assert!(human.contains("2 refused as full"), "{human}");
        assert!(!render_prometheus(&sample()).contains("cocoon_queue"));
    }

    #[test]
    fn human_page_names_workers_and_errors() {
        let text = render_human(&sample());
        assert!(text.contains("worker_lost"));
        assert!(text.contains("image_hash"));
        assert!(text.contains("1 active, 3 total"));
        assert!(text.contains("12.5"));
    }
}
