//! Passkeys stored by an older webauthn-rs keep working after an upgrade.
//!
//! This version of the file only writes the fixture: run on webauthn-rs 0.5 with
//! `cargo test -p countersign --test stored_passkeys -- --ignored`, it enrols a person with a
//! software authenticator through the real HTTP ceremonies, signs them in once, and writes to
//! `tests/fixtures/passkey-webauthn-rs-0.5.json` what the database then holds for them (the
//! `passkeys.passkey` JSON exactly as `store::users` persisted it) together with the
//! authenticator's private key, so that a later version can sign with the same credential.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::softtoken::SoftToken;
use webauthn_authenticator_rs::AuthenticatorBackend;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/passkey-webauthn-rs-0.5.json"
);

/// The one private key a `SoftToken` holds after one registration: its serialised state is
/// CBOR with `tokens: {credential id: SEC1 DER}`.
fn only_key(token: &SoftToken) -> (Vec<u8>, Vec<u8>) {
    let state: serde_cbor_2::Value = serde_cbor_2::from_slice(&token.to_cbor().unwrap()).unwrap();
    let serde_cbor_2::Value::Map(state) = state else {
        panic!("SoftToken state is not a map")
    };
    let tokens = &state[&serde_cbor_2::Value::Text("tokens".into())];
    let serde_cbor_2::Value::Map(tokens) = tokens else {
        panic!("SoftToken tokens are not a map")
    };
    assert_eq!(tokens.len(), 1);
    let bytes = |v: &serde_cbor_2::Value| -> Vec<u8> {
        match v {
            serde_cbor_2::Value::Bytes(b) => b.clone(),
            serde_cbor_2::Value::Array(a) => a
                .iter()
                .map(|x| match x {
                    serde_cbor_2::Value::Integer(i) => u8::try_from(*i).unwrap(),
                    other => panic!("not a byte: {other:?}"),
                })
                .collect(),
            other => panic!("not bytes: {other:?}"),
        }
    };
    let (id, der) = tokens.iter().next().unwrap();
    (bytes(id), bytes(der))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "writes the fixture; run once on webauthn-rs 0.5"]
async fn write_the_webauthn_rs_0_5_fixture() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let email = "old-passkey@example.com";
    let link = app.core.bootstrap_admin_link().await.unwrap().unwrap();
    let token = link.expose().rsplit('/').next().unwrap().to_string();
    let mut browser = app.stranger();
    let (mut key, _ca) = SoftToken::new(true).unwrap();

    let start = browser
        .post(
            &app.http,
            "/api/ui/enrol/start",
            &json!({ "token": token, "email": email, "display_name": "Olga Old", "passkey_name": "SoftToken 0.5" }),
        )
        .await;
    assert_eq!(start.status(), StatusCode::OK);
    let start: Value = start.json().await.unwrap();
    let options: CreationChallengeResponse =
        serde_json::from_value(start["options"].clone()).unwrap();
    let credential = key
        .perform_register(browser.origin.clone(), options.public_key, 60_000)
        .unwrap();
    let finish = browser
        .post(
            &app.http,
            "/api/ui/enrol/finish",
            &json!({ "ceremony_id": start["ceremony_id"], "credential": credential }),
        )
        .await;
    assert_eq!(
        finish.status(),
        StatusCode::OK,
        "{}",
        finish.text().await.unwrap()
    );

    // One sign-in under 0.5, so the stored JSON is the one `update_credential` rewrote (the
    // state of a passkey in use), with the signature counter at 1.
    let start = browser
        .post(
            &app.http,
            "/api/ui/sign-in/start",
            &json!({ "email": email }),
        )
        .await;
    assert_eq!(start.status(), StatusCode::OK);
    let start: Value = start.json().await.unwrap();
    let options: RequestChallengeResponse =
        serde_json::from_value(start["options"].clone()).unwrap();
    let assertion = key
        .perform_auth(browser.origin.clone(), options.public_key, 60_000)
        .unwrap();
    let finish = browser
        .post(
            &app.http,
            "/api/ui/sign-in/finish",
            &json!({ "ceremony_id": start["ceremony_id"], "credential": assertion }),
        )
        .await;
    assert_eq!(
        finish.status(),
        StatusCode::OK,
        "{}",
        finish.text().await.unwrap()
    );

    // A second passkey, from SoftPasskey (packed self-attestation, no certificate): its private
    // key is not kept, it is there to be read back (a person's passkeys are all loaded when
    // they sign in by e-mail address).
    let start = browser
        .post(
            &app.http,
            "/api/ui/passkeys/start",
            &json!({ "passkey_name": "SoftPasskey 0.5" }),
        )
        .await;
    assert_eq!(start.status(), StatusCode::OK);
    let start: Value = start.json().await.unwrap();
    let options: CreationChallengeResponse =
        serde_json::from_value(start["options"].clone()).unwrap();
    let credential = SoftPasskey::new(true)
        .perform_register(browser.origin.clone(), options.public_key, 60_000)
        .unwrap();
    let finish = browser
        .post(
            &app.http,
            "/api/ui/passkeys/finish",
            &json!({ "ceremony_id": start["ceremony_id"], "credential": credential }),
        )
        .await;
    assert_eq!(
        finish.status(),
        StatusCode::OK,
        "{}",
        finish.text().await.unwrap()
    );

    let mut conn = app.core.db.read_conn().await.unwrap();
    let user = countersign::store::users::get_by_email(&mut conn, email)
        .await
        .unwrap()
        .unwrap();
    let rows = countersign::store::users::passkeys(&mut *conn, &user.id)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let (key_id, key_der) = only_key(&key);
    assert_eq!(URL_SAFE_NO_PAD.encode(&key_id), rows[0].credential_id);

    let fixture = json!({
        "about": "A passkey enrolled and used once by Countersign on webauthn-rs 0.5.5, with \
                  webauthn-authenticator-rs 0.5.5's SoftToken (packed attestation with a \
                  certificate chain), plus a second passkey from its SoftPasskey (packed \
                  self-attestation) added afterwards. `user` and `passkeys` are the database \
                  rows as store::users wrote them; `authenticator` is what a later version \
                  needs to sign with the first passkey. Written by tests/stored_passkeys.rs at the \
                  commit that added this file.",
        "rp_id": "localhost",
        "user": {
            "id": user.id,
            "email": user.email,
            "display_name": user.display_name,
            "role": user.role,
            "groups": user.groups,
        },
        "passkeys": rows.iter().map(|row| json!({
            "credential_id": row.credential_id,
            "name": row.name,
            "passkey": row.passkey,
        })).collect::<Vec<_>>(),
        "authenticator": {
            "private_key_sec1_der": URL_SAFE_NO_PAD.encode(&key_der),
            "counter": 1,
        },
    });
    let mut text = serde_json::to_string_pretty(&fixture).unwrap();
    text.push('\n');
    std::fs::write(FIXTURE, text).unwrap();
}
