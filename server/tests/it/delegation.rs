//! Delegation chains: sub-agents (who may register them, and what is refused), the kill switch
//! reaching every sub-agent at once (also while they are busy), policy rules on delegation
//! depth that an agent cannot evade by under-reporting, the chain on the request page, and the
//! chain with every decision in the audit export.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{json_of, problem, transfer, Agent, Backend, TestApp};
use countersign::service::Error;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Small payments run at once (a grant each); anything delegated twice or more waits for a
/// person first; larger payments wait too (the default).
const POLICY: &str = r#"
[[rule]]
id = "delegated-twice"
description = "Anything delegated more than once needs a person"
delegation_depth_at_least = 2
outcome = "require"

[[rule]]
id = "small"
action = "payments.*"
amount_below = { value = "100.00", currency = "EUR" }
outcome = "allow"
"#;

/// Registers an agent named `name` for `owner`, with an API key.
async fn named_agent(app: &TestApp, name: &str, owner: &str) -> Agent {
    let created = app
        .core
        .create_agent(name, owner, None, "test")
        .await
        .unwrap();
    Agent {
        id: created.id,
        bearer: created.api_key.unwrap().expose().to_string(),
    }
}

/// root ← child ← grandchild, all Alice's, registered from the command line's service call.
async fn family(app: &TestApp) -> (Agent, Agent, Agent) {
    let root = named_agent(app, "planner-agent", "alice@example.com").await;
    let child = named_agent(app, "invoice-bot", "alice@example.com").await;
    let grandchild = named_agent(app, "pdf-reader", "alice@example.com").await;
    app.core
        .set_parent(&child.id, Some(&root.id), "cli")
        .await
        .unwrap();
    app.core
        .set_parent(&grandchild.id, Some(&child.id), "cli")
        .await
        .unwrap();
    (root, child, grandchild)
}

fn field_of(e: Error) -> String {
    match e {
        Error::InvalidRequest { field, detail } => {
            assert!(!detail.is_empty());
            field.unwrap_or_default()
        }
        other => panic!("expected a 400 naming a field, got {other:?}"),
    }
}

/// The chain as exported, one JSON value per event.
async fn chain(app: &TestApp) -> Vec<Value> {
    let mut out = Vec::new();
    app.core.export_audit(None, &mut out).await.unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn owners_and_admins_register_sub_agents_and_nonsense_is_refused(backend: Backend) {
    let (app, mut alice, _) = TestApp::with_alice(backend).await;
    let mut bob = app.enrol("bob@example.com", "owner", &[]).await;
    let bob_signed_in = app.signed_in(&bob).await;
    let alice_signed_in = app.signed_in(&alice).await;
    let a1 = named_agent(&app, "alice-planner", "alice@example.com").await;
    let b1 = named_agent(&app, "bob-planner", "bob@example.com").await;
    let b2 = named_agent(&app, "bob-worker", "bob@example.com").await;

    // An owner, between two agents of theirs, from the agents page's server function.
    let set = bob
        .server_json(
            &app.http,
            "set_agent_parent",
            &[("id", &b2.id), ("parent", &b1.id)],
        )
        .await;
    assert_eq!(set, json!(b1.id));
    // ...and the listing shows it, named.
    let mine = bob.server_json(&app.http, "my_agents", &[]).await;
    let worker = mine
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == json!(b2.id))
        .unwrap();
    assert_eq!(worker["parent"]["id"], json!(b1.id));
    assert_eq!(worker["parent"]["name"], "bob-planner");

    // Not under someone else's agent, and not someone else's agent: the other owner's agent is
    // refused exactly like one that does not exist.
    let e = app
        .core
        .set_agent_parent(&bob_signed_in, &b1.id, Some(&a1.id))
        .await
        .unwrap_err();
    let detail = e.to_string();
    assert_eq!(field_of(e), "parent");
    assert!(detail.contains("of yours"), "{detail}");
    let e = app
        .core
        .set_agent_parent(&bob_signed_in, &b1.id, Some("no-such-agent"))
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), detail.replace(&a1.id, "no-such-agent"));
    assert!(matches!(
        app.core
            .set_agent_parent(&bob_signed_in, &a1.id, Some(&b1.id))
            .await,
        Err(Error::NotFound(_))
    ));
    let r = bob
        .server_fn(
            &app.http,
            "set_agent_parent",
            &[("id", &b1.id), ("parent", &a1.id)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("parent"));

    // An admin may link anyone's agents.
    app.core
        .set_agent_parent(&alice_signed_in, &b1.id, Some(&a1.id))
        .await
        .unwrap();
    let all = alice.server_json(&app.http, "admin/agents", &[]).await;
    let planner = all
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == json!(b1.id))
        .unwrap();
    assert_eq!(planner["parent"]["name"], "alice-planner");

    // Itself, a cycle (a1 → b1 → b2, so b2 cannot be a1's parent), an unknown parent: each
    // refused naming `parent`, and nothing changed.
    for (agent, parent) in [
        (&a1.id, &a1.id),
        (&a1.id, &b2.id),
        (&a1.id, &"nobody".to_string()),
    ] {
        let e = app
            .core
            .set_parent(agent, Some(parent), "cli")
            .await
            .unwrap_err();
        assert_eq!(field_of(e), "parent");
    }
    // Depth: a chain of 8 ancestors is the most; the ninth level is refused, also when it is a
    // whole subtree that would move down.
    let mut chain_ids = vec![a1.id.clone(), b1.id.clone(), b2.id.clone()];
    while chain_ids.len() < 9 {
        let next = named_agent(&app, "deep", "alice@example.com").await;
        app.core
            .set_parent(&next.id, Some(chain_ids.last().unwrap()), "cli")
            .await
            .unwrap();
        chain_ids.push(next.id);
    }
    let too_deep = named_agent(&app, "too-deep", "alice@example.com").await;
    let e = app
        .core
        .set_parent(&too_deep.id, Some(chain_ids.last().unwrap()), "cli")
        .await
        .unwrap_err();
    assert_eq!(field_of(e), "parent");
    let top = named_agent(&app, "new-top", "alice@example.com").await;
    let e = app
        .core
        .set_parent(&a1.id, Some(&top.id), "cli")
        .await
        .unwrap_err();
    assert_eq!(field_of(e), "parent", "moving the whole chain down a level");
    // Not under a suspended parent.
    app.core.suspend_agent(&top.id, "test").await.unwrap();
    let e = app
        .core
        .set_parent(&too_deep.id, Some(&top.id), "cli")
        .await
        .unwrap_err();
    assert_eq!(field_of(e), "parent");

    // Clearing, from the command line, with --json.
    let out = app.cli(&["agent", "set-parent", &b2.id, "--none", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["parent"], Value::Null);
    assert_eq!(printed["previous_parent"], json!(b1.id));
    let out = app.cli(&["agent", "set-parent", &b2.id, "--parent", &b2.id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("parent"));

    // Every change is on the chain, with the previous parent; refusals are not.
    let sets: Vec<Value> = chain(&app)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "agent.parent_set")
        .collect();
    assert_eq!(
        sets.len(),
        1 + 1 + 6 + 1,
        "b2, b1, the six deep ones, the clearing"
    );
    assert_eq!(sets[0]["data"]["agent_id"], json!(b2.id));
    assert_eq!(sets[0]["actor"], format!("user:{}", bob.id));
    let last = sets.last().unwrap();
    assert_eq!(last["actor"], "cli");
    assert_eq!(last["data"]["parent_id"], Value::Null);
    assert_eq!(last["data"]["previous_parent_id"], json!(b1.id));
}

/// Small payments give a grant each; the large one waits.
async fn one_pending_and_one_grant(app: &TestApp, agent: &Agent) -> (String, String) {
    let pending = app.ask_id(agent, &transfer("5000.00")).await;
    let v = json_of(
        app.agent_post(agent, "/api/v1/requests", &transfer("12.00"))
            .await,
        StatusCode::OK,
    )
    .await;
    (pending, v["grant"]["token"].as_str().unwrap().to_string())
}

async fn suspending_a_parent_suspends_every_sub_agent_at_once(backend: Backend) {
    let (app, _alice, _) = TestApp::with_alice(backend).await;
    // Only the amount rule: the depth rule would make the sub-agents' small payments wait.
    app.core
        .apply_policy(
            "[[rule]]\nid = \"small\"\naction = \"payments.*\"\n\
             amount_below = { value = \"100.00\", currency = \"EUR\" }\noutcome = \"allow\"\n",
            "test",
        )
        .await
        .unwrap();
    let (root, child, grandchild) = family(&app).await;
    let bystander = named_agent(&app, "bystander", "alice@example.com").await;
    let mut held = Vec::new();
    for a in [&root, &child, &grandchild, &bystander] {
        held.push(one_pending_and_one_grant(&app, a).await);
    }

    let report = app.core.suspend_agent(&root.id, "test").await.unwrap();
    assert!(report.changed);
    assert_eq!(report.suspended_sub_agents, 2);
    assert_eq!(report.cancelled_requests, 3);
    assert_eq!(report.revoked_grants, 3);

    for (agent, (pending, grant)) in [&root, &child, &grandchild].into_iter().zip(&held) {
        problem(
            app.agent_post(agent, "/api/v1/requests", &transfer("1.00"))
                .await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
        assert_eq!(app.request_status(pending).await, "cancelled");
        problem(app.redeem(grant).await, StatusCode::GONE, "grant_revoked").await;
    }
    // An agent outside the family is untouched.
    assert_eq!(app.request_status(&held[3].0).await, "pending");
    assert_eq!(app.redeem(&held[3].1).await.status(), StatusCode::OK);

    // One agent.suspended event per agent; a sub-agent's names the parent that reached it.
    let suspended: Vec<Value> = chain(&app)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "agent.suspended")
        .collect();
    assert_eq!(suspended.len(), 3);
    assert_eq!(suspended[0]["data"]["agent_id"], json!(root.id));
    assert!(suspended[0]["data"].get("cause").is_none());
    assert_eq!(suspended[1]["data"]["agent_id"], json!(child.id));
    assert_eq!(
        suspended[1]["data"]["cause"]["parent_suspended"],
        json!(root.id)
    );
    assert_eq!(suspended[2]["data"]["agent_id"], json!(grandchild.id));
    assert_eq!(
        suspended[2]["data"]["cause"]["parent_suspended"],
        json!(child.id)
    );
    assert_eq!(suspended[1]["data"]["cancelled_requests"], 1);
    assert_eq!(suspended[1]["data"]["revoked_grants"], 1);

    // Resuming the parent does not resume its sub-agents.
    assert!(app.core.resume_agent(&root.id, "test").await.unwrap());
    assert_eq!(
        app.agent_post(&root, "/api/v1/requests", &transfer("1.00"))
            .await
            .status(),
        StatusCode::OK
    );
    for agent in [&child, &grandchild] {
        problem(
            app.agent_post(agent, "/api/v1/requests", &transfer("1.00"))
                .await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
    }
}

/// Clients of the sub-agent keep asking (small payments at once, larger ones waiting) while
/// its parent is suspended: nothing of the sub-agent's commits after the suspension, nothing
/// stays pending and no grant stays redeemable.
async fn sub_agent_requests_racing_the_parent_suspension_commit_before_it_or_not_at_all(
    backend: Backend,
) {
    let app = TestApp::spawn_with(backend, &[("COUNTERSIGN_LIMIT_REDEEM_FAILURES", "off")]).await;
    app.enrol_first_admin("alice@example.com").await;
    app.core
        .apply_policy(
            "[[rule]]\nid = \"small\"\naction = \"payments.*\"\n\
             amount_below = { value = \"100.00\", currency = \"EUR\" }\noutcome = \"allow\"\n",
            "test",
        )
        .await
        .unwrap();
    let (root, child, _grandchild) = family(&app).await;
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (http, url, bearer, answered) = (
            app.http.clone(),
            app.url("/api/v1/requests"),
            child.bearer.clone(),
            answered.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut tokens = Vec::new();
            for i in 0.. {
                let amount = if i % 4 == 3 {
                    format!("{}.{:02}", 500 + i, c)
                } else {
                    format!("{}.{:02}", i % 90 + 1, c)
                };
                let r = http
                    .post(&url)
                    .bearer_auth(&bearer)
                    .json(&transfer(&amount))
                    .send()
                    .await
                    .unwrap();
                match r.status() {
                    StatusCode::OK => {
                        let v: Value = r.json().await.unwrap();
                        tokens.push(v["grant"]["token"].as_str().unwrap().to_string());
                    }
                    StatusCode::ACCEPTED | StatusCode::TOO_MANY_REQUESTS => {}
                    StatusCode::UNAUTHORIZED => break,
                    other => panic!("unexpected {other}: {}", r.text().await.unwrap()),
                }
                answered.fetch_add(1, Ordering::SeqCst);
            }
            tokens
        }));
    }
    let counted: &AtomicUsize = &answered;
    common::eventually(
        "the sub-agent's clients got answers",
        std::time::Duration::from_secs(60),
        || async { counted.load(Ordering::SeqCst) >= 40 },
    )
    .await;
    app.core.suspend_agent(&root.id, "test").await.unwrap();
    let mut tokens = Vec::new();
    for c in clients {
        tokens.extend(c.await.unwrap());
    }
    assert!(!tokens.is_empty());

    // Nothing of the sub-agent's was written after the first agent.suspended event (the
    // parent's; the sub-agents' follow it in the same transaction).
    let events = chain(&app).await;
    let at = events
        .iter()
        .position(|e| e["kind"] == "agent.suspended")
        .unwrap();
    let late: Vec<&Value> = events[at + 1..]
        .iter()
        .filter(|e| {
            ["request.created", "request.approved", "grant.issued"]
                .contains(&e["kind"].as_str().unwrap())
        })
        .collect();
    assert!(late.is_empty(), "committed after the suspension: {late:?}");
    assert_eq!(
        countersign::store::requests::pending_of_agent(app.core.db.reader(), &child.id)
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        countersign::store::grants::issued_of_agent(app.core.db.reader(), &child.id)
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    for token in &tokens {
        assert_eq!(app.redeem(token).await.status(), StatusCode::GONE);
    }
}

/// A body whose claimed chain has `hops` links, the first on behalf of Alice.
fn delegated(amount: &str, hops: usize) -> Value {
    let mut body = transfer(amount);
    let chain: Vec<Value> = (0..hops)
        .map(|i| {
            let principal = if i == 0 {
                "alice@example.com".to_string()
            } else {
                format!("agent-{}", i - 1)
            };
            json!({ "actor": format!("agent-{i}"), "on_behalf_of": principal })
        })
        .collect();
    if hops > 0 {
        body["context"]["delegation"] = json!(chain);
    }
    body
}

async fn policy_matches_delegation_depth_and_under_reporting_does_not_help(backend: Backend) {
    let (app, _alice, direct) = TestApp::with_alice(backend).await;
    app.core.apply_policy(POLICY, "test").await.unwrap();
    // The round trip: what `policy show` prints applies again as the same version.
    let shown = app.core.show_policy().await.unwrap();
    assert!(shown.contains("delegation_depth_at_least = 2\n"), "{shown}");
    let (version, _) = app.core.apply_policy(&shown, "test").await.unwrap();
    assert_eq!(version, 1, "the same policy, not a new version");

    // Claimed depth 2 waits, depth 1 (and none) runs at once.
    let r = app
        .agent_post(&direct, "/api/v1/requests", &delegated("10.00", 2))
        .await;
    let v = json_of(r, StatusCode::ACCEPTED).await;
    assert_eq!(v["policy"]["rule"], "delegated-twice");
    assert!(v["policy"]["explanation"]
        .as_str()
        .unwrap()
        .contains("delegated 2 hops deep"));
    for hops in [0, 1] {
        let r = app
            .agent_post(&direct, "/api/v1/requests", &delegated("10.00", hops))
            .await;
        assert_eq!(
            json_of(r, StatusCode::OK).await["status"],
            "approved",
            "{hops}"
        );
    }
    // A registered grandchild that claims nothing is still depth 2; its parent is depth 1.
    let (_root, child, grandchild) = family(&app).await;
    let v = json_of(
        app.agent_post(&grandchild, "/api/v1/requests", &transfer("10.00"))
            .await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(v["policy"]["rule"], "delegated-twice");
    let r = app
        .agent_post(&child, "/api/v1/requests", &transfer("10.00"))
        .await;
    assert_eq!(json_of(r, StatusCode::OK).await["status"], "approved");
    // Claiming one hop does not lower it either.
    let v = json_of(
        app.agent_post(&grandchild, "/api/v1/requests", &delegated("10.01", 1))
            .await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(v["policy"]["rule"], "delegated-twice");

    // The dry run (`policy check`) counts the claimed chain.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), POLICY).unwrap();
    let body = delegated("10.00", 3).to_string();
    let out = app.cli(&[
        "policy",
        "check",
        file.path().to_str().unwrap(),
        "--request",
        &body,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("delegated-twice"), "{text}");

    // Nonsense in the file is refused naming the key, and the active policy stays.
    let e = app
        .core
        .apply_policy(
            "[[rule]]\nid = \"x\"\ndelegation_depth_below = 0\noutcome = \"allow\"\n",
            "test",
        )
        .await
        .unwrap_err();
    assert_eq!(field_of(e), "delegation_depth_below");
    assert_eq!(app.core.show_policy().await.unwrap(), shown);
}

async fn the_export_and_the_page_show_the_chain_for_each_decision(backend: Backend) {
    let (app, mut alice, _) = TestApp::with_alice(backend).await;
    app.core.apply_policy(POLICY, "test").await.unwrap();
    let (root, child, grandchild) = family(&app).await;
    let body = delegated("10.00", 1);
    let id = app.ask_id(&grandchild, &body).await;

    // The page reads the chain as actors, and the registered parents by name.
    let html = alice
        .get(&app.http, &format!("/requests/{id}"))
        .await
        .text()
        .await
        .unwrap();
    for shown in [
        "alice@example.com",
        "agent-0",
        "(on behalf of alice@example.com)",
        "pdf-reader (this agent)",
        "Registered as a sub-agent of ",
        "invoice-bot",
        ", under planner-agent",
    ] {
        assert!(html.contains(shown), "{shown} not on the page");
    }
    let page = alice
        .server_json(&app.http, "request_page", &[("id", &id)])
        .await;
    assert_eq!(
        page["shown"]["lineage"],
        json!([{ "id": root.id, "name": "planner-agent" },
               { "id": child.id, "name": "invoice-bot" }])
    );

    alice.approve(&app.http, &id).await;
    let expected = json!({
        "chain": body["context"]["delegation"],
        "lineage": [root.id, child.id],
        "depth": 2,
    });
    let lines: Vec<Value> = app
        .audit_lines(&id)
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for kind in ["request.created", "approval.recorded", "request.approved"] {
        let event = lines.iter().find(|e| e["kind"] == kind).unwrap();
        assert_eq!(event["data"]["delegation"], expected, "{kind}");
    }
    // The grant and the evidence's other events carry no copy of it.
    let grant = lines.iter().find(|e| e["kind"] == "grant.issued").unwrap();
    assert!(grant["data"].get("delegation").is_none());

    // A denial by a person carries it as well.
    let denied = app.ask_id(&grandchild, &delegated("10.02", 1)).await;
    let r = alice
        .decide(
            &app.http,
            &denied,
            &json!({ "decision": "deny", "reason_code": "too_risky" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let lines: Vec<Value> = app
        .audit_lines(&denied)
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let event = lines
        .iter()
        .find(|e| e["kind"] == "request.denied")
        .unwrap();
    assert_eq!(event["data"]["delegation"]["lineage"], expected["lineage"]);

    // A decision of policy at intake carries it too; a request that is not delegated does not.
    let v = json_of(
        app.agent_post(&child, "/api/v1/requests", &delegated("10.00", 0))
            .await,
        StatusCode::OK,
    )
    .await;
    let allowed = v["id"].as_str().unwrap();
    let lines: Vec<Value> = app
        .audit_lines(allowed)
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let approved = lines
        .iter()
        .find(|e| e["kind"] == "request.approved")
        .unwrap();
    assert_eq!(approved["data"]["by"], "policy");
    assert_eq!(
        approved["data"]["delegation"],
        json!({ "chain": [], "lineage": [root.id], "depth": 1 })
    );
    let v = json_of(
        app.agent_post(&root, "/api/v1/requests", &transfer("10.00"))
            .await,
        StatusCode::OK,
    )
    .await;
    for line in app.audit_lines(v["id"].as_str().unwrap()).await {
        assert!(!line.contains("\"delegation\""), "{line}");
    }
    assert!(matches!(
        app.core.verify_audit().await.unwrap(),
        countersign::service::audit::Verification::Intact { .. }
    ));
}

/// Parent changes racing each other and the parent's suspension: two agents each made the
/// other's parent at once never both succeed (no cycle), and a sub-agent registered while its
/// new parent is being suspended is either refused or suspended with it: no active agent is
/// left under a suspended parent.
async fn parent_changes_racing_each_other_and_a_suspension_leave_no_cycle_and_no_active_child(
    backend: Backend,
) {
    let (app, _alice, _) = TestApp::with_alice(backend).await;
    let app = Arc::new(app);
    for round in 0..6 {
        let a = named_agent(&app, "a", "alice@example.com").await;
        let b = named_agent(&app, "b", "alice@example.com").await;
        let (x, y) = (app.clone(), app.clone());
        let (a1, b1, a2, b2) = (a.id.clone(), b.id.clone(), a.id.clone(), b.id.clone());
        let first = tokio::spawn(async move { x.core.set_parent(&a1, Some(&b1), "cli").await });
        let second = tokio::spawn(async move { y.core.set_parent(&b2, Some(&a2), "cli").await });
        let (first, second) = (first.await.unwrap(), second.await.unwrap());
        assert!(
            !(first.is_ok() && second.is_ok()),
            "round {round}: both made the other its parent"
        );
        assert!(
            first.is_ok() || second.is_ok(),
            "round {round}: one of them wins"
        );
    }

    let parent = named_agent(&app, "parent", "alice@example.com").await;
    let mut children = Vec::new();
    for _ in 0..12 {
        children.push(named_agent(&app, "child", "alice@example.com").await);
    }
    let mut tasks = Vec::new();
    for child in &children {
        let (app, child, parent) = (app.clone(), child.id.clone(), parent.id.clone());
        tasks.push(tokio::spawn(async move {
            app.core.set_parent(&child, Some(&parent), "cli").await
        }));
    }
    app.core.suspend_agent(&parent.id, "test").await.unwrap();
    let mut attached = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => attached += 1,
            Err(e) => assert_eq!(field_of(e), "parent"),
        }
    }
    for child in &children {
        let row = countersign::store::agents::get(app.core.db.reader(), &child.id)
            .await
            .unwrap()
            .unwrap();
        if row.parent_id.as_deref() == Some(parent.id.as_str()) {
            assert_eq!(
                row.status.as_str(),
                "suspended",
                "a sub-agent of a suspended parent is active"
            );
        }
    }
    let registered = countersign::store::agents::list(app.core.db.reader(), None)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.parent_id.as_deref() == Some(parent.id.as_str()))
        .count();
    assert_eq!(registered, attached);
}

/// Calls a JSON-encoded server function as `who`.
async fn call(
    app: &TestApp,
    who: &mut common::Person,
    name: &str,
    args: Value,
) -> reqwest::Response {
    who.post(&app.http, &format!("/api/app/{name}"), &args)
        .await
}

/// The policy editor holds the depth keys like any other: a file applied on the command line
/// opens with them, a draft's nonsense is put next to the field, and dry runs count a sample's
/// depth and a recent request's registered lineage.
async fn the_policy_editor_edits_and_dry_runs_depth_rules(backend: Backend) {
    let (app, mut alice, _) = TestApp::with_alice(backend).await;
    app.core.apply_policy(POLICY, "cli").await.unwrap();
    let start = alice
        .server_json(&app.http, "admin/policy_editor", &[])
        .await;
    let rules = start["rules"].as_array().unwrap().clone();
    assert_eq!(rules[0]["delegation_depth_at_least"], "2");
    assert_eq!(rules[0]["delegation_depth_below"], "");

    let mut bad = rules.clone();
    bad[0]["delegation_depth_below"] = json!("2");
    let preview: Value = call(
        &app,
        &mut alice,
        "admin/preview_policy",
        json!({ "draft": { "rules": bad } }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        preview["problems"][0]["field"], "delegation_depth_at_least",
        "{preview}"
    );
    bad[0]["delegation_depth_below"] = json!("two");
    let preview: Value = call(
        &app,
        &mut alice,
        "admin/preview_policy",
        json!({ "draft": { "rules": bad } }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(preview["problems"][0]["field"], "delegation_depth_below");

    let dry_run = |sample: Value| json!({ "draft": { "rules": rules, "sample": sample } });
    for (depth, rule) in [("2", "delegated-twice"), ("1", "small"), ("", "small")] {
        let preview: Value = call(
            &app,
            &mut alice,
            "admin/preview_policy",
            dry_run(
                json!({ "action_type": "payments.transfer", "target": "bank-api",
                            "amount": "10", "currency": "EUR", "delegation_depth": depth }),
            ),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(
            preview["dry_run"]["rule_id"], rule,
            "depth {depth:?}: {preview}"
        );
    }
    let r = call(
        &app,
        &mut alice,
        "admin/preview_policy",
        dry_run(json!({ "action_type": "payments.transfer", "delegation_depth": "-1" })),
    )
    .await;
    assert_eq!(
        json_of(r, StatusCode::BAD_REQUEST).await["Invalid"]["field"],
        "sample.delegation_depth"
    );

    // A recent request of a registered grandchild: its lineage counts in the dry run too.
    let (_root, _child, grandchild) = family(&app).await;
    let id = app.ask_id(&grandchild, &transfer("10.00")).await;
    let preview: Value = call(
        &app,
        &mut alice,
        "admin/preview_policy",
        json!({ "draft": { "rules": rules, "recent": id } }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(preview["dry_run"]["rule_id"], "delegated-twice");
}

on_both_backends!(
    the_policy_editor_edits_and_dry_runs_depth_rules,
    parent_changes_racing_each_other_and_a_suspension_leave_no_cycle_and_no_active_child,
    owners_and_admins_register_sub_agents_and_nonsense_is_refused,
    suspending_a_parent_suspends_every_sub_agent_at_once,
    sub_agent_requests_racing_the_parent_suspension_commit_before_it_or_not_at_all,
    policy_matches_delegation_depth_and_under_reporting_does_not_help,
    the_export_and_the_page_show_the_chain_for_each_decision,
);
