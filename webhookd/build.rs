//! Assembles pg_webhook's portable edition into the SQL that `webhookd
//! install` embeds and runs (`webhookd install --print` writes it as one
//! script, which `make portable` saves as pg_webhook-portable--<version>.sql).
//!
//! The portable edition is the native extension's SQL without its shared
//! library: the stage files of extension/sql/, in the order
//! extension/src/lib.rs loads them, less their blocks between
//! `-- native:begin` and `-- native:end` (the C trigger function, the event
//! triggers, the native answers of edition() and version()), with the SQL
//! and PL/pgSQL twins of the Rust functions from extension/sql/portable/:
//! library.sql first, and portable/<stage>.sql right after the stage it
//! completes. This is the one place that order and those rules live.

use std::env;
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

const BEGIN: &str = "-- native:begin";
const END: &str = "-- native:end";
/// Replaced by the release's version in portable/library.sql.
const VERSION_MARK: &str = "@PORTABLE_VERSION@";

fn main() -> Result<(), Box<dyn Error>> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest
        .parent()
        .ok_or("webhookd's manifest has no parent directory")?;
    let sql = root.join("extension").join("sql");
    let lib_rs = root.join("extension").join("src").join("lib.rs");
    println!("cargo:rerun-if-changed={}", sql.display());
    println!("cargo:rerun-if-changed={}", lib_rs.display());
    let version = env::var("CARGO_PKG_VERSION")?;
    let script = edition(&sql, &fs::read_to_string(&lib_rs)?, &version)?;
    let out = PathBuf::from(env::var("OUT_DIR")?).join("pg_webhook-portable.sql");
    fs::write(out, script)?;
    Ok(())
}

/// The stage files' names in the order lib.rs loads them
/// (`extension_sql_file!("../sql/<name>.sql", ...)`).
fn stages(lib_rs: &str) -> Result<Vec<String>, Box<dyn Error>> {
    const MACRO: &str = "extension_sql_file!(";
    let mut names = Vec::new();
    let mut rest = lib_rs;
    while let Some(at) = rest.find(MACRO) {
        rest = rest[at + MACRO.len()..].trim_start();
        let path = rest
            .strip_prefix("\"../sql/")
            .and_then(|r| r.split_once(".sql\""))
            .ok_or(
                "extension/src/lib.rs: an extension_sql_file! not naming \"../sql/<stage>.sql\"",
            )?
            .0;
        if path.is_empty() || !path.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(
                format!("extension/src/lib.rs: unexpected stage file name {path:?}").into(),
            );
        }
        names.push(path.to_string());
    }
    if names.is_empty() {
        return Err("extension/src/lib.rs: no extension_sql_file!".into());
    }
    Ok(names)
}

/// The file's text without its native-only blocks (whose markers must pair).
fn without_native(path: &Path) -> Result<String, Box<dyn Error>> {
    let text = fs::read_to_string(path)?;
    let mut out = String::with_capacity(text.len());
    let mut inside: Option<usize> = None;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let mark = line.trim();
        if mark.starts_with(BEGIN) {
            if let Some(begun) = inside {
                return Err(format!(
                    "{}:{}: {BEGIN} inside the block begun at line {}",
                    path.display(),
                    n + 1,
                    begun
                )
                .into());
            }
            inside = Some(n + 1);
        } else if mark.starts_with(END) {
            if inside.take().is_none() {
                return Err(format!("{}:{}: {END} without {BEGIN}", path.display(), n + 1).into());
            }
        } else if inside.is_none() {
            out.push_str(line);
        }
    }
    if let Some(begun) = inside {
        return Err(format!("{}:{begun}: {BEGIN} is never ended", path.display()).into());
    }
    Ok(out)
}

fn edition(sql: &Path, lib_rs: &str, version: &str) -> Result<String, Box<dyn Error>> {
    let portable = sql.join("portable");
    let library = fs::read_to_string(portable.join("library.sql"))?;
    if !library.contains(VERSION_MARK) {
        return Err(format!("portable/library.sql does not contain {VERSION_MARK}").into());
    }
    // The header, BEGIN and COMMIT are webhookd's (cli/install.rs): it runs
    // this inside a transaction of its own, after its own checks.
    let mut parts = vec![format!(
        "-- portable/library.sql\n{}",
        library.replace(VERSION_MARK, version)
    )];
    let mut known = vec!["library".to_string()];
    for stage in stages(lib_rs)? {
        parts.push(format!(
            "-- {stage}.sql\n{}",
            without_native(&sql.join(format!("{stage}.sql")))?
        ));
        let extra = portable.join(format!("{stage}.sql"));
        if extra.exists() {
            parts.push(format!(
                "-- portable/{stage}.sql\n{}",
                fs::read_to_string(&extra)?
            ));
            known.push(stage);
        }
    }
    for entry in fs::read_dir(&portable)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".sql") {
            if !known.iter().any(|k| k == stem) {
                return Err(format!("extension/sql/portable/{name} completes no stage").into());
            }
        }
    }
    Ok(parts.join("\n"))
}
