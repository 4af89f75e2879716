//! `webhookd install` and `webhookd uninstall`: pg_webhook's portable
//! edition (the SQL API in SQL and PL/pgSQL, for a PostgreSQL that cannot
//! load the extension's library: managed services) put into a database, or
//! taken out of it, as the database's owner; no superuser needed.
//!
//! The SQL is the one webhookd's build assembles from extension/sql/
//! (build.rs), embedded in the binary: installing needs nothing beside it
//! but `pgcrypto`, which it creates when missing (a trusted extension).
//! What may be done is decided by one pure function (`plan`) from what the
//! database holds, so every refusal is tested without a database: never
//! over the native extension, never into someone else's schema `webhook`,
//! never a downgrade; the same release again is nothing to do, an older
//! portable release is upgraded in place by the scripts in `UPGRADES`.

use std::cmp::Ordering;
use std::fmt;

use anyhow::Context;
use clap::Args;
use tokio_postgres::{Client, GenericClient, Transaction};

use crate::db::{reported, DatabaseArgs};

/// The portable edition's objects, without a transaction around them.
const BODY: &str = include_str!(concat!(env!("OUT_DIR"), "/pg_webhook-portable.sql"));

/// The release this binary installs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// In-place upgrades of the portable edition: (from, to, SQL), each taking
/// an installation of release `from` to release `to`, as the native
/// edition's pg_webhook--A--B.sql do. 0.2.0 is the first portable release,
/// so there is none yet; the next release adds its script here, and the
/// upgrade test then covers it.
const UPGRADES: &[(&str, &str, &str)] = &[];

/// Serializes installs, upgrades and uninstalls of one database (a
/// transaction-level advisory lock; the key is arbitrary but fixed).
const LOCK_KEY: i64 = 0x7067_7768_696e_7374; // "pgwhinst"

/// The portable edition as one script for `psql -f` (`make portable`).
pub fn script() -> String {
    format!(
        "-- pg_webhook {VERSION}, portable edition: for PostgreSQL that cannot load pg_webhook's\n\
         -- library (managed services). Install it with `webhookd install --database-url ...`,\n\
         -- or with `psql -f` as the database's owner after CREATE EXTENSION pgcrypto.\n\
         -- Assembled by webhookd's build from extension/sql/; edit those files, not this one.\n\
         BEGIN;\n{BODY}COMMIT;\n"
    )
}

/// `webhookd install`'s flags.
#[derive(Args, Debug)]
pub struct InstallArgs {
    /// Write the portable edition's SQL to stdout (for psql -f) instead of
    /// installing it; connects to nothing.
    #[arg(long)]
    print: bool,
    /// As for `run` (DatabaseArgs), as the database's owner; not needed
    /// with --print.
    #[arg(long, env = "DATABASE_URL", required_unless_present = "print")]
    database_url: Option<String>,
    #[arg(long, env = "WEBHOOKD_DATABASE_CA_FILE")]
    database_ca_file: Option<std::path::PathBuf>,
}

/// `webhookd uninstall`'s flags.
#[derive(Args, Debug)]
pub struct UninstallArgs {
    /// Really remove it: without this flag, uninstall only says what would
    /// be removed (the endpoints, their secrets, every event and delivery).
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    db: DatabaseArgs,
}

/// What the database holds, as far as installing is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Nothing,
    /// The native extension, at this version.
    Native(String),
    /// A schema `webhook` that is not pg_webhook's.
    ForeignSchema,
    /// An empty schema `webhook` (DROP EXTENSION pg_webhook leaves the
    /// schema the extension was created in).
    EmptySchema,
    /// The portable edition, at this version, in a schema the connected
    /// role owns (or is a member of its owner) or not.
    Portable {
        version: String,
        owned: bool,
    },
}

/// What `install` will do.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    Fresh,
    Current,
    /// The upgrade scripts to run, in order.
    Upgrade(Vec<&'static str>),
}

/// Why `install` does nothing.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the native edition of pg_webhook (extension version {0}) is installed in this database; one database holds one edition (to move to the portable one, see the README's \"Managed PostgreSQL\")")]
    Native(String),
    #[error("a schema named webhook already exists in this database and is not pg_webhook's; pg_webhook keeps everything in schema webhook: rename or drop that schema first")]
    ForeignSchema,
    #[error("an empty schema webhook is left in this database (DROP EXTENSION pg_webhook leaves it behind); drop it (DROP SCHEMA webhook, as its owner or a superuser) and install again")]
    EmptySchema,
    #[error("pg_webhook's portable edition {0} is installed in a schema webhook this role does not own; connect as its owner (the role that installed it)")]
    NotOwner(String),
    #[error("this database has pg_webhook {installed}, newer than this webhookd's {ours}; a downgrade is never done (use the webhookd of release {installed} or later)")]
    Downgrade { installed: String, ours: String },
    #[error("this database has pg_webhook {installed}; this webhookd ({ours}) has no upgrade path from it (install the releases in between, one after the other)")]
    NoPath { installed: String, ours: String },
    #[error("this database has pg_webhook's portable edition at an unreadable version {0:?}")]
    BadVersion(String),
}

/// A release number, major.minor.patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Release(u64, u64, u64);

impl Release {
    fn parse(s: &str) -> Option<Self> {
        let mut it = s.split('.').map(|p| p.parse::<u64>().ok());
        let r = Release(it.next()??, it.next()??, it.next()??);
        it.next().is_none().then_some(r)
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Decides what installing release `ours` into a database holding `found`
/// does, with the upgrade scripts `upgrades` (from, to, SQL) at hand.
pub fn plan(
    found: &Found,
    ours: &str,
    upgrades: &[(&str, &str, &'static str)],
) -> Result<Plan, Refusal> {
    let (installed, owned) = match found {
        Found::Nothing => return Ok(Plan::Fresh),
        Found::Native(v) => return Err(Refusal::Native(v.clone())),
        Found::ForeignSchema => return Err(Refusal::ForeignSchema),
        Found::EmptySchema => return Err(Refusal::EmptySchema),
        Found::Portable { version, owned } => (version, *owned),
    };
    let have = Release::parse(installed).ok_or_else(|| Refusal::BadVersion(installed.clone()))?;
    let want = Release::parse(ours).ok_or_else(|| Refusal::BadVersion(ours.to_string()))?;
    let step = match have.cmp(&want) {
        Ordering::Equal => return Ok(Plan::Current),
        Ordering::Greater => {
            return Err(Refusal::Downgrade {
                installed: installed.clone(),
                ours: ours.to_string(),
            })
        }
        Ordering::Less => {
            if !owned {
                return Err(Refusal::NotOwner(installed.clone()));
            }
            upgrades
        }
    };
    // The chain from `have` to `want`, one script at a time.
    let mut at = have;
    let mut scripts = Vec::new();
    while at != want {
        let next = step
            .iter()
            .filter_map(|(from, to, sql)| {
                let (f, t) = (Release::parse(from)?, Release::parse(to)?);
                (f == at && t > at && t <= want).then_some((t, *sql))
            })
            .max_by_key(|(t, _)| *t);
        let Some((to, sql)) = next else {
            return Err(Refusal::NoPath {
                installed: installed.clone(),
                ours: ours.to_string(),
            });
        };
        scripts.push(sql);
        at = to;
    }
    Ok(Plan::Upgrade(scripts))
}

/// Reads what the database holds (`install`, `uninstall` and `status`).
/// Nothing in an existing schema `webhook` is called unless the connected
/// role owns it: its functions could be anyone's.
pub(crate) async fn found(client: &impl GenericClient) -> anyhow::Result<Found> {
    let row = client
        .query_one(
            // From the catalogs, not to_regprocedure(): that needs USAGE on
            // the schema, which a native installation does not grant.
            "SELECT (SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_webhook'), \
                    n.oid IS NOT NULL, \
                    (SELECT count(*) FROM pg_catalog.pg_proc p \
                      WHERE p.pronamespace = n.oid AND p.proname IN ('edition', 'version') AND p.pronargs = 0) = 2, \
                    n.oid IS NOT NULL AND pg_catalog.pg_has_role(current_user, n.nspowner, 'USAGE'), \
                    NOT EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.relnamespace = n.oid) \
                      AND NOT EXISTS (SELECT FROM pg_catalog.pg_proc p WHERE p.pronamespace = n.oid) \
                      AND NOT EXISTS (SELECT FROM pg_catalog.pg_type t WHERE t.typnamespace = n.oid) \
               FROM (SELECT 1) one \
               LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = 'webhook'",
            &[],
        )
        .await
        .map_err(reported)
        .context("reading what the database holds")?;
    let native: Option<String> = row.get(0);
    let (schema, ours, owned, empty): (bool, bool, bool, bool) =
        (row.get(1), row.get(2), row.get(3), row.get(4));
    if let Some(v) = native {
        return Ok(Found::Native(v));
    }
    if !schema {
        return Ok(Found::Nothing);
    }
    if empty {
        return Ok(Found::EmptySchema);
    }
    if !ours {
        return Ok(Found::ForeignSchema);
    }
    if !owned {
        // Not called: read the version from the function's text, which the
        // portable edition writes as a single literal.
        let src: String = client
            .query_one(
                "SELECT p.prosrc FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
                  WHERE n.nspname = 'webhook' AND p.proname = 'version' AND p.pronargs = 0",
                &[],
            )
            .await
            .map_err(reported)
            .context("reading the installed version")?
            .get(0);
        let version = src
            .split('\'')
            .nth(1)
            .filter(|v| Release::parse(v).is_some())
            .unwrap_or(src.trim())
            .to_string();
        return Ok(Found::Portable {
            version,
            owned: false,
        });
    }
    let row = client
        .query_one("SELECT webhook.edition(), webhook.version()", &[])
        .await
        .map_err(reported)
        .context("reading the installed edition and version")?;
    let (edition, version): (String, Option<String>) = (row.get(0), row.get(1));
    match (edition.as_str(), version) {
        ("portable", Some(version)) => Ok(Found::Portable {
            version,
            owned: true,
        }),
        // The native functions without the extension: a schema left behind.
        _ => Ok(Found::ForeignSchema),
    }
}

async fn connect(database: &crate::db::Database, name: &str) -> anyhow::Result<Client> {
    database
        .connect(name)
        .await
        .map_err(reported)
        .context("connecting to the database")
}

/// A transaction holding the install lock of the database: installs,
/// upgrades and uninstalls of one database happen one at a time.
async fn locked(client: &mut Client) -> anyhow::Result<Transaction<'_>> {
    let tx = client
        .transaction()
        .await
        .map_err(reported)
        .context("beginning a transaction")?;
    tx.execute("SELECT pg_catalog.pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(reported)
        .context("waiting for another install of this database")?;
    Ok(tx)
}

pub async fn install(a: InstallArgs) -> anyhow::Result<()> {
    if a.print {
        print!("{}", script());
        return Ok(());
    }
    let Some(database_url) = a.database_url else {
        anyhow::bail!("webhookd install needs --database-url (or DATABASE_URL), or --print");
    };
    let database = DatabaseArgs {
        database_url,
        database_ca_file: a.database_ca_file,
    }
    .database()?;
    let mut client = connect(&database, "webhookd install").await?;
    let tx = locked(&mut client).await?;
    // Payloads are JSON, which is UTF-8 (capture.sql's track() refuses
    // other encodings too); the script itself has text no other encoding
    // may hold.
    let encoding: String = tx
        .query_one("SELECT pg_catalog.getdatabaseencoding()::text", &[])
        .await
        .map_err(reported)
        .context("reading the database's encoding")?
        .get(0);
    if encoding != "UTF8" {
        anyhow::bail!(
            "this database's encoding is {encoding}; pg_webhook needs a database created WITH ENCODING 'UTF8' (its events are JSON, which is UTF-8)"
        );
    }
    let found = found(&tx).await?;
    match plan(&found, VERSION, UPGRADES)? {
        Plan::Current => {
            println!("pg_webhook {VERSION} (portable edition) is installed already; nothing to do");
            return Ok(());
        }
        Plan::Fresh => {
            // Where it is already (Supabase: schema extensions), or in
            // public: webhookd's sessions search pg_catalog only
            // (db::session), where an extension has no place.
            tx.batch_execute("CREATE EXTENSION IF NOT EXISTS pgcrypto SCHEMA public")
                .await
                .map_err(reported)
                .context(
                    "creating the pgcrypto extension in schema public (a trusted extension: the \
                     database's owner may create it; on a service that lists allowed extensions, \
                     allow pgcrypto; or create it yourself in a schema of your choice, then install again)",
                )?;
            tx.batch_execute(BODY)
                .await
                .map_err(reported)
                .context("installing the portable edition")?;
            tx.commit()
                .await
                .map_err(reported)
                .context("committing the install")?;
            let (dbname, role): (String, String) = {
                let r = client
                    .query_one("SELECT current_database()::text, current_user::text", &[])
                    .await
                    .map_err(reported)?;
                (r.get(0), r.get(1))
            };
            println!(
                "pg_webhook {VERSION} (portable edition) installed into database {dbname}, owned by {role}"
            );
            // capture.sql makes the event triggers that refuse DDL which
            // would drop or disable a capture only where the installing
            // role may (its WARNING says why); said here too, where the
            // person installing reads.
            let guarded: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_catalog.pg_event_trigger WHERE evtname LIKE 'webhook\\_guard\\_captures\\_%'",
                    &[],
                )
                .await
                .map_err(reported)?
                .get(0);
            if guarded == 0 {
                println!(
                    "warning: {role} may not create event triggers, so DDL is not guarded: a migration that drops a column a capture uses (DROP COLUMN ... CASCADE) or disables its triggers stops those events without an error; install as a superuser (or the service's role that may create event triggers) to have it refused"
                );
            }
            println!(
                "next: SELECT webhook.grant_dispatcher('<webhookd''s role>'); then webhook.track(...) and webhook.create_endpoint(...)"
            );
        }
        Plan::Upgrade(scripts) => {
            let Found::Portable { version: from, .. } = &found else {
                anyhow::bail!("an upgrade was planned with no portable edition installed");
            };
            for sql in scripts {
                tx.batch_execute(sql)
                    .await
                    .map_err(reported)
                    .with_context(|| format!("upgrading from {from}"))?;
            }
            tx.commit()
                .await
                .map_err(reported)
                .context("committing the upgrade")?;
            println!("pg_webhook's portable edition upgraded from {from} to {VERSION}");
        }
    }
    Ok(())
}

pub async fn uninstall(a: UninstallArgs) -> anyhow::Result<()> {
    let database = a.db.database()?;
    let mut client = connect(&database, "webhookd uninstall").await?;
    let tx = locked(&mut client).await?;
    let version = match found(&tx).await? {
        Found::Nothing => {
            println!("pg_webhook is not installed in this database; nothing to remove");
            return Ok(());
        }
        Found::Native(v) => anyhow::bail!(
            "this database has the native edition of pg_webhook (extension version {v}): remove it with DROP EXTENSION pg_webhook"
        ),
        Found::ForeignSchema | Found::EmptySchema => anyhow::bail!(
            "the schema webhook in this database is not pg_webhook's; nothing was removed"
        ),
        Found::Portable { owned: false, .. } => anyhow::bail!(
            "pg_webhook's portable edition here belongs to another role; connect as its owner (the role that installed it)"
        ),
        Found::Portable { version, .. } => version,
    };
    let row = tx
        .query_one(
            "SELECT (SELECT count(*) FROM webhook.tracked_tables), (SELECT count(*) FROM webhook.endpoint), \
                    (SELECT count(*) FROM webhook.event_log), \
                    (SELECT count(*) FROM webhook.deliveries WHERE status = 'pending')",
            &[],
        )
        .await
        .map_err(reported)
        .context("reading what would be removed")?;
    let (tracked, endpoints, events, pending): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let what = format!(
        "pg_webhook {version} (portable edition): the capture triggers of {tracked} tracked table(s), \
         {endpoints} endpoint(s) and their secrets, {events} event(s) ({pending} delivery(ies) still pending), \
         and schema webhook"
    );
    if !a.yes {
        anyhow::bail!(
            "would remove {what}; nothing was removed: run again with --yes to remove it"
        );
    }
    // Each capture trigger by untrack(), so the tables are left exactly as
    // they were; then the schema and everything in it.
    tx.batch_execute(
        "SELECT webhook.untrack(t.relation) FROM (SELECT DISTINCT relation FROM webhook.tracked_tables) t; \
         DROP SCHEMA webhook CASCADE",
    )
    .await
    .map_err(reported)
    .context("removing the portable edition")?;
    tx.commit()
        .await
        .map_err(reported)
        .context("committing the uninstall")?;
    println!("removed {what}; pgcrypto stays (other code may use it)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn portable(v: &str) -> Found {
        Found::Portable {
            version: v.into(),
            owned: true,
        }
    }

    #[test]
    fn the_embedded_sql_is_the_portable_edition_of_this_release() {
        assert!(BODY.contains("CREATE SCHEMA webhook;"));
        assert!(BODY.contains(&format!("SELECT '{VERSION}'")));
        assert!(!BODY.contains("@PORTABLE_VERSION@"));
        assert!(
            !BODY.contains("native:begin"),
            "a native-only block was kept"
        );
        assert!(
            !BODY.contains("LANGUAGE c"),
            "the portable edition loads no library"
        );
        let s = script();
        assert!(s.contains("BEGIN;\n") && s.ends_with("COMMIT;\n"));
    }

    #[test]
    fn a_fresh_database_gets_a_fresh_install_and_the_same_release_nothing() {
        assert_eq!(plan(&Found::Nothing, "0.2.0", &[]), Ok(Plan::Fresh));
        assert_eq!(plan(&portable("0.2.0"), "0.2.0", &[]), Ok(Plan::Current));
    }

    #[test]
    fn never_over_the_native_extension_nor_into_a_schema_of_someone_else() {
        assert_eq!(
            plan(&Found::Native("0.2.0".into()), "0.2.0", &[]),
            Err(Refusal::Native("0.2.0".into()))
        );
        assert_eq!(
            plan(&Found::ForeignSchema, "0.2.0", &[]),
            Err(Refusal::ForeignSchema)
        );
        assert_eq!(
            plan(&Found::EmptySchema, "0.2.0", &[]),
            Err(Refusal::EmptySchema)
        );
        let theirs = Found::Portable {
            version: "0.2.0".into(),
            owned: false,
        };
        assert_eq!(
            plan(&theirs, "0.3.0", &[("0.2.0", "0.3.0", "x")]),
            Err(Refusal::NotOwner("0.2.0".into()))
        );
    }

    #[test]
    fn a_downgrade_is_refused_however_far() {
        for (installed, ours) in [("0.3.0", "0.2.0"), ("1.0.0", "0.9.9"), ("0.2.10", "0.2.9")] {
            assert_eq!(
                plan(&portable(installed), ours, &[]),
                Err(Refusal::Downgrade {
                    installed: installed.into(),
                    ours: ours.into()
                })
            );
        }
    }

    #[test]
    fn an_upgrade_runs_the_scripts_of_each_release_in_between_in_order() {
        let scripts = [
            ("0.3.0", "0.4.0", "c"),
            ("0.2.0", "0.3.0", "b"),
            ("0.4.0", "0.5.0", "d"),
        ];
        assert_eq!(
            plan(&portable("0.2.0"), "0.4.0", &scripts),
            Ok(Plan::Upgrade(vec!["b", "c"]))
        );
        assert_eq!(
            plan(&portable("0.3.0"), "0.5.0", &scripts),
            Ok(Plan::Upgrade(vec!["c", "d"]))
        );
        // A gap in the chain is said, not jumped.
        assert_eq!(
            plan(&portable("0.1.0"), "0.4.0", &scripts),
            Err(Refusal::NoPath {
                installed: "0.1.0".into(),
                ours: "0.4.0".into()
            })
        );
        assert_eq!(
            plan(&portable("0.x"), "0.4.0", &scripts),
            Err(Refusal::BadVersion("0.x".into()))
        );
    }

    #[test]
    fn the_release_has_an_upgrade_script_from_every_earlier_portable_release() {
        // Every script in UPGRADES ends at a release no newer than this one,
        // and the chain from the first portable release (0.2.0) reaches it.
        assert_eq!(
            plan(&portable("0.2.0"), VERSION, UPGRADES).map(|_| ()),
            Ok(())
        );
    }
}
