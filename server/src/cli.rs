//! The `countersign` command line: the server and the administrative commands, all against the
//! same `DATABASE_URL` (also while the server runs).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::clock::SystemClock;
use crate::config::Config;
use crate::service::audit::Verification;
use crate::service::{Countersign, Error};

#[derive(Debug, Parser)]
#[command(
    name = "countersign",
    version,
    about = "Human-in-the-loop approval for AI agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the web app and the API.
    Serve,
    /// People.
    #[command(subcommand)]
    User(UserCommand),
    /// Agents.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// The approval policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The audit chain.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The guards against approval fatigue.
    #[command(subcommand)]
    Guards(GuardsCommand),
    /// Credential providers: where task-scoped credentials come from.
    #[command(subcommand)]
    Credential(CredentialCommand),
}

#[derive(Debug, Subcommand)]
enum CredentialCommand {
    /// Add a provider. Its secret (the admin connection string of a PostgreSQL server, or the
    /// header value an HTTP API expects) is read from --secret-file, never from the command
    /// line, and stored sealed with the credential key in the data directory.
    Add {
        /// The name policy rules refer to (`credential = "NAME"`).
        name: String,
        /// `postgres` (a login per task) or `http` (a gateway that adds the secret).
        #[arg(long, value_parser = ["postgres", "http"])]
        kind: String,
        /// A file holding the secret (one line), or `-` for standard input.
        #[arg(long = "secret-file", value_name = "FILE|-")]
        secret_file: String,
        /// postgres: the role each task's login becomes a member of.
        #[arg(long = "template-role")]
        template_role: Option<String>,
        /// postgres: sessions a task's login may hold at once.
        #[arg(long = "connection-limit", default_value_t = 2)]
        connection_limit: u32,
        /// postgres: the login's statement_timeout in milliseconds.
        #[arg(long = "statement-timeout-ms", default_value_t = 30_000)]
        statement_timeout_ms: u32,
        /// http: the upstream's base URL.
        #[arg(long = "base-url")]
        base_url: Option<String>,
        /// http: the header that carries the secret.
        #[arg(long, default_value = "Authorization")]
        header: String,
        /// http: an operation it covers, e.g. "POST /v2/transfers" (repeatable).
        #[arg(long = "operation")]
        operations: Vec<String>,
        /// http: seconds a forwarded call may take.
        #[arg(long = "timeout-seconds", default_value_t = 10)]
        timeout_seconds: u32,
    },
    /// List the providers (never their secrets).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a provider (refused while the active policy names it or a credential of it is
    /// still live).
    Remove {
        /// Its name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum GuardsCommand {
    /// Print the guards in force, as JSON.
    Show,
    /// Change some of them; the others keep their values.
    Set {
        /// Requests one agent may have waiting for people.
        #[arg(long)]
        max_pending_per_agent: Option<u32>,
        /// Mails one approver gets per minute at most.
        #[arg(long)]
        prompts_per_approver_per_minute: Option<u32>,
        /// Seconds a denied action stays refused for the agent that asked (0: off).
        #[arg(long)]
        deny_cooldown_seconds: Option<u32>,
        /// Milliseconds from opening a request's page to being able to approve (0: off).
        #[arg(long)]
        approve_delay_ms: Option<u32>,
        /// Whether identical pending requests collapse into one.
        #[arg(long)]
        collapse_identical: Option<bool>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Print an enrolment link for a new person.
    Invite {
        /// Their e-mail address.
        #[arg(long)]
        email: String,
        /// owner or admin.
        #[arg(long, default_value = "owner")]
        role: String,
        /// A group to put them in (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Register an agent; prints its id and, for key-less agents, its API key (once).
    Create {
        /// A name for it.
        #[arg(long)]
        name: String,
        /// Its owner's e-mail address (an enrolled person).
        #[arg(long)]
        owner: String,
        /// An Ed25519 public JWK file: the agent then signs assertions instead of using a key.
        #[arg(long = "public-key")]
        public_key: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The kill switch: refuse its credentials, cancel its pending requests, revoke its grants.
    Suspend {
        /// The agent id.
        id: String,
    },
    /// Lift a suspension.
    Resume {
        /// The agent id.
        id: String,
    },
    // --- agents admin ---
    /// Give an agent a new API key (printed once); its old key, or its public key, stops
    /// working and its unredeemed grants are revoked.
    RotateKey {
        /// The agent id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Register (or replace) an agent's Ed25519 public key: it then signs assertions, and its
    /// API key stops working.
    SetKey {
        /// The agent id.
        id: String,
        /// The public JWK file.
        #[arg(long)]
        jwk: PathBuf,
    },
    /// The URL Countersign calls (a signed POST) when one of the agent's requests is decided.
    #[command(subcommand)]
    Callback(CallbackCommand),
    /// Register the agent as a sub-agent of another (`--parent ID`), or as acting directly for
    /// its owner again (`--none`). Suspending a parent suspends its sub-agents; its registered
    /// ancestors count towards its requests' delegation depth in policy.
    SetParent {
        /// The agent id.
        id: String,
        /// The parent agent's id.
        #[arg(long, conflicts_with = "none", required_unless_present = "none")]
        parent: Option<String>,
        /// Clear the parent.
        #[arg(long)]
        none: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum CallbackCommand {
    /// Register or replace the agent's callback URL (https, or http for a host on
    /// COUNTERSIGN_CALLBACK_ALLOW; it must not resolve to a private address unless allowed).
    Set {
        /// The agent id.
        id: String,
        /// The callback URL.
        url: String,
    },
    /// Remove the agent's callback URL: its requests are no longer called back.
    Clear {
        /// The agent id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate and apply a policy file as a new version.
    Apply {
        /// The TOML file.
        file: PathBuf,
    },
    /// Print the active policy in the file format.
    Show,
    /// Evaluate a request against a policy file without applying it.
    Check {
        /// The TOML file.
        file: PathBuf,
        /// The request body (JSON, as an agent would POST it), or a file containing it.
        #[arg(long)]
        request: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the chain; name the first broken link. With checkpoints, also prove that the
    /// chain still extends each one (no events removed or rewritten since it was signed).
    Verify {
        /// Signed checkpoints: a file (`audit-checkpoints.jsonl` from the data directory, or a
        /// monitor's copy) or a URL (`https://HOST/api/v1/audit/checkpoints`). Repeatable.
        #[arg(long = "checkpoint", value_name = "FILE|URL")]
        checkpoints: Vec<String>,
        /// A key to trust for the checkpoints' signatures: a JWK or JWK Set file, or a URL
        /// serving one (the checkpoint feed does). Repeatable. Without it, the key in this
        /// data directory is trusted; never a key from the database.
        #[arg(long = "checkpoint-key", value_name = "JWK_FILE|URL")]
        checkpoint_keys: Vec<String>,
    },
    /// Print the public key this data directory's server signs audit checkpoints with (a JWK),
    /// for verifiers to pin.
    CheckpointKey,
    /// Write events as JSON lines to standard output.
    Export {
        /// Only this request's evidence.
        #[arg(long)]
        request: Option<String>,
    },
}

/// How long `user invite` waits for its mail to go out before it exits.
const INVITE_MAIL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long `serve` waits, once stopped, for mail still in flight.
const SHUTDOWN_MAIL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            // `{:#}`: the error and each of its causes, e.g. "database error: connection refused".
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn open() -> anyhow::Result<Arc<Countersign>> {
    let config = Config::from_env()?;
    Ok(Countersign::open(config, Arc::new(SystemClock)).await?)
}

fn describe(e: Error) -> anyhow::Error {
    match e {
        Error::InvalidRequest {
            field: Some(f),
            detail,
        } if !detail.contains(&f) => anyhow::anyhow!("{f}: {detail}"),
        other => anyhow::anyhow!("{other}"),
    }
}

/// Reads a secret from a file or standard input (`-`), without its line ending.
fn read_secret(source: &str) -> anyhow::Result<crate::domain::secrets::Secret> {
    use std::io::Read as _;
    let mut text = zeroize::Zeroizing::new(String::new());
    if source == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| anyhow::anyhow!("cannot read the secret from standard input: {e}"))?;
    } else {
        std::fs::File::open(source)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|e| anyhow::anyhow!("cannot read {source}: {e}"))?;
    }
    Ok(crate::domain::secrets::Secret::new(
        text.trim_end_matches(['\r', '\n']).to_string(),
    ))
}

async fn credential(command: CredentialCommand) -> anyhow::Result<ExitCode> {
    use crate::domain::credential::{HttpSettings, PostgresSettings, ProviderSettings};
    let core = open().await?;
    match command {
        CredentialCommand::Add {
            name,
            kind,
            secret_file,
            template_role,
            connection_limit,
            statement_timeout_ms,
            base_url,
            header,
            operations,
            timeout_seconds,
        } => {
            let settings = if kind == "postgres" {
                ProviderSettings::Postgres(PostgresSettings {
                    template_role: template_role.ok_or_else(|| {
                        anyhow::anyhow!("--template-role is required for a postgres provider")
                    })?,
                    connection_limit,
                    statement_timeout_ms,
                })
            } else {
                ProviderSettings::Http(HttpSettings {
                    base_url: base_url.ok_or_else(|| {
                        anyhow::anyhow!("--base-url is required for an http provider")
                    })?,
                    header,
                    operations,
                    timeout_seconds,
                })
            };
            let secret = read_secret(&secret_file)?;
            let added = core
                .add_credential_provider(&name, settings, secret, "cli")
                .await
                .map_err(describe)?;
            println!(
                "Credential provider {} ({}) added; secret fingerprint {}.",
                added.name,
                added.kind.as_str(),
                added.fingerprint
            );
        }
        CredentialCommand::List { json } => {
            let providers = core.credential_providers().await.map_err(describe)?;
            if json {
                println!("{}", serde_json::to_string(&providers)?);
            } else if providers.is_empty() {
                println!("No credential providers.");
            } else {
                for p in providers {
                    println!(
                        "{}\t{}\t{}\t{}",
                        p.name,
                        p.kind.as_str(),
                        p.fingerprint,
                        serde_json::to_string(&p.settings)?
                    );
                }
            }
        }
        CredentialCommand::Remove { name } => {
            core.remove_credential_provider(&name, "cli")
                .await
                .map_err(describe)?;
            println!("Credential provider {name} removed.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => serve().await,
        Command::Credential(command) => credential(command).await,
        Command::User(UserCommand::Invite {
            email,
            role,
            groups,
        }) => {
            let core = open().await?;
            let invite = core
                .invite(&email, &role, &groups, "cli")
                .await
                .map_err(describe)?;
            println!("Enrolment link for {} (valid 7 days, once):", invite.email);
            println!("{}", invite.link.expose());
            // The mail is queued in this process, which is about to exit: give it a moment (a
            // first attempt and a retry or two), then say what happened.
            let flushed = core.mailer.flush(INVITE_MAIL_WAIT).await;
            if core.mailer.sends_mail() {
                let sent = core.metrics.mail.sent.get();
                if flushed && sent > 0 {
                    println!("Mailed to {}.", invite.email);
                } else {
                    eprintln!(
                        "warning: the invitation could not be mailed to {} (see the log); give them the link yourself",
                        invite.email
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(AgentCommand::Create {
            name,
            owner,
            public_key,
            json,
        }) => {
            let core = open().await?;
            let jwk = match public_key {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
                ),
                None => None,
            };
            let created = core
                .create_agent(&name, &owner, jwk.as_deref(), "cli")
                .await
                .map_err(describe)?;
            if json {
                let out = serde_json::json!({
                    "id": created.id,
                    "name": created.name,
                    "owner": created.owner_email,
                    "api_key": created.api_key.as_ref().map(|k| k.expose()),
                    "jkt": created.jkt,
                });
                println!("{out}");
            } else {
                println!(
                    "Agent {} ({}) registered for {}.",
                    created.name, created.id, created.owner_email
                );
                match &created.api_key {
                    Some(key) => {
                        println!("API key (shown once; store it in the agent's secret store):");
                        println!("{}", key.expose());
                    }
                    None => println!(
                        "It authenticates with assertions signed by its key (jkt {}).",
                        created.jkt.unwrap_or_default()
                    ),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(AgentCommand::Suspend { id }) => {
            let core = open().await?;
            let r = core.suspend_agent(&id, "cli").await.map_err(describe)?;
            if r.changed {
                println!(
                    "Suspended {id}: {} pending requests cancelled, {} grants revoked.",
                    r.cancelled_requests, r.revoked_grants
                );
                if r.suspended_sub_agents > 0 {
                    println!(
                        "{} sub-agents were suspended with it (resuming {id} does not resume them).",
                        r.suspended_sub_agents
                    );
                }
            } else {
                println!("{id} was already suspended ({} pending requests cancelled, {} grants revoked now).", r.cancelled_requests, r.revoked_grants);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(AgentCommand::Resume { id }) => {
            let core = open().await?;
            let changed = core.resume_agent(&id, "cli").await.map_err(describe)?;
            println!(
                "{}",
                if changed {
                    format!("Resumed {id}.")
                } else {
                    format!("{id} was not suspended.")
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        // --- agents admin ---
        Command::Agent(AgentCommand::RotateKey { id, json }) => {
            let core = open().await?;
            let r = core.rotate_api_key(&id, "cli").await.map_err(describe)?;
            if json {
                let out = serde_json::json!({
                    "id": r.agent_id,
                    "api_key": r.api_key.expose(),
                    "revoked_grants": r.revoked_grants,
                });
                println!("{out}");
            } else {
                println!(
                    "New API key for {id} (shown once; the old credential no longer works, {} grants revoked):",
                    r.revoked_grants
                );
                println!("{}", r.api_key.expose());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(AgentCommand::SetKey { id, jwk }) => {
            let text = std::fs::read_to_string(&jwk)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", jwk.display()))?;
            let core = open().await?;
            let r = core
                .register_public_key(&id, &text, "cli")
                .await
                .map_err(describe)?;
            println!(
                "{id} now authenticates with assertions signed by its key (jkt {}); its API key no longer works, {} grants revoked.",
                r.jkt, r.revoked_grants
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(AgentCommand::Callback(CallbackCommand::Set { id, url })) => {
            let core = open().await?;
            let r = core
                .set_callback_url(&id, Some(&url), "cli")
                .await
                .map_err(describe)?;
            println!(
                "{id} is called back at {} when its requests are decided.",
                r.url.unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(AgentCommand::Callback(CallbackCommand::Clear { id })) => {
            let core = open().await?;
            core.set_callback_url(&id, None, "cli")
                .await
                .map_err(describe)?;
            println!("{id} has no callback URL any more.");
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(AgentCommand::SetParent {
            id,
            parent,
            none: _,
            json,
        }) => {
            let core = open().await?;
            let r = core
                .set_parent(&id, parent.as_deref(), "cli")
                .await
                .map_err(describe)?;
            if json {
                let out = serde_json::json!({
                    "id": r.agent_id,
                    "parent": r.parent_id,
                    "previous_parent": r.previous,
                });
                println!("{out}");
            } else {
                match &r.parent_id {
                    Some(p) => println!("{id} is a sub-agent of {p}."),
                    None => println!("{id} acts directly for its owner (no parent)."),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCommand::Apply { file }) => {
            let source = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let core = open().await?;
            let (version, hash) = core.apply_policy(&source, "cli").await.map_err(describe)?;
            println!("Policy version {version} is active ({hash}).");
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCommand::Show) => {
            let core = open().await?;
            print!("{}", core.show_policy().await.map_err(describe)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCommand::Check { file, request }) => {
            let source = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let body = if request.trim_start().starts_with('{') {
                request.into_bytes()
            } else {
                std::fs::read(&request)
                    .map_err(|e| anyhow::anyhow!("cannot read {request}: {e}"))?
            };
            let d = crate::service::policies::check_policy(&source, &body).map_err(describe)?;
            for p in &d.passed_over {
                println!("passed over {}: {}", p.rule_id, p.why);
            }
            println!("matched {}: {}", d.rule_id, d.explanation);
            Ok(ExitCode::SUCCESS)
        }
        Command::Guards(GuardsCommand::Show) => {
            let core = open().await?;
            let g = core.guards().await.map_err(describe)?;
            println!("{}", serde_json::to_string_pretty(&g)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Guards(GuardsCommand::Set {
            max_pending_per_agent,
            prompts_per_approver_per_minute,
            deny_cooldown_seconds,
            approve_delay_ms,
            collapse_identical,
        }) => {
            let core = open().await?;
            let mut g = core.guards().await.map_err(describe)?;
            g.max_pending_per_agent = max_pending_per_agent.unwrap_or(g.max_pending_per_agent);
            g.prompts_per_approver_per_minute =
                prompts_per_approver_per_minute.unwrap_or(g.prompts_per_approver_per_minute);
            g.deny_cooldown_seconds = deny_cooldown_seconds.unwrap_or(g.deny_cooldown_seconds);
            g.approve_delay_ms = approve_delay_ms.unwrap_or(g.approve_delay_ms);
            g.collapse_identical = collapse_identical.unwrap_or(g.collapse_identical);
            let g = core.apply_guards(g, "cli").await.map_err(describe)?;
            println!("{}", serde_json::to_string_pretty(&g)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify {
            checkpoints,
            checkpoint_keys,
        }) => {
            let core = open().await?;
            audit_verify(&core, &checkpoints, &checkpoint_keys).await
        }
        Command::Audit(AuditCommand::CheckpointKey) => {
            let core = open().await?;
            println!("{}", serde_json::to_string(&core.checkpoints.public_jwk())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Export { request }) => {
            let core = open().await?;
            let mut out = std::io::BufWriter::new(std::io::stdout());
            core.export_audit(request.as_deref(), &mut out)
                .await
                .map_err(describe)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `audit verify [--checkpoint FILE|URL]... [--checkpoint-key JWK_FILE|URL]...`: exits 0 only
/// when the chain is intact and extends every checkpoint given.
async fn audit_verify(
    core: &Countersign,
    sources: &[String],
    key_sources: &[String],
) -> anyhow::Result<ExitCode> {
    use crate::service::checkpoints::{read_checkpoints, read_trusted_keys, TrustedKey};
    let mut checkpoints = Vec::new();
    if !sources.is_empty() {
        // The trust decision: keys named on the command line, else the one in this data
        // directory. A checkpoint never brings its own key.
        let trusted = if key_sources.is_empty() {
            vec![TrustedKey {
                jwk: core.checkpoints.public_jwk(),
                from: core.checkpoints.key_path().display().to_string(),
            }]
        } else {
            read_trusted_keys(key_sources).await.map_err(describe)?
        };
        let read = read_checkpoints(sources, &trusted)
            .await
            .map_err(describe)?;
        for place in &read.skipped {
            eprintln!("warning: {place} is not a checkpoint; skipped");
        }
        checkpoints = read.checkpoints;
    } else if !key_sources.is_empty() {
        anyhow::bail!(
            "--checkpoint-key says whom to trust for --checkpoint; give a checkpoint too"
        );
    }
    let newest = checkpoints
        .iter()
        .max_by_key(|c| c.checkpoint.seq)
        .map(|c| c.checkpoint.to_string());
    let given = checkpoints.len();
    match core
        .verify_audit_extending(checkpoints)
        .await
        .map_err(describe)?
    {
        Verification::Intact { events, head } => {
            match newest {
                None => println!("Audit chain intact: {events} events, head {head}."),
                Some(newest) => println!(
                    "Audit chain intact: {events} events, head {head}; it extends all {given} \
                     checkpoints given (the newest: {newest})."
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Verification::Broken(b) => {
            println!("Audit chain BROKEN at event {}: {}", b.seq, b.reason);
            Ok(ExitCode::FAILURE)
        }
        Verification::Contradicted(c) => {
            println!("Audit chain TAMPERED: {c}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn serve() -> anyhow::Result<ExitCode> {
    let core = open().await?;
    if let Some(link) = core.bootstrap_admin_link().await.map_err(describe)? {
        // Printed, not logged: the link is a secret and log pipelines keep things forever.
        println!();
        println!("No admin yet. Enrol the first admin's passkey (one-time link, valid 24 hours):");
        println!("  {}", link.expose());
        println!();
    }
    let listener = tokio::net::TcpListener::bind(core.config.listen).await?;
    // Which SQLite (bundled) or PostgreSQL this is, so an operator can tell whether a known
    // engine bug applies.
    let engine = core
        .db
        .engine_version()
        .await
        .unwrap_or_else(|e| format!("unknown ({e})"));
    tracing::info!(listen = %core.config.listen, public_url = %core.issuer(), backend = ?core.db.backend(), engine_version = %engine, "countersign is serving");
    let mailer = core.mailer.clone();
    crate::http::serve(core, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    // Mail lives in this process's queue: give what is in flight a moment before exiting.
    if !mailer.flush(SHUTDOWN_MAIL_WAIT).await {
        tracing::warn!("stopping with mail still queued or waiting for a retry; it is not sent");
    }
    Ok(ExitCode::SUCCESS)
}
