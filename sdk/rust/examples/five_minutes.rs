//! The top-level README's "Rust in five minutes", runnable against a server started with
//! `make run` and an agent from `countersign agent create`:
//!
//! ```text
//! COUNTERSIGN_API_KEY=cs_agent_… cargo run -p countersign-client --example five_minutes
//! ```
//!
//! `COUNTERSIGN_URL` defaults to `http://localhost:3000`.

use countersign_client::{ApprovalRequest, Client, Credentials, Downstream, Error, Outcome};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url =
        std::env::var("COUNTERSIGN_URL").unwrap_or_else(|_| "http://localhost:3000".to_owned());
    let api_key = std::env::var("COUNTERSIGN_API_KEY")
        .map_err(|_| Error::Config("set COUNTERSIGN_API_KEY to the agent's key".into()))?;

    let agent = Client::new(&url, Credentials::ApiKey(api_key))?
        .on_pending(|s| println!("Approve at {}", s.approval_url));
    let request = ApprovalRequest::new("payments.transfer", "bank-api")
        .goal("Pay invoice INV-1042")
        .params(serde_json::json!({ "to": "DE89 3704 0044 0532 0130 00", "amount": "5000.00" }));
    let grant = agent.request_approval(&request).await?;
    let bank = Downstream::new(&url)?; // the downstream system: no credential
    bank.verify_grant_for_action(&grant.token, "bank-api", grant.action_hash())
        .await?;
    bank.redeem(&grant.token).await?;
    agent
        .report_outcome(&grant.jti, Outcome::Succeeded, None)
        .await?;
    println!("redeemed and reported grant {}", grant.jti);
    Ok(())
}
