//! Outgoing mail: approval requests to the people who may decide them, invitations to the people
//! invited. This module owns the queue and the SMTP conversation; what a mail says is the
//! services' business (`service::notify`).
//!
//! Mail is a courtesy, never a step a request depends on. So:
//!
//! - **Enqueueing never blocks and never fails the caller.** [`Mailer::enqueue`] puts the mail on
//!   an in-process queue and returns. When too many mails are outstanding (a relay down for a
//!   long time while requests keep coming) the newest is dropped with a warning rather than
//!   letting memory grow without bound: the request is still in the approver's inbox.
//! - **One background task drains the queue.** It hands each mail to a delivery task of its own,
//!   at most [`MAX_CONCURRENT_SENDS`] talking to the relay at once, so a mail waiting to be
//!   retried never holds up the ones behind it.
//! - **Failures are retried and logged.** A mail the relay did not take is tried again after
//!   each of `COUNTERSIGN_MAIL_RETRY_DELAYS` (1 s, 5 s, 30 s, 2 min, 10 min by default); every
//!   failed attempt is a `warn` with the error and the recipient (never the body), and the
//!   outcome is counted in `/metrics`. A permanent refusal (an SMTP 5xx: unknown mailbox, bad
//!   credentials) is not retried: trying again would not change the answer.
//! - **Without `COUNTERSIGN_SMTP_URL` mail goes to the log**: recipient and subject at `info`,
//!   the body at `debug` — except for mails whose body holds a secret (an invitation's enrolment
//!   link is a one-time credential, and log pipelines keep things forever and show them to
//!   many). Nothing is lost by leaving it out: whoever invited already has the link, from
//!   `countersign user invite` or the admin page.
//!
//! The SMTP transport is lettre's `AsyncSmtpTransport<Tokio1Executor>`, built from the URL by
//! `AsyncSmtpTransport::from_url` (plain `smtp://`, STARTTLS `smtp://…?tls=required`, implicit
//! TLS `smtps://`, AUTH from `user:password@`), with rustls and the webpki roots. A connection
//! per mail: mail is rare next to requests, and a pool would hold connections that a relay
//! restart silently breaks.
//!
//! The queue lives in this process's memory: mail still queued or waiting for a retry when the
//! process stops is lost (logged as queued, never as sent). [`Mailer::flush`] lets a short-lived
//! process — the command line — wait for its mail before it exits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::{mpsc, Notify, Semaphore};

use crate::config::Config;
use crate::telemetry::{bump, MailCounters};

/// Mails queued or being delivered (retries included) past which new ones are dropped.
pub const MAX_OUTSTANDING: usize = 10_000;
/// Mails talking to the SMTP server at the same time.
pub const MAX_CONCURRENT_SENDS: usize = 4;
/// How long one SMTP conversation may take before it counts as a failed attempt.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// What a mail is about; it decides what the log may show of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    /// An enrolment link: the body is a secret.
    Invitation,
    /// A request waiting for this approver.
    ApprovalNeeded,
}

impl MailKind {
    /// The name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invitation => "invitation",
            Self::ApprovalNeeded => "approval_needed",
        }
    }

    /// Whether the body carries a credential (and so never goes to the log).
    fn body_is_secret(self) -> bool {
        matches!(self, Self::Invitation)
    }
}

/// One plain-text mail to one person.
#[derive(Clone)]
pub struct Mail {
    /// The recipient's address.
    pub to: String,
    /// One line, already free of control characters (see [`one_line`]).
    pub subject: String,
    /// Plain text.
    pub body: String,
    /// What it is about.
    pub kind: MailKind,
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body may hold an enrolment link: never part of a Debug dump.
        f.debug_struct("Mail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("kind", &self.kind)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

/// The mail could not be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum MailSetupError {
    /// `COUNTERSIGN_SMTP_URL` was refused by the SMTP client.
    #[error("COUNTERSIGN_SMTP_URL: cannot set up the SMTP client: {0}")]
    SmtpUrl(String),
    /// `COUNTERSIGN_MAIL_FROM` is not a mailbox.
    #[error("COUNTERSIGN_MAIL_FROM: {0}")]
    From(String),
}

impl MailSetupError {
    /// The environment variable at fault.
    pub fn variable(&self) -> &'static str {
        match self {
            Self::SmtpUrl(_) => "COUNTERSIGN_SMTP_URL",
            Self::From(_) => "COUNTERSIGN_MAIL_FROM",
        }
    }
}

/// The handle services use to send mail. Cheap to clone; every clone feeds the same queue.
#[derive(Clone)]
pub struct Mailer {
    queue: mpsc::UnboundedSender<Mail>,
    outstanding: Arc<Outstanding>,
    counters: Arc<MailCounters>,
    smtp: bool,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("smtp", &self.smtp)
            .field(
                "outstanding",
                &self.outstanding.count.load(Ordering::SeqCst),
            )
            .finish()
    }
}

/// How many mails are queued or in delivery, and a wake-up for [`Mailer::flush`] when that
/// reaches zero.
#[derive(Debug, Default)]
struct Outstanding {
    count: AtomicUsize,
    idle: Notify,
}

impl Outstanding {
    fn finished_one(&self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// Marks one mail finished when dropped, so a delivery task that panics still counts down.
struct Finished(Arc<Outstanding>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.finished_one();
    }
}

/// Where mail goes.
enum Outlet {
    /// No SMTP server configured: the log.
    Log,
    /// An SMTP server.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// Shared by the delivery tasks.
struct Delivery {
    outlet: Outlet,
    from: Mailbox,
    retry_delays: Vec<Duration>,
    sending: Semaphore,
    counters: Arc<MailCounters>,
}

impl Mailer {
    /// Sets up mail from the configuration and starts the background task (so it must be
    /// called inside a Tokio runtime). Fails only on a configuration the SMTP client refuses.
    pub fn start(config: &Config, counters: Arc<MailCounters>) -> Result<Self, MailSetupError> {
        let from = config
            .mail_from
            .parse::<Mailbox>()
            .map_err(|e| MailSetupError::From(e.to_string()))?;
        let outlet = match &config.smtp_url {
            None => {
                tracing::info!(
                    "COUNTERSIGN_SMTP_URL is not set: mail is written to the log, not sent"
                );
                Outlet::Log
            }
            Some(url) => {
                // lettre's errors describe the problem, never the URL, so the password stays
                // out of the message.
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                    .map_err(|e| MailSetupError::SmtpUrl(e.to_string()))?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build();
                if url.has_credentials() && !url.is_encrypted() && !url.is_loopback() {
                    tracing::warn!(smtp = ?url, "COUNTERSIGN_SMTP_URL sends a password over an unencrypted connection to another machine; use smtps:// or ?tls=required");
                }
                tracing::info!(smtp = ?url, from = %from, "mail goes to the SMTP server");
                Outlet::Smtp(transport)
            }
        };
        let smtp = matches!(outlet, Outlet::Smtp(_));
        let delivery = Arc::new(Delivery {
            outlet,
            from,
            retry_delays: config.mail_retry_delays.clone(),
            sending: Semaphore::new(MAX_CONCURRENT_SENDS),
            counters: counters.clone(),
        });
        let outstanding = Arc::new(Outstanding::default());
        let (queue, mails) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(mails, delivery, outstanding.clone()));
        Ok(Self {
            queue,
            outstanding,
            counters,
            smtp,
        })
    }

    /// Whether mail goes to an SMTP server (rather than the log).
    pub fn sends_mail(&self) -> bool {
        self.smtp
    }

    /// Queues a mail and returns at once. Never fails: a mail that cannot be queued is logged
    /// and dropped.
    pub fn enqueue(&self, mail: Mail) {
        if self.outstanding.count.fetch_add(1, Ordering::SeqCst) >= MAX_OUTSTANDING {
            self.outstanding.finished_one();
            bump(&self.counters.dropped);
            tracing::warn!(to = %mail.to, kind = mail.kind.as_str(), limit = MAX_OUTSTANDING, "mail dropped: too many mails are waiting to be sent");
            return;
        }
        if let Err(mpsc::error::SendError(mail)) = self.queue.send(mail) {
            self.outstanding.finished_one();
            bump(&self.counters.dropped);
            tracing::warn!(to = %mail.to, kind = mail.kind.as_str(), "mail dropped: the mail sender has stopped");
        }
    }

    /// Waits until every mail queued so far is sent, logged or given up on, at most `within`.
    /// Returns whether the queue is empty. For short-lived processes (the command line); a
    /// server just keeps running.
    pub async fn flush(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let idle = self.outstanding.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.outstanding.count.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.outstanding.count.load(Ordering::SeqCst) == 0;
            }
        }
    }
}

/// The background task: hands every queued mail to a delivery task of its own.
async fn dispatch(
    mut mails: mpsc::UnboundedReceiver<Mail>,
    delivery: Arc<Delivery>,
    outstanding: Arc<Outstanding>,
) {
    while let Some(mail) = mails.recv().await {
        let delivery = delivery.clone();
        let finished = Finished(outstanding.clone());
        tokio::spawn(async move {
            delivery.deliver(mail).await;
            drop(finished);
        });
    }
}

impl Delivery {
    async fn deliver(&self, mail: Mail) {
        let transport = match &self.outlet {
            Outlet::Log => {
                self.log(&mail);
                return;
            }
            Outlet::Smtp(transport) => transport,
        };
        let (envelope, raw) = match self.message(&mail) {
            Ok(message) => (message.envelope().clone(), message.formatted()),
            Err(error) => {
                bump(&self.counters.failed);
                tracing::warn!(to = %mail.to, kind = mail.kind.as_str(), %error, "mail not sent: it could not be composed");
                return;
            }
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = {
                // The semaphore is never closed; were it, sending without a permit is harmless.
                let _permit = self.sending.acquire().await.ok();
                transport.send_raw(&envelope, &raw).await
            };
            let error = match result {
                Ok(_) => {
                    bump(&self.counters.sent);
                    tracing::info!(to = %mail.to, kind = mail.kind.as_str(), attempt, "mail sent");
                    return;
                }
                Err(e) => e,
            };
            bump(&self.counters.failed_attempts);
            let next = self.retry_delays.get(attempt - 1).copied();
            match next {
                Some(delay) if !error.is_permanent() => {
                    tracing::warn!(to = %mail.to, kind = mail.kind.as_str(), attempt, %error, retry_in_ms = delay.as_millis() as u64, "mail not sent yet; will retry");
                    tokio::time::sleep(delay).await;
                }
                _ => {
                    bump(&self.counters.failed);
                    tracing::warn!(to = %mail.to, kind = mail.kind.as_str(), attempt, %error, permanent = error.is_permanent(), "mail not sent; giving up");
                    return;
                }
            }
        }
    }

    fn log(&self, mail: &Mail) {
        bump(&self.counters.logged);
        tracing::info!(to = %mail.to, subject = %mail.subject, kind = mail.kind.as_str(), "mail (not sent: COUNTERSIGN_SMTP_URL is not set)");
        if mail.kind.body_is_secret() {
            // An enrolment link is a credential: it is shown to whoever invited, not logged.
            return;
        }
        tracing::debug!(to = %mail.to, body = %mail.body, "mail body");
    }

    fn message(&self, mail: &Mail) -> Result<Message, String> {
        let to = mail
            .to
            .parse::<Mailbox>()
            .map_err(|e| format!("recipient: {e}"))?;
        let domain = self.from.email.domain().to_string();
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(one_line(&mail.subject, MAX_SUBJECT_CHARS))
            .message_id(Some(format!(
                "<{}@{domain}>",
                uuid::Uuid::new_v4().simple()
            )))
            // RFC 3834: tells vacation responders and the like not to answer.
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".into(),
            ))
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| e.to_string())
    }
}

/// The longest subject we send, in characters.
pub const MAX_SUBJECT_CHARS: usize = 200;

/// `text` as one clean line of at most `max_chars` characters, for a header or a labelled line
/// of a body: control characters (CR and LF above all: in a header they would start new
/// headers), Unicode line separators and bidirectional overrides (which can make text read
/// differently from what it is) become spaces, runs of whitespace collapse, and a cut is marked
/// with `…`. Agents choose much of what we mail, so everything they wrote passes through here.
pub fn one_line(text: &str, max_chars: usize) -> String {
    let blank = |c: char| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    let cleaned = text
        .split(blank)
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if cleaned.chars().count() <= max_chars {
        return cleaned;
    }
    let mut out: String = cleaned.chars().take(max_chars.saturating_sub(1)).collect();
    out.truncate(out.trim_end().len());
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_strips_header_breaking_characters_and_marks_cuts() {
        assert_eq!(
            one_line("pay\r\nBcc: evil@example.com", 100),
            "pay Bcc: evil@example.com"
        );
        assert_eq!(one_line("  a \t\u{0} b\u{202E}c  ", 100), "a b c");
        assert_eq!(one_line("abcdef", 6), "abcdef");
        assert_eq!(one_line("abcdefg", 6), "abcde…");
        assert_eq!(one_line("abcd efgh", 6), "abcd…");
        assert_eq!(one_line("ééééééé", 4), "ééé…");
        assert_eq!(one_line("", 4), "");
        assert!(one_line(&"x".repeat(10_000), 200).chars().count() <= 200);
    }

    #[test]
    fn mail_debug_never_shows_the_body() {
        let m = Mail {
            to: "a@example.com".into(),
            subject: "Invitation".into(),
            body: "http://localhost/enrol/secret-token".into(),
            kind: MailKind::Invitation,
        };
        let shown = format!("{m:?}");
        assert!(!shown.contains("secret-token"), "{shown}");
        assert!(MailKind::Invitation.body_is_secret());
        assert!(!MailKind::ApprovalNeeded.body_is_secret());
    }

    fn config(smtp: Option<&str>) -> Config {
        let mut vars = std::collections::HashMap::new();
        if let Some(url) = smtp {
            vars.insert("COUNTERSIGN_SMTP_URL", url.to_string());
        }
        vars.insert("COUNTERSIGN_MAIL_RETRY_DELAYS", "0.01".into());
        Config::from_lookup(|k| vars.get(k).cloned()).unwrap()
    }

    #[tokio::test]
    async fn without_smtp_mail_is_logged_and_flush_waits_for_it() {
        let counters = Arc::new(MailCounters::default());
        let mailer = Mailer::start(&config(None), counters.clone()).unwrap();
        assert!(!mailer.sends_mail());
        for _ in 0..3 {
            mailer.enqueue(Mail {
                to: "a@example.com".into(),
                subject: "s".into(),
                body: "b".into(),
                kind: MailKind::ApprovalNeeded,
            });
        }
        assert!(mailer.flush(Duration::from_secs(5)).await);
        assert_eq!(counters.logged.get(), 3);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_retried_then_given_up_without_blocking_the_caller() {
        // A port nobody listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let counters = Arc::new(MailCounters::default());
        let mailer = Mailer::start(
            &config(Some(&format!("smtp://127.0.0.1:{port}"))),
            counters.clone(),
        )
        .unwrap();
        let started = std::time::Instant::now();
        mailer.enqueue(Mail {
            to: "a@example.com".into(),
            subject: "s".into(),
            body: "b".into(),
            kind: MailKind::ApprovalNeeded,
        });
        assert!(started.elapsed() < Duration::from_millis(50));
        assert!(mailer.flush(Duration::from_secs(10)).await);
        assert_eq!(counters.failed_attempts.get(), 2);
        assert_eq!(counters.failed.get(), 1);
        assert_eq!(counters.sent.get(), 0);
    }
}
