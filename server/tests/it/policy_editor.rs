//! The rule-by-rule policy editor: the same model as `countersign policy apply/show` (a file
//! applied on the command line shows up as rules, rules applied in the editor read back as the
//! file), problems named next to their fields, the draft's diff and dry runs, a new version on
//! apply that the next agent request follows, and a refusal when someone applied meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{transfer, Backend, Person, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const FILE: &str = r#"[[rule]]
id = "small-payments"
action = "payments.*"
amount_below = { value = "100.00", currency = "EUR" }
outcome = "allow"

[[rule]]
id = "big-payments"
action = "payments.*"
amount_at_least = { value = "100.00", currency = "EUR" }
outcome = "require"
approvals = 1
approvers = ["owner"]

[[rule]]
id = "no-restricted"
data_sensitivity = ["restricted"]
outcome = "deny"
reason = "Restricted data never leaves"
"#;

async fn editor(app: &TestApp, admin: &mut Person) -> Value {
    admin
        .server_json(&app.http, "admin/policy_editor", &[])
        .await
}

/// Calls a JSON-encoded server function.
async fn call(app: &TestApp, who: &mut Person, name: &str, args: Value) -> reqwest::Response {
    who.post(&app.http, &format!("/api/app/{name}"), &args)
        .await
}

async fn a_cli_file_is_the_editors_rules_and_back(backend: Backend) {
    let (app, mut alice, _agent) = TestApp::with_alice(backend).await;
    let (v1, _) = app.core.apply_policy(FILE, "cli").await.unwrap();
    let start = editor(&app, &mut alice).await;
    assert_eq!(start["version"], v1);
    let rules = start["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["small-payments", "big-payments", "no-restricted"]);
    assert_eq!(rules[0]["amount_below"], "100.00");
    assert_eq!(rules[0]["amount_currency"], "EUR");
    assert_eq!(rules[1]["approvers"], "owner");
    assert_eq!(rules[2]["data_sensitivity"], json!(["restricted"]));

    // Applying the rules unchanged is a no-op: same version, same file.
    let r = call(
        &app,
        &mut alice,
        "admin/apply_policy_draft",
        json!({ "base_version": v1, "rules": rules }),
    )
    .await;
    assert_eq!(common::json_of(r, StatusCode::OK).await, v1);
    let before = app.core.show_policy().await.unwrap();

    // Moving the threshold in the editor is the file with that threshold.
    let mut edited = rules.clone();
    edited[0]["amount_below"] = json!("250");
    edited[1]["amount_at_least"] = json!("250");
    let r = call(
        &app,
        &mut alice,
        "admin/apply_policy_draft",
        json!({ "base_version": v1, "rules": edited }),
    )
    .await;
    let v2 = common::json_of(r, StatusCode::OK).await;
    assert_eq!(v2, v1 + 1);
    let shown = app.core.show_policy().await.unwrap();
    assert_eq!(shown, before.replace("\"100.00\"", "\"250\""));
    let history: Vec<Value> = serde_json::from_value(
        alice
            .server_json(&app.http, "admin/policy_history", &[])
            .await,
    )
    .unwrap();
    assert_eq!(history[0]["applied_by"], format!("user:{}", alice.id));
}

async fn drafts_are_checked_field_by_field_and_dry_run(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    app.core.apply_policy(FILE, "cli").await.unwrap();
    let start = editor(&app, &mut alice).await;
    let mut rules = start["rules"].as_array().unwrap().clone();

    // Problems come back next to their fields, for every rule at once.
    rules[0]["amount_below"] = json!("lots");
    rules[1]["approvals"] = json!("3");
    rules[2]["outcome"] = json!("maybe");
    let r = call(
        &app,
        &mut alice,
        "admin/preview_policy",
        json!({ "draft": { "rules": rules } }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let preview: Value = r.json().await.unwrap();
    let named: Vec<(i64, &str)> = preview["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["rule"].as_i64().unwrap(), p["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        named,
        [(0, "amount_below"), (1, "approvals"), (2, "outcome")],
        "{preview}"
    );
    assert_eq!(preview["text"], "");
    // An invalid draft is never applied.
    let r = call(
        &app,
        &mut alice,
        "admin/apply_policy_draft",
        json!({ "base_version": start["version"], "rules": rules }),
    )
    .await;
    assert_eq!(
        common::json_of(r, StatusCode::BAD_REQUEST).await["Invalid"]["field"],
        "amount_below"
    );

    // A valid draft: the diff against the active file, and a dry run of a sample.
    let mut rules = start["rules"].as_array().unwrap().clone();
    rules[1]["approvals"] = json!("2");
    rules[1]["approvers"] = json!("group:finance, group:sre");
    rules[1]["all_groups"] = json!(true);
    let sample = json!({ "action_type": "payments.transfer", "target": "bank-api",
                         "amount": "500", "currency": "eur" });
    let preview: Value = call(
        &app,
        &mut alice,
        "admin/preview_policy",
        json!({ "draft": { "rules": rules, "sample": sample } }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(preview["problems"], json!([]), "{preview}");
    let changed: Vec<(&str, &str)> = preview["diff"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["op"] != "same")
        .map(|l| (l["op"].as_str().unwrap(), l["line"].as_str().unwrap()))
        .collect();
    assert!(changed.contains(&("added", "approvals = 2")), "{changed:?}");
    assert!(
        changed.contains(&("removed", "approvals = 1")),
        "{changed:?}"
    );
    let run = &preview["dry_run"];
    assert_eq!(run["rule_id"], "big-payments");
    assert_eq!(run["outcome"], "require");
    assert_eq!(run["approvals"], 2);
    assert_eq!(run["passed_over"][0][0], "small-payments");
    assert!(
        run["passed_over"][0][1].as_str().unwrap().contains("500"),
        "{run}"
    );

    // A recent real request, by id.
    let id = app.ask_id(&agent, &transfer("5000.00")).await;
    let start = editor(&app, &mut alice).await;
    assert!(start["recent"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r[0] == id.as_str()));
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
    assert_eq!(preview["dry_run"]["rule_id"], "big-payments");
    assert!(preview["dry_run"]["request"]
        .as_str()
        .unwrap()
        .contains(&id));

    // A sample without an action type is refused, naming the field.
    let r = call(
        &app,
        &mut alice,
        "admin/preview_policy",
        json!({ "draft": { "rules": rules, "sample": { "amount": "5" , "currency": "EUR" } } }),
    )
    .await;
    assert_eq!(
        common::json_of(r, StatusCode::BAD_REQUEST).await["Invalid"]["field"],
        "sample.action_type"
    );
}

async fn the_next_request_takes_the_new_path(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    app.enrol("fin@example.com", "owner", &["finance"]).await;
    let apply = |rules: Value, base: Value| json!({ "base_version": base, "rules": rules });
    let rule = |outcome: Value| {
        let mut r = json!({ "id": "payments", "action": "payments.*" });
        r.as_object_mut()
            .unwrap()
            .extend(outcome.as_object().unwrap().clone());
        json!([r])
    };
    let allow = json!({ "outcome": "allow" });
    let two =
        json!({ "outcome": "require", "approvals": "2", "approvers": "owner, group:finance" });
    let deny = json!({ "outcome": "deny", "reason": "Not today" });
    for (outcome, status, check) in [
        (allow, StatusCode::OK, ("status", json!("approved"))),
        (two, StatusCode::ACCEPTED, ("status", json!("pending"))),
        (
            deny,
            StatusCode::FORBIDDEN,
            ("error", json!("denied_by_policy")),
        ),
    ] {
        let base = editor(&app, &mut alice).await["version"].clone();
        let r = call(
            &app,
            &mut alice,
            "admin/apply_policy_draft",
            apply(rule(outcome.clone()), base),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK, "{outcome}");
        let r = app
            .agent_post(&agent, "/api/v1/requests", &transfer("50.00"))
            .await;
        assert_eq!(r.status(), status, "{outcome}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body[check.0], check.1, "{body}");
        if status == StatusCode::ACCEPTED {
            assert_eq!(body["policy"]["approvals_required"], 2, "{body}");
            assert_eq!(body["policy"]["rule"], "payments", "{body}");
        }
    }
}

async fn a_stale_editor_does_not_undo_someone_elses_version(backend: Backend) {
    let (app, mut alice, _agent) = TestApp::with_alice(backend).await;
    let mut carol = app.enrol("carol@example.com", "admin", &[]).await;
    app.core.apply_policy(FILE, "cli").await.unwrap();
    let mine = editor(&app, &mut alice).await;
    let theirs = editor(&app, &mut carol).await;
    let mut rules = theirs["rules"].as_array().unwrap().clone();
    rules.truncate(1);
    let r = call(
        &app,
        &mut carol,
        "admin/apply_policy_draft",
        json!({ "base_version": theirs["version"], "rules": rules }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = call(
        &app,
        &mut alice,
        "admin/apply_policy_draft",
        json!({ "base_version": mine["version"], "rules": mine["rules"] }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(app
        .core
        .show_policy()
        .await
        .unwrap()
        .contains("small-payments"));
    assert!(!app
        .core
        .show_policy()
        .await
        .unwrap()
        .contains("no-restricted"));
}

async fn only_admins_use_the_editor(backend: Backend) {
    let (app, _alice, _agent) = TestApp::with_alice(backend).await;
    let mut bob = app.enrol("bob@example.com", "owner", &[]).await;
    let r = bob.server_fn(&app.http, "admin/policy_editor", &[]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .stranger()
        .server_fn(&app.http, "admin/policy_editor", &[])
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let rules = json!([{ "id": "all", "outcome": "allow" }]);
    for (name, args) in [
        (
            "admin/preview_policy",
            json!({ "draft": { "rules": rules } }),
        ),
        (
            "admin/apply_policy_draft",
            json!({ "base_version": 0, "rules": rules }),
        ),
    ] {
        let r = call(&app, &mut bob, name, args.clone()).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name} as an owner");
        let r = call(&app, &mut app.stranger(), name, args).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name} signed out");
    }
    assert_eq!(app.core.active_policy().await.unwrap().version, 0);
}

on_both_backends!(
    a_cli_file_is_the_editors_rules_and_back,
    drafts_are_checked_field_by_field_and_dry_run,
    the_next_request_takes_the_new_path,
    a_stale_editor_does_not_undo_someone_elses_version,
    only_admins_use_the_editor,
);
