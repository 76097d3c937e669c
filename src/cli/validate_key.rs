//! `ad-sync-setup validate-key`: a connect key's format offline, then its state in the cloud.
//!
//! JSON: `{"valid":bool,"state":"valid|malformed|unknown|used|expired|wrong_domain",
//! "domain":"...","expires_at":"...","checked":"offline|cloud","message":"..."}`; when the
//! cloud cannot be asked: `{"valid":false,"error":"...","fix":"..."}` and exit 2.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::{EXIT_FAILED, EXIT_OK, EXIT_UNUSABLE};
use crate::cloud::api::KeyState;
use crate::cloud::client::{CloudClient, CloudOptions};
use crate::connect_key::ConnectKey;

pub struct KeyArgs {
    pub key: Option<String>,
    pub key_file: Option<PathBuf>,
    /// `None` means offline.
    pub cloud: Option<String>,
    pub ca: Option<PathBuf>,
    pub domain: Option<String>,
    pub timeout: Duration,
    pub json: bool,
}

fn unusable(json_out: bool, error: &str, fix: &str) -> i32 {
    if json_out {
        println!("{}", json!({"valid": false, "error": error, "fix": fix}));
    } else {
        eprintln!("{error}");
        if !fix.is_empty() {
            eprintln!("fix: {fix}");
        }
    }
    EXIT_UNUSABLE
}

fn read_key(args: &KeyArgs) -> Result<String, String> {
    match (&args.key, &args.key_file) {
        (Some(k), _) if k == "-" => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("connect key: cannot read standard input: {e}"))?;
            Ok(s)
        }
        (Some(k), _) => Ok(k.clone()),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| format!("--key-file {}: cannot read it: {e}", f.display())),
        (None, None) => Err("give the key, `-` for standard input, or --key-file FILE".into()),
    }
}

pub fn validate_key(args: KeyArgs) -> i32 {
    let text = match read_key(&args) {
        Ok(t) => t,
        Err(e) => return unusable(args.json, &e, ""),
    };
    let domain = match args
        .domain
        .as_deref()
        .map(crate::cloud::api::parse_domain_dn)
    {
        Some(Err(e)) => return unusable(args.json, &format!("--domain: {e}"), ""),
        Some(Ok(d)) => Some(d.to_comma_form()),
        None => None,
    };
    let key = match ConnectKey::parse(&text) {
        Ok(k) => k,
        Err(e) => {
            // Caught offline: nothing was sent anywhere.
            let message = e.to_string();
            if args.json {
                println!(
                    "{}",
                    json!({"valid": false, "state": "malformed", "domain": null, "expires_at": null,
                           "checked": "offline", "message": message})
                );
            } else {
                println!("malformed: {message}");
            }
            return EXIT_FAILED;
        }
    };
    let Some(url) = args.cloud.clone() else {
        if args.json {
            println!(
                "{}",
                json!({"valid": true, "state": "valid", "domain": null, "expires_at": null,
                       "checked": "offline",
                       "message": "well-formed and the checksum matches; not checked with the cloud"})
            );
        } else {
            println!(
                "well-formed: {} (checksum matches; not checked with the cloud)",
                key.redacted()
            );
        }
        return EXIT_OK;
    };
    let opts = CloudOptions {
        url,
        ca_file: args.ca.clone(),
        timeout: args.timeout,
        // No answers file here: the session's proxy, as curl would take it.
        route: crate::cloud::client::Route::Environment,
    };
    let client = match CloudClient::new(&opts) {
        Ok(c) => c,
        Err(e) => return unusable(args.json, &e.to_string(), &e.fix()),
    };
    let runtime = match super::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let resp = match runtime.block_on(client.check_key(&key, domain.as_deref())) {
        Ok(r) => r,
        Err(e) => {
            let mut error = e.to_string();
            if let Some(cert) = e.certificate() {
                error.push_str(&format!("\n{}", cert.describe()));
            }
            return unusable(args.json, &error, &e.fix());
        }
    };
    let valid = resp.state == KeyState::Valid;
    if args.json {
        println!(
            "{}",
            json!({"valid": valid, "state": resp.state.as_str(), "domain": resp.domain,
                   "expires_at": resp.expires_at, "checked": "cloud", "message": resp.message})
        );
    } else {
        println!(
            "{}: {} — {}",
            resp.state.as_str(),
            key.redacted(),
            resp.message
        );
    }
    if valid { EXIT_OK } else { EXIT_FAILED }
}
