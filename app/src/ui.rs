//! Small pieces every page uses: times (relative and absolute), countdowns, errors, loading
//! states, and the readable rendering of an agent's JSON.
//!
//! Everything an agent sent is rendered as text nodes, never as HTML: Leptos escapes text, and
//! nothing here uses `inner_html`.

use leptos::prelude::*;
use serde_json::Value;

use crate::api::{AppError, Risk};

/// Unix milliseconds now, on whichever side we run.
pub fn now_ms() -> i64 {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Date::now() as i64
    }
    #[cfg(not(feature = "hydrate"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default()
    }
}

/// A clock signal that ticks every second in the browser (and stays at render time on the
/// server). Provided once by the app; countdowns and relative times read it.
#[derive(Debug, Clone, Copy)]
pub struct Now(pub RwSignal<i64>);

/// Starts the ticking clock and provides it.
pub fn provide_clock() {
    let now = RwSignal::new(now_ms());
    provide_context(Now(now));
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        let handle =
            set_interval_with_handle(move || now.set(now_ms()), std::time::Duration::from_secs(1));
        on_cleanup(move || {
            if let Ok(h) = handle {
                h.clear();
            }
        });
    });
}

fn clock() -> RwSignal<i64> {
    use_context::<Now>()
        .map(|n| n.0)
        .unwrap_or_else(|| RwSignal::new(now_ms()))
}

/// `2026-11-23 14:05 UTC`.
pub fn absolute(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// "3 min ago", "in 2 h", "just now".
pub fn relative(ms: i64, now: i64) -> String {
    let delta = (ms - now) / 1000;
    let abs = delta.abs();
    let amount = if abs < 45 {
        return "just now".into();
    } else if abs < 3600 {
        format!("{} min", (abs + 30) / 60)
    } else if abs < 86_400 {
        format!("{} h", (abs + 1800) / 3600)
    } else {
        format!("{} d", (abs + 43_200) / 86_400)
    };
    if delta < 0 {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// "4:59" until a deadline (or "expired").
pub fn countdown(deadline: i64, now: i64) -> String {
    // Rounded up: with 0.4 s left it still says 0:01, so "expired" never shows early.
    let left = (deadline - now + 999).div_euclid(1000);
    if left <= 0 {
        "expired".into()
    } else if left >= 3600 {
        format!("{}:{:02}:{:02}", left / 3600, (left % 3600) / 60, left % 60)
    } else {
        format!("{}:{:02}", left / 60, left % 60)
    }
}

/// A time shown both ways: relative in the text, absolute on hover and for screen readers.
#[component]
pub fn When(ms: i64) -> impl IntoView {
    let now = clock();
    view! {
        <time datetime=absolute(ms) title=absolute(ms)>
            {move || relative(ms, now.get())}
            <span class="abs">" (" {absolute(ms)} ")"</span>
        </time>
    }
}

/// A live countdown to expiry.
#[component]
pub fn Countdown(deadline: i64) -> impl IntoView {
    let now = clock();
    view! {
        <span
            class="countdown"
            class:urgent=move || deadline - now.get() < 60_000
            title=format!("Expires {}", absolute(deadline))
        >
            {move || countdown(deadline, now.get())}
        </span>
    }
}

/// A failure, in words a person can act on.
#[component]
pub fn ErrorBox(error: AppError) -> impl IntoView {
    let (title, hint) = match &error {
        AppError::SignInRequired => ("Please sign in", None),
        AppError::Forbidden(_) => ("Not allowed", None),
        AppError::NotFound(_) => ("Not found", None),
        AppError::Invalid { .. } => ("Please check the form", None),
        AppError::Conflict(_) => ("This changed meanwhile", Some("Reload to see the latest.")),
        AppError::Expired(_) => ("Too late", None),
        AppError::RateLimited(_) => ("Too many at once", Some("Wait a moment and try again.")),
        AppError::Server(_) => ("Something went wrong", Some("Try again in a moment.")),
    };
    view! {
        <div class="error" role="alert">
            <strong>{title}</strong>
            " "
            <span>{error.to_string()}</span>
            {hint.map(|h| view! { " " <span class="hint">{h}</span> })}
            {matches!(error, AppError::SignInRequired)
                .then(|| view! { " " <a href="/sign-in">"Sign in"</a> })}
        </div>
    }
}

/// What shows while data loads.
#[component]
pub fn Loading() -> impl IntoView {
    view! { <p class="loading" aria-live="polite">"Loading…"</p> }
}

/// Risk highlights, most serious first.
#[component]
pub fn Risks(risks: Vec<Risk>) -> impl IntoView {
    (!risks.is_empty()).then(|| {
        view! {
            <ul class="risks" aria-label="Risks">
                {risks
                    .into_iter()
                    .map(|r| {
                        let class = format!("risk {}", r.level);
                        view! { <li class=class>{r.text}</li> }
                    })
                    .collect_view()}
            </ul>
        }
    })
}

/// Any JSON value as a readable table: objects as key/value rows, arrays numbered, nested
/// values indented, long strings wrapped. All as text.
#[component]
pub fn ValueTable(value: Value) -> impl IntoView {
    render_value(value, 0)
}

fn render_value(value: Value, depth: usize) -> AnyView {
    match value {
        Value::Object(map) if !map.is_empty() => {
            let nested = depth > 0;
            view! {
                <table class="kv" class:nested=nested>
                    <tbody>
                        {map
                            .into_iter()
                            .map(|(k, v)| {
                                view! {
                                    <tr>
                                        <th scope="row">{k}</th>
                                        <td>{render_value(v, depth + 1)}</td>
                                    </tr>
                                }
                            })
                            .collect_view()}
                    </tbody>
                </table>
            }
            .into_any()
        }
        Value::Array(items) if !items.is_empty() => view! {
            <ol class="items">
                {items
                    .into_iter()
                    .map(|v| view! { <li>{render_value(v, depth + 1)}</li> })
                    .collect_view()}
            </ol>
        }
        .into_any(),
        Value::String(s) => view! { <span class="str">{s}</span> }.into_any(),
        Value::Null => view! { <span class="none">"null"</span> }.into_any(),
        Value::Object(_) => view! { <span class="none">"(empty)"</span> }.into_any(),
        Value::Array(_) => view! { <span class="none">"(none)"</span> }.into_any(),
        other => view! { <span class="scalar">{other.to_string()}</span> }.into_any(),
    }
}

/// The text of a string field of a JSON object, or "".
pub fn text_at(value: &Value, path: &[&str]) -> String {
    let mut v = value;
    for key in path {
        match v.get(key) {
            Some(next) => v = next,
            None => return String::new(),
        }
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_time_is_utc_calendar_time() {
        assert_eq!(absolute(0), "1970-01-01 00:00 UTC");
        // 2026-11-23T01:02:03Z
        assert_eq!(absolute(1_795_395_723_000), "2026-11-23 01:02 UTC");
        // A leap day.
        assert_eq!(absolute(951_782_400_000), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn relative_time_reads_naturally() {
        let now = 1_000_000_000;
        assert_eq!(relative(now - 10_000, now), "just now");
        assert_eq!(relative(now - 180_000, now), "3 min ago");
        assert_eq!(relative(now + 7_200_000, now), "in 2 h");
        assert_eq!(relative(now - 3 * 86_400_000, now), "3 d ago");
    }

    #[test]
    fn countdown_shows_minutes_and_seconds_then_expired() {
        assert_eq!(countdown(299_000, 0), "4:59");
        assert_eq!(countdown(3_723_000, 0), "1:02:03");
        assert_eq!(countdown(0, 0), "expired");
        assert_eq!(countdown(400, 0), "0:01", "never expired early");
        assert_eq!(countdown(1_000, 1_001), "expired");
    }

    #[test]
    fn text_at_follows_a_path() {
        let v = serde_json::json!({"a": {"b": "c", "n": 5}});
        assert_eq!(text_at(&v, &["a", "b"]), "c");
        assert_eq!(text_at(&v, &["a", "n"]), "5");
        assert_eq!(text_at(&v, &["a", "x"]), "");
    }
}
