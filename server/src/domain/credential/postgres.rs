//! The statements a PostgreSQL provider runs, as text: creating a task's login and taking it
//! apart again, one step at a time.
//!
//! Role names and the password verifier cannot be bound as parameters in DDL, so they are
//! quoted here: names we make ourselves (`cs_` and 32 hex digits) and an admin's template role
//! (checked when the provider is added, and quoted as an identifier whatever it holds).

use super::PostgresSettings;
use crate::domain::secrets::Secret;

/// Every login Countersign creates starts with this, and nothing else it creates does.
pub const LOGIN_PREFIX: &str = "cs_";

/// The login for a lease: `cs_` and the lease id's 32 hex digits.
pub fn login_name(lease_id: &uuid::Uuid) -> String {
    format!("{LOGIN_PREFIX}{}", lease_id.simple())
}

/// Whether `name` has the shape of a login Countersign made.
pub fn is_our_login(name: &str) -> bool {
    name.strip_prefix(LOGIN_PREFIX).is_some_and(|rest| {
        rest.len() == 32
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Checks an admin-given role name: 1 to 63 bytes (PostgreSQL truncates longer names), no NUL.
pub fn check_role_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 || name.contains('\0') {
        Err("must be a role name of 1 to 63 bytes".into())
    } else {
        Ok(())
    }
}

/// `name` as a quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a standard SQL string literal.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The statements that create a task's login, to run in one transaction: a login with only
/// what its template role grants, valid until the task's end, with a connection limit and a
/// statement timeout. `valid_until` is RFC 3339 UTC.
pub fn create_login(
    login: &str,
    verifier: &str,
    valid_until: &str,
    settings: &PostgresSettings,
) -> Vec<String> {
    let role = quote_ident(login);
    let create = format!(
        "CREATE ROLE {role} WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE \
         NOREPLICATION NOBYPASSRLS PASSWORD {} VALID UNTIL {} CONNECTION LIMIT {} IN ROLE {}",
        quote_literal(verifier),
        quote_literal(valid_until),
        settings.connection_limit,
        quote_ident(&settings.template_role),
    );
    let timeout = format!(
        "ALTER ROLE {role} SET statement_timeout = {}",
        settings.statement_timeout_ms
    );
    vec![create, timeout]
}

/// The steps that take a login apart, in order. Each runs in a transaction of its own and is
/// recorded when done, so a failure part-way resumes at the step that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum RevokeStep {
    /// `ALTER ROLE … NOLOGIN`: no new session.
    DisableLogin,
    /// `pg_terminate_backend` for each of its sessions.
    TerminateSessions,
    /// `DROP OWNED BY`: whatever it created, and its privileges.
    DropOwned,
    /// `DROP ROLE`.
    DropRole,
}

impl RevokeStep {
    /// The steps in order.
    pub const ALL: [RevokeStep; 4] = [
        RevokeStep::DisableLogin,
        RevokeStep::TerminateSessions,
        RevokeStep::DropOwned,
        RevokeStep::DropRole,
    ];

    /// Its name on the audit chain, e.g. `disable_login`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The step after `done` steps, if any remain.
    pub fn after(done: usize) -> Option<RevokeStep> {
        Self::ALL.get(done).copied()
    }

    /// The statement. `TerminateSessions` is a query that binds the login's name as `$1`; the
    /// others are DDL with the name quoted in.
    pub fn statement(self, login: &str) -> String {
        let role = quote_ident(login);
        match self {
            RevokeStep::DisableLogin => format!("ALTER ROLE {role} NOLOGIN"),
            RevokeStep::TerminateSessions => {
                "SELECT COUNT(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE usename = $1"
                    .into()
            }
            RevokeStep::DropOwned => format!("DROP OWNED BY {role}"),
            RevokeStep::DropRole => format!("DROP ROLE IF EXISTS {role}"),
        }
    }
}

/// The connection string handed to the agent: the admin connection's host, port, database and
/// TLS settings with the task's login and password. Only `sslmode` and `sslrootcert` of the
/// admin URL's options are kept.
pub fn connection_string(
    admin_dsn: &Secret,
    login: &str,
    password: &Secret,
) -> Result<Secret, String> {
    let mut url = url::Url::parse(admin_dsn.expose())
        .map_err(|_| "the admin connection is not a postgres:// URL".to_string())?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err("the admin connection is not a postgres:// URL".into());
    }
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k == "sslmode" || k == "sslrootcert")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.set_query(None);
    if !kept.is_empty() {
        url.query_pairs_mut().extend_pairs(kept);
    }
    url.set_username(login)
        .and_then(|_| url.set_password(Some(password.expose())))
        .map_err(|_| "the admin connection has no host".to_string())?;
    Ok(Secret::new(url.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_logins_are_recognised_by_shape() {
        let id = uuid::Uuid::new_v4();
        let login = login_name(&id);
        assert!(is_our_login(&login));
        assert_eq!(login.len(), 35);
        for other in [
            "cs_",
            "cs_x",
            "orders_rw",
            &login.to_uppercase(),
            &format!("{login}0"),
        ] {
            assert!(!is_our_login(other), "{other}");
        }
    }

    #[test]
    fn names_and_literals_are_quoted() {
        let settings = PostgresSettings {
            template_role: "odd\"role".into(),
            connection_limit: 3,
            statement_timeout_ms: 5000,
        };
        let sql = create_login(
            "cs_ab",
            "SCRAM-SHA-256$4096:x$y:z",
            "2026-12-07T00:00:00Z",
            &settings,
        );
        assert_eq!(
            sql[0],
            "CREATE ROLE \"cs_ab\" WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE \
             NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:x$y:z' VALID UNTIL \
             '2026-12-07T00:00:00Z' CONNECTION LIMIT 3 IN ROLE \"odd\"\"role\""
        );
        assert_eq!(sql[1], "ALTER ROLE \"cs_ab\" SET statement_timeout = 5000");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(
            RevokeStep::DropRole.statement("cs_ab"),
            "DROP ROLE IF EXISTS \"cs_ab\""
        );
        assert_eq!(RevokeStep::after(0), Some(RevokeStep::DisableLogin));
        assert_eq!(RevokeStep::after(4), None);
        assert_eq!(RevokeStep::TerminateSessions.as_str(), "terminate_sessions");
    }

    #[test]
    fn the_connection_string_keeps_only_where_and_how_to_connect() {
        let admin = Secret::new(
            "postgres://admin:s3cret@db.internal:6432/orders?sslmode=require&application_name=x"
                .into(),
        );
        let dsn = connection_string(&admin, "cs_ab", &Secret::new("p@ss".into())).unwrap();
        assert_eq!(
            dsn.expose(),
            "postgres://cs_ab:p%40ss@db.internal:6432/orders?sslmode=require"
        );
        assert!(connection_string(
            &Secret::new("mysql://x@y/z".into()),
            "a",
            &Secret::new("b".into())
        )
        .is_err());
    }
}
