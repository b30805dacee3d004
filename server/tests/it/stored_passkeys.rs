//! Passkeys stored by an older webauthn-rs keep working after an upgrade.
//!
//! `tests/it/fixtures/passkey-webauthn-rs-0.5.json` holds what Countersign on webauthn-rs 0.5.5
//! stored for a person and two passkeys (the `passkeys.passkey` JSON exactly as `store::users`
//! wrote it), plus the private key of the first one. It was written, through the real
//! enrolment and sign-in ceremonies, by this file's previous version (see the commit that added
//! the fixture; a generator cannot run again on a newer webauthn-rs). Here those rows go into a
//! real database and the person signs in and approves with that key, on both databases.
//!
//! The assertions are made by hand from the key (the software authenticators of
//! webauthn-authenticator-rs cannot load a key from outside), as an authenticator does:
//! authenticator data = SHA-256(RP id) ‖ flags ‖ counter, signed with ECDSA P-256 together
//! with SHA-256 of the client data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{transfer, Backend, Person, TestApp};
use p256::ecdsa::signature::Signer;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const FIXTURE: &str = include_str!("fixtures/passkey-webauthn-rs-0.5.json");

/// User present and user verified.
const FLAGS_UP_UV: u8 = 0b0000_0101;

/// The authenticator that holds the fixture's first passkey.
struct OldKey {
    credential_id: String,
    key: p256::ecdsa::SigningKey,
    rp_id: String,
    counter: u32,
}

impl OldKey {
    fn from_fixture(fixture: &Value) -> Self {
        let der = URL_SAFE_NO_PAD
            .decode(
                fixture["authenticator"]["private_key_sec1_der"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
        let secret = p256::SecretKey::from_sec1_der(&der).unwrap();
        Self {
            credential_id: fixture["passkeys"][0]["credential_id"]
                .as_str()
                .unwrap()
                .to_string(),
            key: p256::ecdsa::SigningKey::from(&secret),
            rp_id: fixture["rp_id"].as_str().unwrap().to_string(),
            counter: u32::try_from(fixture["authenticator"]["counter"].as_u64().unwrap()).unwrap(),
        }
    }

    /// An assertion for the challenge in `options` (a `RequestChallengeResponse` as JSON),
    /// made in `browser`'s origin with this signature counter; `user_handle` as a discoverable
    /// credential answers.
    fn assert(
        &self,
        browser: &Person,
        options: &Value,
        counter: u32,
        user_handle: Option<&[u8]>,
    ) -> Value {
        let client_data = serde_json::to_vec(&json!({
            "type": "webauthn.get",
            "challenge": options["publicKey"]["challenge"],
            "origin": browser.origin.as_str().trim_end_matches('/'),
        }))
        .unwrap();
        let mut authenticator_data = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        authenticator_data.push(FLAGS_UP_UV);
        authenticator_data.extend_from_slice(&counter.to_be_bytes());
        let mut signed = authenticator_data.clone();
        signed.extend_from_slice(&Sha256::digest(&client_data));
        let signature: p256::ecdsa::Signature = self.key.sign(&signed);
        json!({
            "id": self.credential_id,
            "rawId": self.credential_id,
            "type": "public-key",
            "extensions": {},
            "response": {
                "authenticatorData": URL_SAFE_NO_PAD.encode(&authenticator_data),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(&client_data),
                "signature": URL_SAFE_NO_PAD.encode(signature.to_der().as_bytes()),
                "userHandle": user_handle.map(|h| URL_SAFE_NO_PAD.encode(h)),
            },
        })
    }
}

/// Writes the fixture's person and passkeys into the server's database with the store's own
/// functions, as if they had been enrolled before the upgrade.
async fn load_fixture(app: &TestApp, fixture: &Value) {
    use countersign::store::users::{self, PasskeyRow, UserRow};
    let user = &fixture["user"];
    let user_id = user["id"].as_str().unwrap().to_string();
    let now = app.core.now();
    let mut tx = app.core.db.begin().await.unwrap();
    users::insert(
        &mut tx,
        &UserRow {
            id: user_id.clone(),
            email: user["email"].as_str().unwrap().to_string(),
            display_name: user["display_name"].as_str().unwrap().to_string(),
            role: user["role"].as_str().unwrap().parse().unwrap(),
            status: "active".parse().unwrap(),
            created_at: now,
            last_sign_in_at: None,
            groups: serde_json::from_value(user["groups"].clone()).unwrap(),
        },
    )
    .await
    .unwrap();
    for (i, p) in fixture["passkeys"].as_array().unwrap().iter().enumerate() {
        users::insert_passkey(
            &mut tx,
            &PasskeyRow {
                id: uuid::Uuid::new_v4().to_string(),
                user_id: user_id.clone(),
                credential_id: p["credential_id"].as_str().unwrap().to_string(),
                name: p["name"].as_str().unwrap().to_string(),
                passkey: p["passkey"].as_str().unwrap().to_string(),
                created_at: now + i as i64,
                last_used_at: None,
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

/// Signs in with an assertion answering a started sign-in; returns the finish response.
async fn sign_in(
    app: &TestApp,
    browser: &mut Person,
    key: &OldKey,
    start_body: Value,
    counter: u32,
    user_handle: Option<&[u8]>,
) -> reqwest::Response {
    let start = browser
        .post(&app.http, "/api/ui/sign-in/start", &start_body)
        .await;
    assert_eq!(start.status(), StatusCode::OK);
    let start: Value = start.json().await.unwrap();
    let credential = key.assert(browser, &start["options"], counter, user_handle);
    browser
        .post(
            &app.http,
            "/api/ui/sign-in/finish",
            &json!({ "ceremony_id": start["ceremony_id"], "credential": credential }),
        )
        .await
}

async fn passkeys_stored_by_webauthn_rs_0_5_sign_in_and_approve(backend: Backend) {
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    let app = TestApp::spawn(backend).await;
    load_fixture(&app, &fixture).await;
    let key = OldKey::from_fixture(&fixture);
    let email = fixture["user"]["email"].as_str().unwrap();
    let user_id = fixture["user"]["id"].as_str().unwrap();

    // Sign-in by address: both stored passkeys are read back and offered.
    let mut browser = app.stranger();
    let start = browser
        .post(
            &app.http,
            "/api/ui/sign-in/start",
            &json!({ "email": email }),
        )
        .await;
    assert_eq!(start.status(), StatusCode::OK);
    let start: Value = start.json().await.unwrap();
    let offered: Vec<&str> = start["options"]["publicKey"]["allowCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let stored: Vec<&str> = fixture["passkeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["credential_id"].as_str().unwrap())
        .collect();
    assert_eq!(offered, stored);

    // The stored signature counter is in force: the counter the key last used under 0.5 is
    // refused as a possible clone, the next one accepted.
    let replayed = key.assert(&browser, &start["options"], key.counter, None);
    let r = browser
        .post(
            &app.http,
            "/api/ui/sign-in/finish",
            &json!({ "ceremony_id": start["ceremony_id"], "credential": replayed }),
        )
        .await;
    common::problem(r, StatusCode::FORBIDDEN, "access_denied").await;
    let r = sign_in(
        &app,
        &mut browser,
        &key,
        json!({ "email": email }),
        key.counter + 1,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["id"], user_id);

    // The passkey's JSON, rewritten by the new version with the advanced counter, is read
    // back for a decision: the person approves a request with the same key.
    let agent = app.agent(email).await;
    let id = app.ask_id(&agent, &transfer("12.00")).await;
    let start = browser
        .start_decision(&app.http, &id, &json!({ "decision": "approve" }))
        .await;
    assert_eq!(start.status(), StatusCode::OK);
    let start: Value = start.json().await.unwrap();
    let credential = key.assert(&browser, &start["options"], key.counter + 2, None);
    let r = browser
        .post(
            &app.http,
            &format!("/api/ui/requests/{id}/decision/finish"),
            &json!({ "ceremony_id": start["ceremony_id"], "credential": credential }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert_eq!(app.state(&agent, &id).await["status"], "approved");

    // Sign-in without an address (the browser's passkey picker): the credential names its
    // person by the user handle stored at enrolment.
    let mut picker = app.stranger();
    let handle = uuid::Uuid::parse_str(user_id).unwrap();
    let r = sign_in(
        &app,
        &mut picker,
        &key,
        json!({}),
        key.counter + 3,
        Some(handle.as_bytes()),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());

    let rows = countersign::store::users::passkeys(app.core.db.reader(), user_id)
        .await
        .unwrap();
    let counter =
        |json: &str| serde_json::from_str::<Value>(json).unwrap()["cred"]["counter"].clone();
    assert_eq!(counter(&rows[0].passkey), json!(key.counter + 3));
    assert_eq!(
        rows[1].passkey,
        fixture["passkeys"][1]["passkey"].as_str().unwrap()
    );
}

on_both_backends!(passkeys_stored_by_webauthn_rs_0_5_sign_in_and_approve);
