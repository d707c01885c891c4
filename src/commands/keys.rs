//! `imgpipe keys hash`: the digest to configure for an API key.

use std::process::ExitCode;

use anyhow::Result;

/// The key comes from standard input when not given, so it stays out of
/// the shell history.
pub fn hash(key: Option<String>) -> Result<ExitCode> {
    let key = match key {
        Some(k) => k,
        None => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    anyhow::ensure!(key.len() >= 16, "an API key must be at least 16 characters");
    println!("{}", ingest_api::key_digest(&key));
    Ok(ExitCode::SUCCESS)
}
