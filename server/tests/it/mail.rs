//! Outgoing mail against a real SMTP server on loopback (aiosmtpd, `tests/it/smtp/sink.py`, which
//! `.ci/setup` installs): invitations carry their link, a pending request mails exactly its
//! eligible approvers and nothing secret, a relay that is down at first still gets the mail
//! after a retry without the agent noticing, AUTH works, and `?tls=required` never falls back
//! to plain text. A sink that cannot start fails the test; it is never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{transfer, Agent, Backend, Person, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Short retry delays so the tests that need a retry don't wait for the real ones.
const FAST_RETRIES: &str = "0.2,0.4,0.8,1.6,3.2";
const FROM: &str = "Countersign Test <countersign@example.com>";

/// An aiosmtpd process on 127.0.0.1, killed when dropped.
struct SmtpSink {
    child: Child,
    port: u16,
    out: tempfile::TempDir,
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SmtpSink {
    async fn start(port: u16, auth: Option<&str>) -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/smtp/sink.py");
        let out = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .arg("--port")
            .arg(port.to_string())
            .arg("--out")
            .arg(out.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(a) = auth {
            cmd.arg("--auth").arg(a);
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run python3 for the SMTP test server ({e}); run .ci/setup")
        });
        let mut sink = SmtpSink { child, port, out };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = sink.child.try_wait().unwrap() {
                panic!(
                    "the SMTP test server ({}) exited with {status} before accepting \
                     connections; is aiosmtpd installed (.ci/setup)? See its stderr above.",
                    script.display()
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return sink;
            }
            assert!(
                Instant::now() < deadline,
                "the SMTP test server did not accept connections on 127.0.0.1:{port} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, in no particular order.
    fn received(&self) -> Vec<Value> {
        std::fs::read_dir(self.out.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap())
            .collect()
    }

    /// Waits until `pick` selects at least `n` received messages; returns those.
    async fn wait_for(&self, n: usize, pick: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got: Vec<Value> = self.received().into_iter().filter(|m| pick(m)).collect();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} messages within 20 s, have {}: {got:#?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_approval(m: &Value) -> bool {
    m["subject"]
        .as_str()
        .unwrap()
        .starts_with("Approval needed:")
}

fn recipients(mails: &[Value]) -> Vec<String> {
    let mut to: Vec<String> = mails
        .iter()
        .flat_map(|m| m["rcpt_tos"].as_array().unwrap().clone())
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    to.sort();
    to
}

/// A server that mails through `smtp_url`, with its first admin (alice) and her agent.
async fn app_mailing_to(backend: Backend, smtp_url: &str) -> (TestApp, Person, Agent) {
    app_retrying(backend, smtp_url, FAST_RETRIES).await
}

async fn app_retrying(backend: Backend, smtp_url: &str, retries: &str) -> (TestApp, Person, Agent) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("COUNTERSIGN_SMTP_URL", smtp_url),
            ("COUNTERSIGN_MAIL_FROM", FROM),
            ("COUNTERSIGN_MAIL_RETRY_DELAYS", retries),
        ],
    )
    .await;
    let alice = app.enrol_first_admin("alice@example.com").await;
    let agent = app.agent("alice@example.com").await;
    (app, alice, agent)
}

/// Waits until every approval announcement has finished and the mail queue is empty, so "no
/// more mail" can be asserted.
async fn settle(app: &TestApp) {
    common::eventually(
        "the announcements finished",
        Duration::from_secs(10),
        || async { app.core.announcing() == 0 },
    )
    .await;
    assert!(app.core.mailer.flush(Duration::from_secs(10)).await);
}

async fn invitation_mail_carries_a_working_link(backend: Backend) {
    let sink = SmtpSink::start(free_port(), None).await;
    let (app, _alice, _agent) = app_mailing_to(backend, &sink.url()).await;

    let invite = app
        .core
        .invite("bob@example.com", "owner", &["finance".into()], "test")
        .await
        .unwrap();
    let mails = sink.wait_for(1, |_| true).await;
    let m = &mails[0];
    assert_eq!(m["rcpt_tos"], json!(["bob@example.com"]));
    assert_eq!(m["mail_from"], "countersign@example.com");
    assert_eq!(m["from"], FROM);
    assert_eq!(m["to"], "bob@example.com");
    assert_eq!(m["subject"], "Your Countersign invitation");
    let body = m["body"].as_str().unwrap();
    assert!(body.contains("as owner, in group finance."), "{body}");
    let link = invite.link.expose();
    assert!(
        body.lines().any(|l| l == link),
        "the link on a line of its own: {body}"
    );
    let headers = m["headers"].to_string();
    assert!(headers.contains("Auto-Submitted") && headers.contains("Message-ID"));

    // The link in the mail is the real thing: it enrols bob (once).
    let bob = app.enrol_with_link(link, None, "Bob").await;
    assert_eq!(bob.email, "bob@example.com");
    settle(&app).await;
    assert_eq!(sink.received().len(), 1, "enrolment itself sends nothing");
    assert_eq!(app.core.metrics.mail.sent.get(), 1);
}

async fn pending_requests_mail_exactly_their_eligible_approvers(backend: Backend) {
    let sink = SmtpSink::start(free_port(), None).await;
    let (app, alice, agent) = app_mailing_to(backend, &sink.url()).await;
    app.core
        .apply_policy(
            "[[rule]]\nid = \"finance-payments\"\naction = \"payments.*\"\noutcome = \"require\"\n\
             approvals = 1\napprovers = [\"group:finance\"]\n\n\
             [[rule]]\nid = \"reads\"\naction = \"db.read\"\noutcome = \"allow\"\n",
            "test",
        )
        .await
        .unwrap();
    let bob = app.enrol("bob@example.com", "owner", &["finance"]).await;
    let carol = app
        .enrol("carol@example.com", "admin", &["finance", "ops"])
        .await;
    let _dave = app.enrol("dave@example.com", "owner", &["ops"]).await;
    // The three invitations.
    sink.wait_for(3, |m| !is_approval(m)).await;

    // A group rule: finance (bob, carol), not alice (owner and admin, not in finance), not dave.
    let payment = app.ask(&agent, &transfer("5000.00")).await;
    let id = payment["id"].as_str().unwrap();
    let link = format!("{}/requests/{id}", app.base);
    sink.wait_for(2, |m| {
        is_approval(m) && m["body"].as_str().unwrap().contains(&link)
    })
    .await;
    settle(&app).await;
    let mails: Vec<Value> = sink
        .received()
        .into_iter()
        .filter(|m| is_approval(m) && m["body"].as_str().unwrap().contains(&link))
        .collect();
    assert_eq!(
        recipients(&mails),
        vec![bob.email.clone(), carol.email.clone()]
    );
    for m in &mails {
        assert_eq!(
            m["subject"],
            "Approval needed: test-agent wants to payments.transfer on bank-api"
        );
        let body = m["body"].as_str().unwrap();
        assert!(body.lines().any(|l| l == link), "{body}");
        assert!(
            body.contains("Goal:         Pay supplier invoice INV-1042"),
            "{body}"
        );
        assert!(body.contains("Environment:  production"), "{body}");
        assert!(body.contains("Amount:       5000.00 EUR"), "{body}");
        assert!(body.contains("finance-payments"), "{body}");
        assert!(body.contains("grants nothing by itself"), "{body}");
        // Nothing secret: not the agent's API key (nor any part of it), no enrolment link.
        let raw = m["raw"].as_str().unwrap();
        let key_secret = agent.bearer.rsplit('_').next().unwrap();
        for text in [body, raw] {
            assert!(!text.contains(&agent.bearer) && !text.contains(key_secret));
            assert!(!text.contains("cs_agent_") && !text.contains("/enrol/"));
        }
    }
    let eligible: Vec<String> = app
        .core
        .eligible_approvers(id)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.email)
        .collect();
    assert_eq!(
        eligible,
        vec![bob.email.clone(), carol.email.clone()],
        "the reusable query agrees with who was mailed"
    );

    // The default rule (no match): the agent's owner alone.
    let query = json!({ "action": { "type": "db.query", "target": "crm" },
                        "intent": { "goal": "Count customers" } });
    let id = app.ask_id(&agent, &query).await;
    let link = format!("{}/requests/{id}", app.base);
    sink.wait_for(1, |m| {
        is_approval(m) && m["body"].as_str().unwrap().contains(&link)
    })
    .await;
    settle(&app).await;
    let mails: Vec<Value> = sink
        .received()
        .into_iter()
        .filter(|m| m["body"].as_str().unwrap().contains(&link))
        .collect();
    assert_eq!(recipients(&mails), vec![alice.email.clone()]);
    assert_eq!(
        mails[0]["subject"],
        "Approval needed: test-agent wants to db.query on crm"
    );

    // Allowed outright: nobody is asked, nobody is mailed.
    let before = sink.received().len();
    let r = app
        .agent_post(
            &agent,
            "/api/v1/requests",
            &json!({ "action": { "type": "db.read", "target": "crm" } }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    settle(&app).await;
    assert_eq!(sink.received().len(), before);
}

async fn an_idempotent_replay_mails_nobody_again(backend: Backend) {
    let sink = SmtpSink::start(free_port(), None).await;
    let (app, _alice, agent) = app_mailing_to(backend, &sink.url()).await;
    let send = || {
        app.http
            .post(app.url("/api/v1/requests"))
            .bearer_auth(&agent.bearer)
            .header("Idempotency-Key", "inv-1042-pay")
            .json(&transfer("5000.00"))
            .send()
    };
    let first = send().await.unwrap();
    let id = common::json_of(first, StatusCode::ACCEPTED).await["id"].clone();
    sink.wait_for(1, is_approval).await;
    for _ in 0..2 {
        let again = send().await.unwrap();
        assert!(again.status().is_success());
        assert_eq!(again.json::<Value>().await.unwrap()["id"], id);
    }
    settle(&app).await;
    assert_eq!(sink.received().iter().filter(|m| is_approval(m)).count(), 1);
}

/// The relay is down when the request comes in: the agent is answered at once, the first
/// attempt fails, and the mail goes out on a retry once the relay is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_down_at_first_gets_the_mail_on_a_retry_and_the_agent_never_waits() {
    let port = free_port();
    let (app, alice, agent) =
        app_mailing_to(Backend::Sqlite, &format!("smtp://127.0.0.1:{port}")).await;

    let started = Instant::now();
    let r = app
        .agent_post(&agent, "/api/v1/requests", &transfer("5000.00"))
        .await;
    let took = started.elapsed();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(took < Duration::from_secs(2), "the agent waited {took:?}");
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.state(&agent, &id).await["status"], "pending");

    let mail = &app.core.metrics.mail;
    let deadline = Instant::now() + Duration::from_secs(10);
    while mail.failed_attempts.get() == 0 {
        assert!(Instant::now() < deadline, "no failed attempt was recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mail.sent.get(), 0);

    let sink = SmtpSink::start(port, None).await;
    let mails = sink.wait_for(1, is_approval).await;
    assert_eq!(mails[0]["rcpt_tos"], json!([alice.email]));
    assert!(mails[0]["body"].as_str().unwrap().contains(&id));
    assert!(app.core.mailer.flush(Duration::from_secs(10)).await);
    assert_eq!(mail.sent.get(), 1);
    assert_eq!(mail.failed.get(), 0);
    assert_eq!(
        app.metric("countersign_mails_total{outcome=\"sent\"}")
            .await,
        1
    );
}

/// `smtp://user:password@host:port` authenticates; a wrong password is refused for good (no
/// retries: a 535 will not change) and nothing is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smtp_auth_from_the_url() {
    let sink = SmtpSink::start(free_port(), Some("countersign:s3cret pass")).await;
    let url = format!("smtp://countersign:s3cret%20pass@127.0.0.1:{}", sink.port);
    let (app, _alice, _agent) = app_mailing_to(Backend::Sqlite, &url).await;
    app.core
        .invite("bob@example.com", "owner", &[], "test")
        .await
        .unwrap();
    let mails = sink.wait_for(1, |_| true).await;
    assert_eq!(mails[0]["auth_login"], "countersign");
    assert_eq!(mails[0]["rcpt_tos"], json!(["bob@example.com"]));

    let wrong = format!("smtp://countersign:wrong@127.0.0.1:{}", sink.port);
    let (app, _alice, _agent) = app_mailing_to(Backend::Sqlite, &wrong).await;
    app.core
        .invite("carol@example.com", "owner", &[], "test")
        .await
        .unwrap();
    assert!(app.core.mailer.flush(Duration::from_secs(10)).await);
    let mail = &app.core.metrics.mail;
    assert_eq!(mail.failed.get(), 1);
    assert_eq!(
        mail.failed_attempts.get(),
        1,
        "a refused password is not retried"
    );
    assert_eq!(sink.received().len(), 1);
}

/// `?tls=required` against a relay that offers no STARTTLS: nothing is sent in the clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn starttls_required_never_falls_back_to_plain_text() {
    let sink = SmtpSink::start(free_port(), None).await;
    let url = format!("smtp://127.0.0.1:{}?tls=required", sink.port);
    let (app, _alice, agent) = app_retrying(Backend::Sqlite, &url, "0.1").await;
    app.ask(&agent, &transfer("5000.00")).await;
    let mail = &app.core.metrics.mail;
    let deadline = Instant::now() + Duration::from_secs(20);
    while mail.failed.get() == 0 {
        assert!(
            Instant::now() < deadline,
            "the mail was neither sent nor given up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(mail.sent.get(), 0);
    assert_eq!(mail.failed_attempts.get(), 2, "tried, retried, gave up");
    assert!(sink.received().is_empty());
}

on_both_backends!(
    invitation_mail_carries_a_working_link,
    pending_requests_mail_exactly_their_eligible_approvers,
    an_idempotent_replay_mails_nobody_again,
);
