//! The request and grant lifecycles as the store enforces them: every transition in a
//! lifecycle's table happens (on the right side of its deadline), and every one that is not in
//! it is refused by the store before it writes, leaving the row as it was. Agents and people
//! too. On SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Backend, TestApp};
use countersign::domain::lifecycle::{
    grant, request, AgentStatus, Deadline, GrantStatus, RequestStatus, UserStatus,
};
use countersign::store::grants::{self, GrantRow};
use countersign::store::group::StatementGroup;
use countersign::store::requests::{self, Change, RequestRow};
use countersign::store::{agents, users, StoreError};
use strum::VariantArray;

/// A fixed "now" for the rows below; the store takes time as an argument.
const T: i64 = 1_900_000_000_000;
const HOUR: i64 = 3_600_000;

fn request_row(id: &str, agent_id: &str, status: RequestStatus, expires_at: i64) -> RequestRow {
    let decided = status.is_final();
    RequestRow {
        id: id.into(),
        agent_id: agent_id.into(),
        status,
        action_hash: format!("sha256:{id}"),
        body: "{}".into(),
        action_type: "payments.transfer".into(),
        target: "bank".into(),
        policy_version: 1,
        policy_hash: "sha256:p".into(),
        rule_id: "default".into(),
        explanation: "test".into(),
        approvals_required: 1,
        approver_rule: "{}".into(),
        grant_ttl_seconds: 60,
        credential: None,
        credential_ttl_seconds: None,
        created_at: T - HOUR,
        expires_at,
        decided_at: decided.then_some(T - HOUR),
        decided_by: decided.then(|| "policy".into()),
        reason_code: None,
        reason: None,
    }
}

/// For a row whose deadline is `T + HOUR`: a time on the wrong side of it for a transition
/// (None when there is no wrong side), and a time on the right side.
fn sides_of(deadline: Deadline) -> (Option<i64>, i64) {
    match deadline {
        Deadline::Before => (Some(T + 2 * HOUR), T),
        Deadline::After => (Some(T), T + 2 * HOUR),
        Deadline::Any => (None, T),
    }
}

fn is_refused(result: Result<bool, StoreError>, from: &str, to: &str) -> bool {
    match result {
        Err(StoreError::IllegalTransition(t)) => t.from == from && t.to == to,
        _ => false,
    }
}

/// Puts a new request in `status` by the lifecycle's own paths: created in it when that is an
/// initial status, else created pending and moved there.
async fn request_in(app: &TestApp, agent_id: &str, status: RequestStatus, n: usize) -> String {
    let id = format!("00000000-0000-7000-8000-{n:012}");
    let expires_at = if status == RequestStatus::Expired {
        T - 1
    } else {
        T + HOUR
    };
    let created_as = if status.is_initial() {
        status
    } else {
        RequestStatus::Pending
    };
    let mut tx = app.core.db.begin().await.unwrap();
    let row = request_row(&id, agent_id, created_as, expires_at);
    let mut group = StatementGroup::new(app.core.db.backend());
    requests::insert_rows(&mut group, vec![&row]).unwrap();
    group.execute(&mut tx).await.unwrap();
    if created_as != status {
        let c = Change::from_pending(status, T, "test");
        assert!(
            requests::change(&mut tx, &id, &c).await.unwrap(),
            "{status}"
        );
    }
    tx.commit().await.unwrap();
    id
}

async fn status_of_request(app: &TestApp, id: &str) -> RequestStatus {
    requests::get(app.core.db.reader(), id)
        .await
        .unwrap()
        .unwrap()
        .status
}

async fn every_request_transition_outside_the_table_is_refused(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    let mut n = 0;
    let (mut made, mut refused) = (0, 0);
    for &from in RequestStatus::VARIANTS {
        for &to in RequestStatus::VARIANTS {
            n += 1;
            let id = request_in(&app, &agent.id, from, n).await;
            let in_table = request::TRANSITIONS
                .iter()
                .find(|t| t.from == from && t.to == to);
            let mut tx = app.core.db.begin().await.unwrap();
            match in_table {
                Some(t) => {
                    // The wrong side of the deadline first: refused by the condition, not the
                    // table, and nothing changes.
                    let (wrong, right) = sides_of(t.deadline);
                    if let Some(at) = wrong {
                        let c = Change {
                            from,
                            ..Change::from_pending(to, at, "test")
                        };
                        assert!(
                            !requests::change(&mut tx, &id, &c).await.unwrap(),
                            "{from}->{to}"
                        );
                    }
                    let c = Change {
                        from,
                        ..Change::from_pending(to, right, "test")
                    };
                    assert!(
                        requests::change(&mut tx, &id, &c).await.unwrap(),
                        "{from}->{to}"
                    );
                    tx.commit().await.unwrap();
                    assert_eq!(status_of_request(&app, &id).await, to);
                    made += 1;
                }
                None => {
                    for at in [T, T + 2 * HOUR] {
                        let c = Change {
                            from,
                            ..Change::from_pending(to, at, "test")
                        };
                        let result = requests::change(&mut tx, &id, &c).await;
                        assert!(
                            is_refused(result, from.as_str(), to.as_str()),
                            "{from} -> {to} was not refused"
                        );
                    }
                    tx.commit().await.unwrap();
                    assert_eq!(status_of_request(&app, &id).await, from, "{from} -> {to}");
                    refused += 1;
                }
            }
        }
    }
    assert_eq!((made, refused), (4, 21));

    // Nor can a request be created in a status only a transition reaches.
    for &status in RequestStatus::VARIANTS.iter().filter(|s| !s.is_initial()) {
        n += 1;
        let id = format!("00000000-0000-7000-8000-{n:012}");
        let tx = app.core.db.begin().await.unwrap();
        let row = request_row(&id, &agent.id, status, T);
        let mut group = StatementGroup::new(app.core.db.backend());
        let result = requests::insert_rows(&mut group, vec![&row]).map(|()| true);
        assert!(
            is_refused(result, "nothing", status.as_str()),
            "created {status}"
        );
        tx.commit().await.unwrap();
        assert!(requests::get(app.core.db.reader(), &id)
            .await
            .unwrap()
            .is_none());
    }
    // The kill switch's bulk cancel takes the same table: it moves pending requests only.
    let mut tx = app.core.db.begin().await.unwrap();
    let c = Change::from_pending(RequestStatus::Cancelled, T, "system");
    let cancelled = requests::cancel_all_of_agent(&mut tx, &agent.id, &c)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    for id in &cancelled {
        assert_eq!(status_of_request(&app, id).await, RequestStatus::Cancelled);
    }
}

/// Puts a new grant in `status` by the lifecycle's own paths.
async fn grant_in(app: &TestApp, agent_id: &str, status: GrantStatus, n: usize) -> String {
    let request_id = request_in(app, agent_id, RequestStatus::Approved, 1000 + n).await;
    let jti = format!("grant-{n}");
    let epoch = agents::get(app.core.db.reader(), agent_id)
        .await
        .unwrap()
        .unwrap()
        .epoch;
    let expires_at = if status == GrantStatus::Expired {
        T - 1
    } else {
        T + HOUR
    };
    let mut tx = app.core.db.begin().await.unwrap();
    let row = GrantRow {
        jti: jti.clone(),
        request_id,
        agent_id: agent_id.into(),
        status: grant::INITIAL,
        claims: "{}".into(),
        issued_at: T - HOUR,
        expires_at,
        redeemed_at: None,
        revoked_at: None,
        outcome: None,
        reported_at: None,
        agent_epoch: epoch,
    };
    grants::insert(&mut tx, &row).await.unwrap();
    if status != grant::INITIAL {
        let moved = grants::change(&mut tx, &jti, grant::INITIAL, status, T)
            .await
            .unwrap();
        assert!(moved, "{status}");
    }
    tx.commit().await.unwrap();
    jti
}

async fn status_of_grant(app: &TestApp, jti: &str) -> GrantStatus {
    grants::get(app.core.db.reader(), jti)
        .await
        .unwrap()
        .unwrap()
        .status
}

async fn every_grant_transition_outside_the_table_is_refused(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    let mut n = 0;
    let (mut made, mut refused) = (0, 0);
    for &from in GrantStatus::VARIANTS {
        for &to in GrantStatus::VARIANTS {
            n += 1;
            let jti = grant_in(&app, &agent.id, from, n).await;
            let in_table = grant::TRANSITIONS
                .iter()
                .find(|t| t.from == from && t.to == to);
            let mut tx = app.core.db.begin().await.unwrap();
            match in_table {
                Some(t) => {
                    let (wrong, right) = sides_of(t.deadline);
                    if let Some(at) = wrong {
                        let moved = grants::change(&mut tx, &jti, from, to, at).await.unwrap();
                        assert!(!moved, "{from} -> {to} on the wrong side of exp");
                    }
                    assert!(grants::change(&mut tx, &jti, from, to, right)
                        .await
                        .unwrap());
                    tx.commit().await.unwrap();
                    assert_eq!(status_of_grant(&app, &jti).await, to);
                    made += 1;
                }
                None => {
                    for at in [T, T + 2 * HOUR] {
                        let result = grants::change(&mut tx, &jti, from, to, at).await;
                        assert!(
                            is_refused(result, from.as_str(), to.as_str()),
                            "{from} -> {to} was not refused"
                        );
                    }
                    tx.commit().await.unwrap();
                    assert_eq!(status_of_grant(&app, &jti).await, from, "{from} -> {to}");
                    refused += 1;
                }
            }
        }
    }
    assert_eq!((made, refused), (3, 13));

    // A grant is created issued, never in a later status.
    for &status in GrantStatus::VARIANTS
        .iter()
        .filter(|s| **s != grant::INITIAL)
    {
        let request_id = request_in(&app, &agent.id, RequestStatus::Approved, 5000 + n).await;
        n += 1;
        let mut tx = app.core.db.begin().await.unwrap();
        let row = GrantRow {
            jti: format!("born-{status}"),
            request_id,
            agent_id: agent.id.clone(),
            status,
            claims: "{}".into(),
            issued_at: T,
            expires_at: T + HOUR,
            redeemed_at: None,
            revoked_at: None,
            outcome: None,
            reported_at: None,
            agent_epoch: 0,
        };
        let result = grants::insert(&mut tx, &row).await.map(|()| true);
        assert!(
            is_refused(result, "nothing", status.as_str()),
            "created {status}"
        );
        tx.commit().await.unwrap();
        assert!(grants::get(app.core.db.reader(), &row.jti)
            .await
            .unwrap()
            .is_none());
    }
}

async fn agents_and_people_move_only_between_their_two_statuses(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    let alice_id = app.person_id("alice@example.com").await;
    for &from in AgentStatus::VARIANTS {
        for &to in AgentStatus::VARIANTS {
            let mut tx = app.core.db.begin().await.unwrap();
            let result = agents::set_status(&mut tx, &agent.id, from, to).await;
            tx.commit().await.unwrap();
            if from == to {
                assert!(
                    is_refused(result, from.as_str(), to.as_str()),
                    "{from} -> {to}"
                );
            } else {
                // The agent is active at the start of each pair's first move, so only one
                // direction finds it in `from`; the other is a lost race (false), not an error.
                result.unwrap();
            }
        }
    }
    for &from in UserStatus::VARIANTS {
        for &to in UserStatus::VARIANTS {
            let mut tx = app.core.db.begin().await.unwrap();
            let result = users::set_status(&mut tx, &alice_id, from, to).await;
            tx.rollback().await.unwrap();
            if from == to {
                assert!(
                    is_refused(result, from.as_str(), to.as_str()),
                    "{from} -> {to}"
                );
            } else {
                result.unwrap();
            }
        }
    }
}

on_both_backends!(
    every_request_transition_outside_the_table_is_refused,
    every_grant_transition_outside_the_table_is_refused,
    agents_and_people_move_only_between_their_two_statuses,
);
